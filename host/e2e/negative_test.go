package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbsclient"
	"github.com/gokbs/kbs/host/internal/rcar"
)

const errPrefix = "https://github.com/confidential-containers/kbs/errors/"

// rawResponse is what the broker answered.
type rawResponse struct {
	status int
	body   []byte
}

// rawRequest sends exactly the request line given, without any client-side
// path cleaning, so that traversal attempts reach the broker as written.
func rawRequest(t *testing.T, url, method, target string, header map[string]string, body []byte) rawResponse {
	t.Helper()
	addr := strings.TrimPrefix(url, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n", method, target, addr, len(body))
	for k, v := range header {
		fmt.Fprintf(&req, "%s: %s\r\n", k, v)
	}
	req.WriteString("\r\n")
	req.Write(body)
	// Write while reading: a broker may answer (413) and close before it
	// has read the whole body, which is right and must not fail the test.
	go func() { _, _ = conn.Write(req.Bytes()) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResponse{status: resp.StatusCode, body: b}
}

// checkKBSError asserts the status and that the body is KBS error JSON of
// the given type.
func checkKBSError(t *testing.T, r rawResponse, status int, typ string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	var e struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("body is not KBS error JSON: %v: %s", err, r.body)
	}
	if e.Type != errPrefix+typ || e.Detail == "" {
		t.Fatalf("error = %+v, want type %s and a detail", e, typ)
	}
}

func sampleAttestBody(t *testing.T, nonce string, k *guest.Key, digestOf func(jwk json.RawMessage) []byte) []byte {
	t.Helper()
	jwk, err := k.PublicJWKJSON()
	if err != nil {
		t.Fatal(err)
	}
	var d []byte
	if digestOf != nil {
		d = digestOf(jwk)
	} else {
		d, _ = rcar.Primary(nonce, jwk, "").Digest("sha384")
	}
	b, _ := json.Marshal(map[string]any{
		"runtime-data": map[string]any{"nonce": nonce, "tee-pubkey": jwk},
		"tee-evidence": map[string]any{"primary_evidence": guest.NewSampleEvidence(d).JSON(), "additional_evidence": ""},
	})
	return b
}

// authed returns a session cookie header and the nonce.
func authed(t *testing.T, url string) (map[string]string, string) {
	t.Helper()
	r := rawRequest(t, url, "POST", "/kbs/v0/auth", map[string]string{"Content-Type": "application/json"},
		[]byte(`{"version":"0.4.0","tee":"sample","extra-params":""}`))
	if r.status != 200 {
		t.Fatalf("auth: %d %s", r.status, r.body)
	}
	var ch struct{ Nonce string }
	_ = json.Unmarshal(r.body, &ch)
	return nil, ch.Nonce
}

// session runs auth with a cookie-capturing client.
func session(t *testing.T, url string) (cookie string, nonce string) {
	t.Helper()
	resp, err := http.Post(url+"/kbs/v0/auth", "application/json",
		strings.NewReader(`{"version":"0.4.0","tee":"sample","extra-params":""}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ch struct{ Nonce string }
	if err := json.NewDecoder(resp.Body).Decode(&ch); err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "kbs-session-id" {
			cookie = c.Name + "=" + c.Value
		}
	}
	if cookie == "" || len(ch.Nonce) != 44 {
		t.Fatalf("auth gave cookie %q nonce %q", cookie, ch.Nonce)
	}
	return cookie, ch.Nonce
}

// mintToken signs claims with a key that the broker does not trust.
func mintToken(t *testing.T, claims map[string]any, headerJWK bool) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if headerJWK {
		opts.EmbedJWK = true
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBadRequests(t *testing.T) {
	br := startDev(t, "")
	writeResource(t, br.DevDir, "default/key/x", []byte("x"))
	k, _ := guest.NewKey(guest.KindECP256)
	_, goodToken := handshake(t, br.URL, k)
	ctJSON := map[string]string{"Content-Type": "application/json"}
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	withCookie := func(c string) map[string]string {
		return map[string]string{"Content-Type": "application/json", "Cookie": c}
	}

	tests := map[string]struct {
		do     func(t *testing.T) rawResponse
		status int
		typ    string
	}{
		"wrong protocol version": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "POST", "/kbs/v0/auth", ctJSON, []byte(`{"version":"0.2.0","tee":"sample","extra-params":""}`))
		}, 401, "AttestationError"},
		"unknown TEE": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "POST", "/kbs/v0/auth", ctJSON, []byte(`{"version":"0.4.0","tee":"sgx-on-a-potato","extra-params":""}`))
		}, 400, "SerdeError"},
		"TEE without a verifier": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "POST", "/kbs/v0/auth", ctJSON, []byte(`{"version":"0.4.0","tee":"snp","extra-params":""}`))
		}, 401, "AttestationError"},
		"malformed auth JSON": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "POST", "/kbs/v0/auth", ctJSON, []byte(`{"version":"0.4.0",`))
		}, 400, "SerdeError"},
		"attest without auth": {func(t *testing.T) rawResponse {
			_, nonce := authed(t, br.URL)
			return rawRequest(t, br.URL, "POST", "/kbs/v0/attest", ctJSON, sampleAttestBody(t, nonce, k, nil))
		}, 401, "AttestationError"},
		"attest with an unknown session": {func(t *testing.T) rawResponse {
			_, nonce := authed(t, br.URL)
			return rawRequest(t, br.URL, "POST", "/kbs/v0/attest", withCookie("kbs-session-id=0123456789abcdef0123456789abcdef"), sampleAttestBody(t, nonce, k, nil))
		}, 401, "AttestationError"},
		"wrong nonce": {func(t *testing.T) rawResponse {
			c, _ := session(t, br.URL)
			other := base64.StdEncoding.EncodeToString(make([]byte, 32))
			return rawRequest(t, br.URL, "POST", "/kbs/v0/attest", withCookie(c), sampleAttestBody(t, other, k, nil))
		}, 401, "AttestationError"},
		"reused nonce": {func(t *testing.T) rawResponse {
			c, nonce := session(t, br.URL)
			body := sampleAttestBody(t, nonce, k, nil)
			if r := rawRequest(t, br.URL, "POST", "/kbs/v0/attest", withCookie(c), body); r.status != 200 {
				t.Fatalf("first attest: %d %s", r.status, r.body)
			}
			return rawRequest(t, br.URL, "POST", "/kbs/v0/attest", withCookie(c), body)
		}, 401, "AttestationError"},
		"report data bound to another key": {func(t *testing.T) rawResponse {
			c, nonce := session(t, br.URL)
			other, _ := guest.NewKey(guest.KindECP256)
			otherJWK, _ := other.PublicJWKJSON()
			return rawRequest(t, br.URL, "POST", "/kbs/v0/attest", withCookie(c), sampleAttestBody(t, nonce, k, func(json.RawMessage) []byte {
				d, _ := rcar.Primary(nonce, otherJWK, "").Digest("sha384")
				return d
			}))
		}, 401, "AttestationError"},
		"report data bound to another nonce": {func(t *testing.T) rawResponse {
			c, nonce := session(t, br.URL)
			return rawRequest(t, br.URL, "POST", "/kbs/v0/attest", withCookie(c), sampleAttestBody(t, nonce, k, func(jwk json.RawMessage) []byte {
				d, _ := rcar.Primary(base64.StdEncoding.EncodeToString(make([]byte, 32)), jwk, "").Digest("sha384")
				return d
			}))
		}, 401, "AttestationError"},
		"malformed attestation": {func(t *testing.T) rawResponse {
			c, _ := session(t, br.URL)
			return rawRequest(t, br.URL, "POST", "/kbs/v0/attest", withCookie(c), []byte(`{"runtime-data": 7}`))
		}, 400, "SerdeError"},
		"garbage evidence": {func(t *testing.T) rawResponse {
			c, nonce := session(t, br.URL)
			jwk, _ := k.PublicJWKJSON()
			body := []byte(`{"runtime-data":{"nonce":"` + nonce + `","tee-pubkey":` + string(jwk) + `},"tee-evidence":{"primary_evidence":{"svn":1},"additional_evidence":""}}`)
			return rawRequest(t, br.URL, "POST", "/kbs/v0/attest", withCookie(c), body)
		}, 401, "AttestationError"},
		"oversized body": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "POST", "/kbs/v0/auth", ctJSON, bytes.Repeat([]byte(" "), 17<<20))
		}, 413, "PayloadTooLarge"},
		"resource without token": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default/key/x", nil, nil)
		}, 401, "TokenNotFound"},
		"tampered token": {func(t *testing.T) rawResponse {
			parts := strings.Split(goodToken, ".")
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var claims map[string]any
			if err := json.Unmarshal(payload, &claims); err != nil {
				t.Fatal(err)
			}
			claims["exp"] = claims["exp"].(float64) + 3600
			payload, _ = json.Marshal(claims)
			parts[1] = base64.RawURLEncoding.EncodeToString(payload)
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default/key/x", bearer(strings.Join(parts, ".")), nil)
		}, 401, "TokenVerifierError"},
		"token signed by an untrusted key": {func(t *testing.T) rawResponse {
			parts := strings.Split(goodToken, ".")
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var claims map[string]any
			_ = json.Unmarshal(payload, &claims)
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default/key/x", bearer(mintToken(t, claims, true)), nil)
		}, 401, "TokenVerifierError"},
		"alg none": {func(t *testing.T) rawResponse {
			parts := strings.Split(goodToken, ".")
			hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default/key/x", bearer(hdr+"."+parts[1]+"."), nil)
		}, 401, "TokenVerifierError"},
		"garbage token": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default/key/x", bearer("not.a.token"), nil)
		}, 401, "TokenVerifierError"},
		"missing resource": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default/key/nope", bearer(goodToken), nil)
		}, 404, "ResourceNotFound"},
		"traversal with ..": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default/../../token.key", bearer(goodToken), nil)
		}, 400, "InvalidRequestPath"},
		"traversal with %2e%2e": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default/%2e%2e/token.key", bearer(goodToken), nil)
		}, 400, "InvalidRequestPath"},
		"encoded slashes": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default%2Fkey%2Fx", bearer(goodToken), nil)
		}, 400, "InvalidRequestPath"},
		"too few segments": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default/key", bearer(goodToken), nil)
		}, 400, "InvalidRequestPath"},
		"hidden file": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default/key/.x", bearer(goodToken), nil)
		}, 400, "InvalidRequestPath"},
		"unknown endpoint": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "GET", "/kbs/v0/nebula-ca/credential", nil, nil)
		}, 404, "PluginNotFound"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			checkKBSError(t, tc.do(t), tc.status, tc.typ)
		})
	}
	// The broker still serves a good guest after all that.
	c, _ := handshake(t, br.URL, k)
	if _, err := c.GetResource(context.Background(), "default/key/x", ""); err != nil {
		t.Fatalf("good guest after bad requests: %v", err)
	}
}

func TestExpiredSession(t *testing.T) {
	br := startDevEnv(t, "", []string{"KBS_SESSION__TIMEOUT=1s"})
	writeResource(t, br.DevDir, "default/key/x", []byte("x"))
	k, _ := guest.NewKey(guest.KindECP256)
	c, nonce := session(t, br.URL)
	time.Sleep(1200 * time.Millisecond)
	r := rawRequest(t, br.URL, "POST", "/kbs/v0/attest", map[string]string{"Content-Type": "application/json", "Cookie": c}, sampleAttestBody(t, nonce, k, nil))
	checkKBSError(t, r, 401, "AttestationError")

	// An attested session's cookie stops working when the session expires.
	cl, _ := handshake(t, br.URL, k)
	time.Sleep(1200 * time.Millisecond)
	_, err := cl.GetResource(context.Background(), "default/key/x", "")
	if kbsclient.StatusOf(err) != 401 {
		t.Fatalf("resource with an expired session: %v, want 401", err)
	}
}
