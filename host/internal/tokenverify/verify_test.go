package tokenverify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

var b64 = base64.RawURLEncoding

// t0 is the fixed "now" of most tests.
var t0 = time.Unix(1760426134, 0)

func fixedNow() time.Time { return t0 }

type fixture struct {
	ec, ec2, ec384 *ecdsa.PrivateKey
	rsa            *rsa.PrivateKey
	ed             ed25519.PrivateKey
	jwks           []byte // trusts ec (k1), ec384 (k384), rsa (r1), ed (e1)

	root, root2         *x509.Certificate
	rootKey, root2Key   *ecdsa.PrivateKey
	inter, inter2       *x509.Certificate
	interKey, inter2Key *ecdsa.PrivateKey
	rootPEM             string // file holding root
}

var (
	fxOnce sync.Once
	fx     *fixture
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func getFixture(t testing.TB) *fixture {
	fxOnce.Do(func() {
		f := &fixture{
			ec:    must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)),
			ec2:   must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)),
			ec384: must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)),
			rsa:   must(rsa.GenerateKey(rand.Reader, 2048)),
		}
		_, f.ed = must2(ed25519.GenerateKey(rand.Reader))
		f.jwks = jwksOf(map[string]jwkSpec{
			"k1":   {&f.ec.PublicKey, "ES256"},
			"k384": {&f.ec384.PublicKey, "ES384"},
			"r1":   {&f.rsa.PublicKey, "RS256"},
			"e1":   {f.ed.Public(), "EdDSA"},
		})
		f.root, f.rootKey = newCA("root", nil, nil)
		f.inter, f.interKey = newCA("intermediate", f.root, f.rootKey)
		f.root2, f.root2Key = newCA("untrusted root", nil, nil)
		f.inter2, f.inter2Key = newCA("untrusted intermediate", f.root2, f.root2Key)
		dir := must(os.MkdirTemp("", "tokenverify"))
		f.rootPEM = filepath.Join(dir, "ca.pem")
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.root.Raw})
		if err := os.WriteFile(f.rootPEM, pemBytes, 0o600); err != nil {
			panic(err)
		}
		fx = f
	})
	return fx
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

type jwkSpec struct {
	key crypto.PublicKey
	alg string
}

func jwksOf(keys map[string]jwkSpec) []byte {
	var set jose.JSONWebKeySet
	for kid, s := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: s.key, KeyID: kid, Algorithm: s.alg, Use: "sig"})
	}
	return must(json.Marshal(set))
}

func jwkJSON(pub crypto.PublicKey, alg string) map[string]any {
	var m map[string]any
	b := must(json.Marshal(jose.JSONWebKey{Key: pub, Algorithm: alg}))
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	if alg == "" {
		delete(m, "alg")
	}
	return m
}

func newCA(cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             t0.Add(-time.Hour),
		NotAfter:              t0.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey))
	return must(x509.ParseCertificate(der)), key
}

func newLeaf(pub crypto.PublicKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, notAfter time.Time) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "CoCo-Attestation-Service"},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey))
	return must(x509.ParseCertificate(der))
}

// jwkChain is a header whose jwk carries the chain as its own x5c.
func jwkChain(pub crypto.PublicKey, chain ...*x509.Certificate) map[string]any {
	j := jwkJSON(pub, "ES256")
	j["x5c"] = x5c(chain...)
	return map[string]any{"jwk": j}
}

func x5c(certs ...*x509.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, base64.StdEncoding.EncodeToString(c.Raw))
	}
	return out
}

// sign builds a compact JWS by hand so that tests can produce what no
// library would (alg none, HMAC keyed with a public key, bad headers).
func sign(alg string, key any, hdr map[string]any, claims any) string {
	h := map[string]any{"alg": alg, "typ": "JWT"}
	for k, v := range hdr {
		h[k] = v
	}
	payload, ok := claims.(string)
	if !ok {
		payload = string(must(json.Marshal(claims)))
	}
	input := b64.EncodeToString(must(json.Marshal(h))) + "." + b64.EncodeToString([]byte(payload))
	var sig []byte
	digest := func(hf crypto.Hash) []byte {
		hh := hf.New()
		hh.Write([]byte(input))
		return hh.Sum(nil)
	}
	switch alg {
	case "ES256", "ES384":
		hf, size := crypto.SHA256, 32
		if alg == "ES384" {
			hf, size = crypto.SHA384, 48
		}
		r, s := must2(ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), digest(hf)))
		sig = append(r.FillBytes(make([]byte, size)), s.FillBytes(make([]byte, size))...)
	case "RS256":
		sig = must(rsa.SignPKCS1v15(nil, key.(*rsa.PrivateKey), crypto.SHA256, digest(crypto.SHA256)))
	case "PS256":
		sig = must(rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, digest(crypto.SHA256), nil))
	case "EdDSA":
		sig = ed25519.Sign(key.(ed25519.PrivateKey), []byte(input))
	case "HS256":
		m := hmac.New(sha256.New, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "HS512":
		m := hmac.New(sha512.New, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "none":
	}
	return input + "." + b64.EncodeToString(sig)
}

func claimsAt(exp time.Time, extra map[string]any) map[string]any {
	c := map[string]any{"iss": "test", "iat": t0.Unix(), "exp": exp.Unix(),
		"submods": map[string]any{"cpu0": map[string]any{"ear.status": "affirming"}}}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func kid(k string) map[string]any { return map[string]any{"kid": k} }

func TestVerifyJWKS(t *testing.T) {
	f := getFixture(t)
	v, err := New(Config{JWKSJSON: [][]byte{f.jwks}, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	good := claimsAt(t0.Add(5*time.Minute), nil)
	valid := sign("ES256", f.ec, kid("k1"), good)
	parts := strings.Split(valid, ".")
	otherPayload := b64.EncodeToString(must(json.Marshal(claimsAt(t0.Add(5*time.Minute), map[string]any{"iss": "evil"}))))
	rsaPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&f.rsa.PublicKey))})

	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"ES256 by kid", valid, true},
		{"ES384 by kid", sign("ES384", f.ec384, kid("k384"), good), true},
		{"RS256 by kid", sign("RS256", f.rsa, kid("r1"), good), true},
		{"EdDSA by kid", sign("EdDSA", f.ed, kid("e1"), good), true},
		{"header jwk found by thumbprint", sign("ES256", f.ec, map[string]any{"jwk": jwkJSON(&f.ec.PublicKey, "ES256")}, good), true},
		{"exp within leeway", sign("ES256", f.ec, kid("k1"), claimsAt(t0.Add(-30*time.Second), nil)), true},
		{"nbf within leeway", sign("ES256", f.ec, kid("k1"), claimsAt(t0.Add(time.Hour), map[string]any{"nbf": t0.Add(30 * time.Second).Unix()})), true},
		{"fractional exp", sign("ES256", f.ec, kid("k1"), claimsAt(t0, map[string]any{"exp": float64(t0.Unix()) + 0.5})), true},

		{"tampered payload", parts[0] + "." + otherPayload + "." + parts[2], false},
		{"tampered signature", parts[0] + "." + parts[1] + "." + b64.EncodeToString(make([]byte, 64)), false},
		{"signed by an untrusted key", sign("ES256", f.ec2, kid("k1"), good), false},
		{"unknown kid", sign("ES256", f.ec, kid("nope"), good), false},
		{"neither kid nor jwk", sign("ES256", f.ec, nil, good), false},
		{"untrusted header jwk", sign("ES256", f.ec2, map[string]any{"jwk": jwkJSON(&f.ec2.PublicKey, "ES256")}, good), false},
		{"PS256 with an RS256-pinned key", sign("PS256", f.rsa, kid("r1"), good), false},
		{"ES256 key used as ES384", sign("ES384", f.ec384, kid("k1"), good), false},
		{"expired", sign("ES256", f.ec, kid("k1"), claimsAt(t0.Add(-61*time.Second), nil)), false},
		{"no exp", sign("ES256", f.ec, kid("k1"), map[string]any{"iss": "x"}), false},
		{"exp is a string", sign("ES256", f.ec, kid("k1"), map[string]any{"exp": "tomorrow"}), false},
		{"exp is huge", sign("ES256", f.ec, kid("k1"), map[string]any{"exp": 1e300}), false},
		{"not yet valid", sign("ES256", f.ec, kid("k1"), claimsAt(t0.Add(time.Hour), map[string]any{"nbf": t0.Add(2 * time.Minute).Unix()})), false},
		{"alg none", sign("none", nil, kid("k1"), good), false},
		{"HS256 keyed with the RSA public key", sign("HS256", rsaPubPEM, kid("r1"), good), false},
		{"HS512 keyed with the RSA modulus", sign("HS512", f.rsa.N.Bytes(), kid("r1"), good), false},
		{"claims not an object", sign("ES256", f.ec, kid("k1"), `["exp"]`), false},
		{"claims not json", sign("ES256", f.ec, kid("k1"), `{"exp":`), false},
		{"claims with trailing data", sign("ES256", f.ec, kid("k1"), `{"exp":9999999999} {}`), false},
		{"not a jws", "abc", false},
		{"json serialization", `{"payload":"e30","signatures":[]}`, false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims, err := v.Verify(context.Background(), tt.token)
			if tt.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if claims["iss"] != "test" {
					t.Errorf("claims = %v", claims)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrInvalidToken", err)
			}
		})
	}
}

func TestVerifyClaimsNumbers(t *testing.T) {
	f := getFixture(t)
	v := must(New(Config{JWKSJSON: [][]byte{f.jwks}, Now: fixedNow}))
	tok := sign("ES256", f.ec, kid("k1"), `{"exp":1760426434,"big":12345678901234567890,"f":1.5}`)
	claims, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if claims["big"] != json.Number("12345678901234567890") || claims["f"] != json.Number("1.5") {
		t.Errorf("claims = %#v", claims)
	}
}

func TestVerifyLeeway(t *testing.T) {
	f := getFixture(t)
	tok := sign("ES256", f.ec, kid("k1"), claimsAt(t0.Add(-10*time.Second), nil))
	tests := []struct {
		name   string
		leeway time.Duration
		ok     bool
	}{
		{"default 60s", 0, true},
		{"none", -1, false},
		{"5s", 5 * time.Second, false},
		{"20s", 20 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := must(New(Config{JWKSJSON: [][]byte{f.jwks}, Leeway: tt.leeway, Now: fixedNow}))
			_, err := v.Verify(context.Background(), tok)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestVerifyInsecureHeaderJWK(t *testing.T) {
	f := getFixture(t)
	v := must(New(Config{InsecureHeaderJWK: true, Now: fixedNow}))
	good := claimsAt(t0.Add(time.Minute), nil)
	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"any ES256 header key", sign("ES256", f.ec2, map[string]any{"jwk": jwkJSON(&f.ec2.PublicKey, "ES256")}, good), true},
		{"RS256 header key", sign("RS256", f.rsa, map[string]any{"jwk": jwkJSON(&f.rsa.PublicKey, "RS256")}, good), true},
		{"header jwk without alg", sign("ES256", f.ec, map[string]any{"jwk": jwkJSON(&f.ec.PublicKey, "")}, good), false},
		{"header jwk alg differs", sign("ES256", f.ec, map[string]any{"jwk": jwkJSON(&f.ec.PublicKey, "ES384")}, good), false},
		{"header jwk of another type", sign("ES256", f.ec, map[string]any{"jwk": jwkJSON(&f.rsa.PublicKey, "ES256")}, good), false},
		{"signed by another key", sign("ES256", f.ec2, map[string]any{"jwk": jwkJSON(&f.ec.PublicKey, "ES256")}, good), false},
		{"HS256 with a symmetric header jwk", sign("HS256", []byte("0123456789abcdef0123456789abcdef"), map[string]any{"jwk": map[string]any{"kty": "oct", "alg": "HS256", "k": b64.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))}}, good), false},
		{"alg none with header jwk", sign("none", nil, map[string]any{"jwk": jwkJSON(&f.ec.PublicKey, "none")}, good), false},
		{"private key in header", sign("ES256", f.ec, map[string]any{"jwk": func() map[string]any {
			var m map[string]any
			_ = json.Unmarshal(must(json.Marshal(jose.JSONWebKey{Key: f.ec, Algorithm: "ES256"})), &m)
			return m
		}()}, good), false},
		{"kid only", sign("ES256", f.ec, kid("k1"), good), false},
		{"expired", sign("ES256", f.ec, map[string]any{"jwk": jwkJSON(&f.ec.PublicKey, "ES256")}, claimsAt(t0.Add(-2*time.Minute), nil)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tt.token)
			if tt.ok && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, want ErrInvalidToken", err)
			}
		})
	}
}

func TestVerifyX5C(t *testing.T) {
	f := getFixture(t)
	v := must(New(Config{CertPaths: []string{f.rootPEM}, Now: fixedNow}))
	leaf := newLeaf(&f.ec.PublicKey, f.inter, f.interKey, t0.Add(time.Hour))
	expiredLeaf := newLeaf(&f.ec.PublicKey, f.inter, f.interKey, t0.Add(-time.Minute))
	untrustedLeaf := newLeaf(&f.ec.PublicKey, f.inter2, f.inter2Key, t0.Add(time.Hour))
	otherLeaf := newLeaf(&f.ec2.PublicKey, f.inter, f.interKey, t0.Add(time.Hour))
	good := claimsAt(t0.Add(time.Minute), nil)
	hdr := func(pub crypto.PublicKey, chain ...*x509.Certificate) map[string]any {
		h := map[string]any{"jwk": jwkJSON(pub, "ES256")}
		if chain != nil {
			h["x5c"] = x5c(chain...)
		}
		return h
	}
	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"chain to trusted root", sign("ES256", f.ec, hdr(&f.ec.PublicKey, leaf, f.inter), good), true},
		{"chain including the root", sign("ES256", f.ec, hdr(&f.ec.PublicKey, leaf, f.inter, f.root), good), true},
		{"chain to an untrusted root", sign("ES256", f.ec, hdr(&f.ec.PublicKey, untrustedLeaf, f.inter2), good), false},
		{"missing intermediate", sign("ES256", f.ec, hdr(&f.ec.PublicKey, leaf), good), false},
		{"expired leaf", sign("ES256", f.ec, hdr(&f.ec.PublicKey, expiredLeaf, f.inter), good), false},
		{"jwk is not x5c[0]", sign("ES256", f.ec2, hdr(&f.ec2.PublicKey, leaf, f.inter), good), false},
		{"x5c[0] is another key", sign("ES256", f.ec, hdr(&f.ec.PublicKey, otherLeaf, f.inter), good), false},
		{"jwk without x5c", sign("ES256", f.ec, hdr(&f.ec.PublicKey), good), false},
		{"x5c not std base64", sign("ES256", f.ec, map[string]any{"jwk": jwkJSON(&f.ec.PublicKey, "ES256"), "x5c": []string{"!!"}}, good), false},
		{"kid only", sign("ES256", f.ec, kid("k1"), good), false},
		// trustee's issuers put x5c inside the header jwk.
		{"jwk x5c to trusted root", sign("ES256", f.ec, jwkChain(&f.ec.PublicKey, leaf, f.inter), good), true},
		{"jwk x5c to an untrusted root", sign("ES256", f.ec, jwkChain(&f.ec.PublicKey, untrustedLeaf, f.inter2), good), false},
		{"jwk x5c missing intermediate", sign("ES256", f.ec, jwkChain(&f.ec.PublicKey, leaf), good), false},
		{"jwk x5c expired leaf", sign("ES256", f.ec, jwkChain(&f.ec.PublicKey, expiredLeaf, f.inter), good), false},
		{"jwk x5c[0] is another key", sign("ES256", f.ec, jwkChain(&f.ec.PublicKey, otherLeaf, f.inter), good), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tt.token)
			if tt.ok && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, want ErrInvalidToken", err)
			}
		})
	}
}

// jwksServer serves a swappable JWK set over TLS and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu     sync.Mutex
	body   []byte
	status int
	hits   atomic.Int32
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/jwks" {
			http.NotFound(w, r)
			return
		}
		s.hits.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		w.WriteHeader(s.status)
		_, _ = w.Write(s.body)
	}))
	// TestVerifyRemoteTLS makes handshakes fail on purpose.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestVerifyRemoteJWKS(t *testing.T) {
	f := getFixture(t)
	k1 := jwksOf(map[string]jwkSpec{"k1": {&f.ec.PublicKey, "ES256"}})
	k1k2 := jwksOf(map[string]jwkSpec{"k1": {&f.ec.PublicKey, "ES256"}, "k2": {&f.ec2.PublicKey, "ES256"}})
	srv := newJWKSServer(t, k1)
	clk := &clock{now: t0}
	v := must(New(Config{JWKSets: []string{srv.URL + "/jwks"}, HTTPClient: srv.Client(), Now: clk.Now}))
	ctx := context.Background()
	tok := func(key *ecdsa.PrivateKey, k string) string {
		return sign("ES256", key, kid(k), claimsAt(clk.Now().Add(time.Hour), nil))
	}
	type step struct {
		name    string
		advance time.Duration
		serve   []byte
		status  int
		token   func() string
		wantErr error
		hits    int32
	}
	steps := []step{
		{name: "first use fetches", token: func() string { return tok(f.ec, "k1") }, hits: 1},
		{name: "cached", token: func() string { return tok(f.ec, "k1") }, hits: 1},
		{name: "unknown kid within min refresh is not fetched", serve: k1k2, token: func() string { return tok(f.ec2, "k2") }, wantErr: ErrInvalidToken, hits: 1},
		{name: "unknown kid after min refresh refetches", advance: DefaultMinRefresh, token: func() string { return tok(f.ec2, "k2") }, hits: 2},
		{name: "still cached", advance: time.Minute, token: func() string { return tok(f.ec, "k1") }, hits: 2},
		{name: "max age refetches", advance: DefaultMaxAge, token: func() string { return tok(f.ec, "k1") }, hits: 3},
		{name: "failed refresh keeps old keys", advance: DefaultMaxAge, status: http.StatusInternalServerError, token: func() string { return tok(f.ec, "k1") }, hits: 4},
		{name: "unknown kid while the source fails", advance: DefaultMinRefresh, status: http.StatusInternalServerError, token: func() string { return tok(f.ec2, "k3") }, wantErr: ErrUnavailable, hits: 5},
		{name: "untrusted signer with a known kid", advance: DefaultMinRefresh, token: func() string { return tok(f.ec2, "k1") }, wantErr: ErrInvalidToken, hits: 6},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) {
			clk.Add(s.advance)
			// serve nil keeps the current set; status 0 means 200.
			srv.mu.Lock()
			if s.serve != nil {
				srv.body = s.serve
			}
			srv.status = http.StatusOK
			if s.status != 0 {
				srv.status = s.status
			}
			srv.mu.Unlock()
			_, err := v.Verify(ctx, s.token())
			if s.wantErr == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if s.wantErr != nil && !errors.Is(err, s.wantErr) {
				t.Fatalf("err = %v, want %v", err, s.wantErr)
			}
			if got := srv.hits.Load(); got != s.hits {
				t.Errorf("fetches = %d, want %d", got, s.hits)
			}
		}) {
			t.FailNow()
		}
	}
}

func TestVerifyRemoteJWKSDown(t *testing.T) {
	f := getFixture(t)
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	client, url := srv.Client(), srv.URL
	srv.Close()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"only remote", Config{JWKSets: []string{url + "/jwks"}}},
		{"static set lacks the kid", Config{JWKSets: []string{url + "/jwks"}, JWKSJSON: [][]byte{jwksOf(map[string]jwkSpec{"other": {&f.ec2.PublicKey, "ES256"}})}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.HTTPClient, tt.cfg.Now = client, fixedNow
			v := must(New(tt.cfg))
			_, err := v.Verify(context.Background(), sign("ES256", f.ec, kid("k1"), claimsAt(t0.Add(time.Hour), nil)))
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
		})
	}
	t.Run("static key still verifies", func(t *testing.T) {
		v := must(New(Config{JWKSets: []string{url + "/jwks"}, JWKSJSON: [][]byte{f.jwks}, HTTPClient: client, Now: fixedNow}))
		if _, err := v.Verify(context.Background(), sign("ES256", f.ec, kid("k1"), claimsAt(t0.Add(time.Hour), nil))); err != nil {
			t.Fatal(err)
		}
	})
}

func TestVerifyRemoteResponses(t *testing.T) {
	f := getFixture(t)
	k1 := jwksOf(map[string]jwkSpec{"k1": {&f.ec.PublicKey, "ES256"}})
	var base string
	mux := http.NewServeMux()
	mux.HandleFunc("/oidc/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"issuer":"x","jwks_uri":"` + base + `/oidc/keys"}`))
	})
	mux.HandleFunc("/oidc/keys", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(k1) })
	mux.HandleFunc("/plain-http/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"jwks_uri":"http://example.invalid/keys"}`))
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"keys":[]}`)) })
	mux.HandleFunc("/garbage", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`<html>`)) })
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[],"pad":"` + strings.Repeat("a", maxJWKSBytes) + `"}`))
	})
	mux.HandleFunc("/exotic", func(w http.ResponseWriter, r *http.Request) {
		var set struct {
			Keys []any `json:"keys"`
		}
		_ = json.Unmarshal(k1, &set)
		set.Keys = append([]any{
			map[string]any{"kty": "OKP", "crv": "X448", "x": "AA"},
			map[string]any{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"},
		}, set.Keys...)
		_ = json.NewEncoder(w).Encode(set)
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	base = srv.URL
	tests := []struct {
		path    string
		wantErr error
	}{
		{"/oidc", nil},
		{"/oidc/", nil},
		{"/exotic", nil},
		{"/plain-http", ErrUnavailable},
		{"/empty", ErrUnavailable},
		{"/garbage", ErrUnavailable},
		{"/huge", ErrUnavailable},
		{"/missing", ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			v := must(New(Config{JWKSets: []string{srv.URL + tt.path}, HTTPClient: srv.Client(), Now: fixedNow}))
			_, err := v.Verify(context.Background(), sign("ES256", f.ec, kid("k1"), claimsAt(t0.Add(time.Hour), nil)))
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// The client's own TLS trust applies: a server it does not trust is
// unavailable, not silently accepted.
func TestVerifyRemoteTLS(t *testing.T) {
	f := getFixture(t)
	srv := newJWKSServer(t, f.jwks)
	v := must(New(Config{JWKSets: []string{srv.URL + "/jwks"}, HTTPClient: &http.Client{Timeout: time.Second}, Now: fixedNow}))
	_, err := v.Verify(context.Background(), sign("ES256", f.ec, kid("k1"), claimsAt(t0.Add(time.Hour), nil)))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func TestNew(t *testing.T) {
	f := getFixture(t)
	dir := t.TempDir()
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, f.jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	noCerts := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(noCerts, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"nothing trusted", Config{}, "trusts nothing"},
		{"only settings", Config{Leeway: time.Second, MinRefresh: time.Second}, "trusts nothing"},
		{"insecure only", Config{InsecureHeaderJWK: true}, ""},
		{"jwks file path", Config{JWKSets: []string{jwksFile}}, ""},
		{"jwks file url", Config{JWKSets: []string{"file://" + jwksFile}}, ""},
		{"jwks https", Config{JWKSets: []string{"https://issuer.example/jwks"}}, ""},
		{"jwks http refused", Config{JWKSets: []string{"http://issuer.example/jwks"}}, "only file:// and https://"},
		{"jwks file missing", Config{JWKSets: []string{filepath.Join(dir, "nope.json")}}, "no such file"},
		{"jwks not json", Config{JWKSJSON: [][]byte{[]byte("{")}}, "not a JWK set"},
		{"jwks without usable keys", Config{JWKSJSON: [][]byte{[]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)}}, "no usable"},
		{"cert bundle", Config{CertPaths: []string{f.rootPEM}}, ""},
		{"cert bundle without certs", Config{CertPaths: []string{noCerts}}, "no PEM certificate"},
		{"cert bundle missing", Config{CertPaths: []string{filepath.Join(dir, "nope.pem")}}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	f := getFixture(b)
	now := time.Now()
	claims := claimsAt(now.Add(time.Hour), nil)
	leaf := newLeaf(&f.ec.PublicKey, f.inter, f.interKey, now.Add(time.Hour))
	cases := []struct {
		name  string
		cfg   Config
		token string
	}{
		{"ES256-jwks", Config{JWKSJSON: [][]byte{f.jwks}}, sign("ES256", f.ec, kid("k1"), claims)},
		{"ES256-x5c", Config{CertPaths: []string{f.rootPEM}}, sign("ES256", f.ec, map[string]any{"jwk": jwkJSON(&f.ec.PublicKey, "ES256"), "x5c": x5c(leaf, f.inter)}, claims)},
		{"RS256-jwks", Config{JWKSJSON: [][]byte{f.jwks}}, sign("RS256", f.rsa, kid("r1"), claims)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			c.cfg.Now = func() time.Time { return t0 }
			v := must(New(c.cfg))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, c.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Concurrent first uses share one fetch.
func TestVerifyRemoteConcurrent(t *testing.T) {
	f := getFixture(t)
	srv := newJWKSServer(t, f.jwks)
	v := must(New(Config{JWKSets: []string{srv.URL + "/jwks"}, HTTPClient: srv.Client(), Now: fixedNow}))
	tok := sign("ES256", f.ec, kid("k1"), claimsAt(t0.Add(time.Hour), nil))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.Verify(context.Background(), tok)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
}
