package e2e

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbsclient"
)

// TestBadInput sends hostile and malformed requests to the real daemon
// (those of TestBadRequests are not repeated) and checks the status and
// the KBS error type of each; then a good guest must still be served.
func TestBadInput(t *testing.T) {
	br := startDev(t, "")
	writeResource(t, br.DevDir, "default/key/x", []byte("x"))
	k, _ := guest.NewKey(guest.KindECP256)
	_, goodToken := handshake(t, br.URL, k)
	ctJSON := map[string]string{"Content-Type": "application/json"}
	withCookie := func(c string) map[string]string {
		return map[string]string{"Content-Type": "application/json", "Cookie": c}
	}
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	auth := func(body string) func(t *testing.T) rawResponse {
		return func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "POST", "/kbs/v0/auth", ctJSON, []byte(body))
		}
	}
	// attest sends body (with "NONCE" replaced by the session's nonce and
	// "KEY" by the guest's JWK) in a fresh session.
	attest := func(body string) func(t *testing.T) rawResponse {
		return func(t *testing.T) rawResponse {
			c, nonce := session(t, br.URL)
			jwk, _ := k.PublicJWKJSON()
			body := strings.ReplaceAll(strings.ReplaceAll(body, "NONCE", nonce), "KEY", string(jwk))
			return rawRequest(t, br.URL, "POST", "/kbs/v0/attest", withCookie(c), []byte(body))
		}
	}
	get := func(target string, header map[string]string) func(t *testing.T) rawResponse {
		return func(t *testing.T) rawResponse { return rawRequest(t, br.URL, "GET", target, header, nil) }
	}
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	ev := `{"svn":"1","report_data":"AA=="}`
	rd := `"runtime-data":{"nonce":"NONCE","tee-pubkey":KEY}`
	te := `"tee-evidence":{"primary_evidence":` + ev + `,"additional_evidence":""}`

	tests := map[string]struct {
		do     func(t *testing.T) rawResponse
		status int
		typ    string // "" when the answer is not KBS error JSON
	}{
		// Nesting: encoding/json stops at 10000 levels.
		"deeply nested auth":          {auth(`{"version":"0.4.0","tee":"sample","extra-params":` + deep + `}`), 400, "SerdeError"},
		"deeply nested evidence":      {attest(`{` + rd + `,"tee-evidence":{"primary_evidence":` + deep + `,"additional_evidence":""}}`), 400, "SerdeError"},
		"deeply nested tee-pubkey":    {attest(`{"runtime-data":{"nonce":"NONCE","tee-pubkey":` + deep + `},` + te + `}`), 400, "SerdeError"},
		"deeply nested additional":    {attest(`{` + rd + `,"tee-evidence":{"primary_evidence":` + ev + `,"additional_evidence":` + strconv.Quote(deep) + `}}`), 400, "SerdeError"},
		"huge number for the version": {auth(`{"version":1e999999,"tee":"sample"}`), 400, "SerdeError"},
		"huge number for the nonce":   {attest(`{"runtime-data":{"nonce":1e999999,"tee-pubkey":KEY},` + te + `}`), 400, "SerdeError"},
		// extra-params is opaque and never read: a huge number there is
		// valid JSON and harmless.
		"huge number in extra-params": {auth(`{"version":"0.4.0","tee":"sample","extra-params":1e999999}`), 200, ""},
		"huge modulus":                {attest(`{"runtime-data":{"nonce":"NONCE","tee-pubkey":{"kty":"RSA","alg":"RSA-OAEP-256","n":"` + strings.Repeat("_", 4096) + `","e":"AQAB"}},` + te + `}`), 400, "SerdeError"},
		// Invalid UTF-8 is replaced by U+FFFD when decoded; it never
		// names a TEE, a member or a key.
		"invalid UTF-8 in the TEE":   {auth("{\"version\":\"0.4.0\",\"tee\":\"sam\xffple\"}"), 400, "SerdeError"},
		"invalid UTF-8 as a member":  {auth("{\"version\":\"0.4.0\",\"te\xffe\":\"sample\"}"), 400, "SerdeError"},
		"invalid UTF-8 in the nonce": {attest("{\"runtime-data\":{\"nonce\":\"\xff\xfe\",\"tee-pubkey\":KEY}," + te + "}"), 401, "AttestationError"},
		"invalid UTF-8 in a token":   {get("/kbs/v0/resource/default/key/x", bearer("ey\xff.\xfe.\xfd")), 401, "TokenVerifierError"},
		"invalid UTF-8 in a cookie":  {get("/kbs/v0/resource/default/key/x", map[string]string{"Cookie": "kbs-session-id=\xff\xfe"}), 401, "TokenNotFound"},
		"invalid UTF-8 in the path":  {get("/kbs/v0/resource/default/key/\xff", bearer(goodToken)), 400, "InvalidRequestPath"},
		// Repeated members: refused, as trustee's serde does, rather than
		// read as the last one.
		"repeated TEE":             {auth(`{"version":"0.4.0","tee":"snp","tee":"sample"}`), 400, "SerdeError"},
		"repeated TEE, other case": {auth(`{"version":"0.4.0","tee":"snp","TEE":"sample"}`), 400, "SerdeError"},
		"repeated nonce":           {attest(`{"runtime-data":{"nonce":"wrong","nonce":"NONCE","tee-pubkey":KEY},` + te + `}`), 400, "SerdeError"},
		"repeated runtime-data":    {attest(`{` + rd + `,` + rd + `,` + te + `}`), 400, "SerdeError"},
		// Shapes.
		"empty auth body":              {auth(``), 400, "SerdeError"},
		"auth body null":               {auth(`null`), 401, "AttestationError"},
		"auth body an array":           {auth(`[]`), 400, "SerdeError"},
		"auth with GET":                {get("/kbs/v0/auth", nil), 405, "MethodNotAllowed"},
		"symmetric tee-pubkey":         {attest(`{"runtime-data":{"nonce":"NONCE","tee-pubkey":{"kty":"oct","k":"AAAA"}},` + te + `}`), 400, "SerdeError"},
		"tee-pubkey off the curve":     {attest(`{"runtime-data":{"nonce":"NONCE","tee-pubkey":{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"` + b64(make([]byte, 32)) + `","y":"` + b64(make([]byte, 32)) + `"}},` + te + `}`), 400, "SerdeError"},
		"tee-pubkey RSA 1024":          {attest(`{"runtime-data":{"nonce":"NONCE","tee-pubkey":{"kty":"RSA","alg":"RSA-OAEP-256","n":"` + b64(append([]byte{0xc1}, make([]byte, 127)...)) + `","e":"AQAB"}},` + te + `}`), 400, "SerdeError"},
		"additional evidence not JSON": {attest(`{` + rd + `,"tee-evidence":{"primary_evidence":` + ev + `,"additional_evidence":"{"}}`), 400, "SerdeError"},
		"init-data of another format":  {attest(`{"init-data":{"format":"yaml","body":"a: b"},` + rd + `,` + te + `}`), 400, "AttestationError"},
		"garbage session cookie":       {func(t *testing.T) rawResponse { return attest(`{` + rd + `,` + te + `}`)(t) }, 401, "AttestationError"},
		"segment too long":             {get("/kbs/v0/resource/default/key/"+strings.Repeat("a", 100<<10), bearer(goodToken)), 400, "InvalidRequestPath"},
		"NUL in the path":              {get("/kbs/v0/resource/default/key/a%00b", bearer(goodToken)), 400, "InvalidRequestPath"},
		"expired token, good signature": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default/key/x", bearer(reSign(t, br.DevDir, goodToken, map[string]any{"exp": 1_000_000_000})), nil)
		}, 401, "TokenVerifierError"},
		"huge exp, good signature": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default/key/x", bearer(reSign(t, br.DevDir, goodToken, map[string]any{"exp": json.Number("1e999999")})), nil)
		}, 401, "TokenVerifierError"},
		"thousands of query parameters": {get("/kbs/v0/resource/default/key/x?"+strings.Repeat("a=b&", 5000), bearer(goodToken)), 200, ""},
		// net/http answers an oversized head itself, in plain text.
		"headers too large": {func(t *testing.T) rawResponse {
			return rawRequest(t, br.URL, "GET", "/kbs/v0/resource/default/key/x", map[string]string{"X-Big": strings.Repeat("a", 2<<20)}, nil)
		}, 431, ""},
	}
	// The garbage-cookie case replaces the session with a made-up one.
	tests["garbage session cookie"] = struct {
		do     func(t *testing.T) rawResponse
		status int
		typ    string
	}{func(t *testing.T) rawResponse {
		_, nonce := session(t, br.URL)
		jwk, _ := k.PublicJWKJSON()
		body := strings.ReplaceAll(strings.ReplaceAll(`{`+rd+`,`+te+`}`, "NONCE", nonce), "KEY", string(jwk))
		return rawRequest(t, br.URL, "POST", "/kbs/v0/attest", withCookie("kbs-session-id=../../etc/passwd"), []byte(body))
	}, 401, "AttestationError"}

	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := tc.do(t)
			if tc.typ == "" {
				if r.status != tc.status {
					t.Fatalf("status = %d, want %d; body %.300s", r.status, tc.status, r.body)
				}
				return
			}
			checkKBSError(t, r, tc.status, tc.typ)
		})
	}
	c, _ := handshake(t, br.URL, k)
	if _, err := c.GetResource(context.Background(), "default/key/x", ""); err != nil {
		t.Fatalf("good guest after bad input: %v", err)
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// reSign returns tok with claims changed, signed again with the broker's
// own token key (dev mode keeps it in DIR/token.key), so that only the
// claims are wrong.
func reSign(t *testing.T, devDir, tok string, set map[string]any) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(devDir, "token.key"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	hdrJSON, _ := base64.RawURLEncoding.DecodeString(parts[0])
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var hdr map[string]any
	var claims map[string]any
	_ = json.Unmarshal(hdrJSON, &hdr)
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	_ = dec.Decode(&claims)
	for k, v := range set {
		claims[k] = v
	}
	opts := &jose.SignerOptions{}
	for k, v := range hdr {
		if k != "alg" {
			opts.WithHeader(jose.HeaderKey(k), v)
		}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(claims)
	jws, err := signer.Sign(body)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

// TestSlowClientsAreCutOff: clients that send their head or their body a
// byte at a time (slowloris) are disconnected by the server's read
// timeouts, while a good guest is served.
func TestSlowClientsAreCutOff(t *testing.T) {
	br := startDevEnv(t, "", []string{"KBS_HTTP_SERVER__READ_HEADER_TIMEOUT=1s", "KBS_HTTP_SERVER__READ_TIMEOUT=2s"})
	writeResource(t, br.DevDir, "default/key/x", []byte("x"))
	addr := strings.TrimPrefix(br.URL, "http://")
	tests := map[string]struct {
		head, trickle string
		limit         time.Duration
	}{
		"slow head": {"POST /kbs/v0/auth HTTP/1.1\r\nHost: kbs\r\n", "X-Slow: a\r\n", 1 * time.Second},
		"slow body": {"POST /kbs/v0/auth HTTP/1.1\r\nHost: kbs\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", "{", 2 * time.Second},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			const clients = 50
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for range clients {
				wg.Go(func() {
					conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						errs <- err
						return
					}
					defer conn.Close()
					start := time.Now()
					if _, err := io.WriteString(conn, tc.head); err != nil {
						errs <- err
						return
					}
					// Trickle until the server hangs up; a read sees it.
					closed := make(chan struct{})
					go func() {
						_, _ = io.Copy(io.Discard, bufio.NewReader(conn))
						close(closed)
					}()
					tick := time.NewTicker(200 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-closed:
							if took := time.Since(start); took > tc.limit+3*time.Second {
								errs <- fmt.Errorf("cut off after %s, the limit is %s", took, tc.limit)
							}
							return
						case <-tick.C:
							_, _ = io.WriteString(conn, tc.trickle)
							if time.Since(start) > tc.limit+10*time.Second {
								errs <- errors.New("a slow client is still connected")
								return
							}
						}
					}
				})
			}
			// Meanwhile a good guest is served.
			if _, err := guestHandshake(context.Background(), br.URL, "default/key/x"); err != nil {
				t.Errorf("good guest while slow clients hold connections: %v", err)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestThousandsOfSessions: session.max_sessions bounds what an auth flood
// can hold; beyond it auth answers 503 with KBS error JSON, the host's
// memory stays bounded, and once the sessions expire guests are served.
func TestThousandsOfSessions(t *testing.T) {
	const max = 3000
	br := startDevEnv(t, "", []string{"KBS_SESSION__MAX_SESSIONS=" + strconv.Itoa(max), "KBS_SESSION__TIMEOUT=4s", "KBS_SESSION__AUTH_RATE=0"})
	writeResource(t, br.DevDir, "default/key/x", []byte("x"))
	rss0 := rssOf(br.cmd.Process.Pid)
	var ok, full, other atomic.Int64
	var wg sync.WaitGroup
	var next atomic.Int64
	client := &http.Client{Timeout: 10 * time.Second}
	for range 16 {
		wg.Go(func() {
			for next.Add(1) <= max+200 {
				resp, err := client.Post(br.URL+"/kbs/v0/auth", "application/json", strings.NewReader(`{"version":"0.4.0","tee":"sample","extra-params":""}`))
				if err != nil {
					other.Add(1)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == 200:
					ok.Add(1)
				case resp.StatusCode == 503 && strings.Contains(string(b), errPrefix+"AttestationError"):
					full.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != max || full.Load() != 200 || other.Load() != 0 {
		t.Fatalf("%d sessions opened, %d refused as full, %d other answers; want %d, 200, 0", ok.Load(), full.Load(), other.Load(), max)
	}
	if got := metric(t, br.URL, "kbs_sessions"); got != max {
		t.Errorf("kbs_sessions = %v, want %d", got, max)
	}
	if grew := rssOf(br.cmd.Process.Pid) - rss0; grew > 64<<20 {
		t.Errorf("the host grew by %d MiB for %d sessions", grew>>20, max)
	}
	// A new guest waits for the flood's sessions to expire.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := guestHandshake(context.Background(), br.URL, "default/key/x")
		if err == nil {
			break
		}
		if kbsclient.StatusOf(err) != 503 || time.Now().After(deadline) {
			t.Fatalf("good guest after the sessions expire: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestAuthFlood: session.auth_rate bounds new handshakes; the excess gets
// 429 with KBS error JSON and Retry-After, the sessions held stay within
// the rate, and a good guest is served once the flood stops.
func TestAuthFlood(t *testing.T) {
	const rate, burst = 50, 50
	br := startDevEnv(t, "", []string{"KBS_SESSION__AUTH_RATE=" + strconv.Itoa(rate), "KBS_SESSION__AUTH_BURST=" + strconv.Itoa(burst)})
	writeResource(t, br.DevDir, "default/key/x", []byte("x"))
	var ok, limited, other atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			for range 50 {
				resp, err := client.Post(br.URL+"/kbs/v0/auth", "application/json", strings.NewReader(`{"version":"0.4.0","tee":"sample","extra-params":""}`))
				if err != nil {
					other.Add(1)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == 200:
					ok.Add(1)
				case resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "" && strings.Contains(string(b), errPrefix+"TooManyRequests"):
					limited.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	allowed := burst + int64(rate*elapsed.Seconds()) + rate/5
	t.Logf("%d auth calls in %s: %d served, %d limited", ok.Load()+limited.Load()+other.Load(), elapsed, ok.Load(), limited.Load())
	if other.Load() != 0 || limited.Load() == 0 || ok.Load() > allowed {
		t.Fatalf("%d served (at most %d allowed), %d limited, %d other answers", ok.Load(), allowed, limited.Load(), other.Load())
	}
	if got := metric(t, br.URL, "kbs_sessions"); got > float64(ok.Load()) {
		t.Errorf("kbs_sessions = %v, more than the %d served", got, ok.Load())
	}
	if got := metric(t, br.URL, "kbs_auth_rate_limited_total"); got != float64(limited.Load()) {
		t.Errorf("kbs_auth_rate_limited_total = %v, want %d", got, limited.Load())
	}
	time.Sleep(time.Second)
	if _, err := guestHandshake(context.Background(), br.URL, "default/key/x"); err != nil {
		t.Fatalf("good guest after the flood: %v", err)
	}
}

// rssOf is a process's resident set in bytes.
func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}
