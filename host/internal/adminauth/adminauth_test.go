package adminauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// signer is a private key and the algorithm to sign with.
type signer struct {
	alg jose.SignatureAlgorithm
	key any
	kid string
}

func edKey(t *testing.T) (signer, []byte) {
	t.Helper()
	privPEM, pubPEM, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := parsePrivate(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	return signer{alg: jose.EdDSA, key: priv}, pubPEM
}

func ecKey(t *testing.T) (signer, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{alg: jose.ES256, key: k}, k
}

func pubPEM(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// claims builds token claims: iat now, exp in an hour, plus extra
// (a nil value deletes a claim).
func claims(extra map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func (s signer) token(t *testing.T, c map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if s.kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), s.kid)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// hs256WithPublicKey forges the classic algorithm-confusion token: HMAC
// keyed with the verifier's public key bytes.
func hs256WithPublicKey(t *testing.T, pub []byte, c map[string]any) string {
	t.Helper()
	return signer{alg: jose.HS256, key: pub}.token(t, c)
}

type authCase struct {
	header     string
	method     string
	uri        string
	want       Principal
	wantErr    error  // ErrUnauthenticated or ErrForbidden; nil = allowed
	wantErrMsg string // substring
}

func runCases(t *testing.T, a *Authorizer, cases map[string]authCase) {
	t.Helper()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			method, uri := tc.method, tc.uri
			if method == "" {
				method = http.MethodPost
			}
			if uri == "" {
				uri = "/kbs/v0/resource-policy"
			}
			p, err := a.Authorize(context.Background(), tc.header, method, uri)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if p != tc.want {
					t.Fatalf("principal %+v, want %+v", p, tc.want)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			other := ErrForbidden
			if tc.wantErr == ErrForbidden {
				other = ErrUnauthenticated
			}
			if errors.Is(err, other) {
				t.Fatalf("error %v matches both 401 and 403", err)
			}
			if !strings.Contains(err.Error(), tc.wantErrMsg) {
				t.Fatalf("error %q, want it to contain %q", err, tc.wantErrMsg)
			}
			if strings.Contains(err.Error(), strings.TrimPrefix(tc.header, "Bearer ")) && len(tc.header) > 20 {
				t.Fatal("the error echoes the token")
			}
		})
	}
}

func bearerOf(tok string) string { return "Bearer " + tok }

func TestGeneration1PublicKey(t *testing.T) {
	good, goodPub := edKey(t)
	other, _ := edKey(t)
	ec, _ := ecKey(t)
	a, err := New(context.Background(), Config{AuthPublicKey: writeFile(t, "admin.pub", goodPub)})
	if err != nil {
		t.Fatal(err)
	}
	if a.Mode() != ModePublicKey || a.Insecure() {
		t.Fatalf("mode %s insecure %v", a.Mode(), a.Insecure())
	}
	runCases(t, a, map[string]authCase{
		// The old kbs-client's token: iat, nbf, exp and nothing else.
		"old kbs-client token": {
			header: bearerOf(good.token(t, claims(map[string]any{"nbf": time.Now().Unix()}))),
			want:   Principal{Subject: "admin", Role: "admin"},
		},
		"with a subject": {
			header: bearerOf(good.token(t, claims(map[string]any{"sub": "ops"}))), uri: "/kbs/v0/resource/a/b/c",
			want: Principal{Subject: "ops", Role: "admin"},
		},
		"lower-case scheme": {
			header: "bearer " + good.token(t, claims(nil)), want: Principal{Subject: "admin", Role: "admin"},
		},
		"expired": {
			header:  bearerOf(good.token(t, claims(map[string]any{"exp": time.Now().Add(-2 * time.Minute).Unix()}))),
			wantErr: ErrUnauthenticated, wantErrMsg: "expired",
		},
		"expired within the leeway": {
			header: bearerOf(good.token(t, claims(map[string]any{"exp": time.Now().Add(-30 * time.Second).Unix()}))),
			want:   Principal{Subject: "admin", Role: "admin"},
		},
		"not yet valid": {
			header:  bearerOf(good.token(t, claims(map[string]any{"nbf": time.Now().Add(time.Hour).Unix()}))),
			wantErr: ErrUnauthenticated, wantErrMsg: "not valid yet",
		},
		"no exp": {
			header:  bearerOf(good.token(t, claims(map[string]any{"exp": nil}))),
			wantErr: ErrUnauthenticated, wantErrMsg: "no exp",
		},
		"wrong key": {
			header:  bearerOf(other.token(t, claims(nil))),
			wantErr: ErrUnauthenticated, wantErrMsg: "no configured key",
		},
		"another algorithm": {
			header:  bearerOf(ec.token(t, claims(nil))),
			wantErr: ErrUnauthenticated, wantErrMsg: "no configured key",
		},
		"HS256 with the public key": {
			header:  bearerOf(hs256WithPublicKey(t, goodPub, claims(nil))),
			wantErr: ErrUnauthenticated, wantErrMsg: "unaccepted algorithm",
		},
		"alg none": {
			header:  bearerOf(unsignedToken(claims(nil))),
			wantErr: ErrUnauthenticated, wantErrMsg: "malformed",
		},
		"tampered payload": {
			header:  bearerOf(tamper(t, good.token(t, claims(map[string]any{"sub": "ops"})))),
			wantErr: ErrUnauthenticated, wantErrMsg: "no configured key",
		},
		"missing header": {header: "", wantErr: ErrUnauthenticated, wantErrMsg: "missing bearer token"},
		"empty bearer":   {header: "Bearer  ", wantErr: ErrUnauthenticated, wantErrMsg: "missing bearer token"},
		"basic auth":     {header: "Basic YWRtaW46YWRtaW4=", wantErr: ErrUnauthenticated, wantErrMsg: "not a Bearer token"},
		"garbage token":  {header: "Bearer abc.def", wantErr: ErrUnauthenticated, wantErrMsg: "malformed"},
		"not even a JWT": {header: "Bearer x", wantErr: ErrUnauthenticated, wantErrMsg: "malformed"},
	})
}

func unsignedToken(c map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	b, _ := json.Marshal(c)
	return h + "." + base64.RawURLEncoding.EncodeToString(b) + "."
}

// tamper replaces the payload of a signed token with {"sub":"root",...}.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, _ := json.Marshal(claims(map[string]any{"sub": "root"}))
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func TestGeneration2Simple(t *testing.T) {
	alice, alicePub := edKey(t)
	bob, bobPub := edKey(t)
	mallory, _ := edKey(t)
	cfg := Config{
		Type: ModeSimple,
		Personas: []Persona{
			{ID: "admin", PublicKeyPath: writeFile(t, "alice.pub", alicePub)},
			{ID: "policy-reader", PublicKeyPath: writeFile(t, "bob.pub", bobPub)},
		},
		Roles: []Role{
			{ID: "admin", AllowedEndpoints: "/kbs/v0/.+"},
			{ID: "policy-reader", AllowedEndpoints: "^/kbs/v0/resource-policy$"},
		},
	}
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCases(t, a, map[string]authCase{
		"admin persona":           {header: bearerOf(alice.token(t, claims(nil))), uri: "/kbs/v0/resource/a/b/c", want: Principal{Subject: "admin", Role: "admin"}},
		"reader on its endpoint":  {header: bearerOf(bob.token(t, claims(map[string]any{"sub": "bob"}))), want: Principal{Subject: "bob", Role: "policy-reader"}},
		"reader elsewhere":        {header: bearerOf(bob.token(t, claims(nil))), uri: "/kbs/v0/resource/a/b/c", wantErr: ErrForbidden, wantErrMsg: `role "policy-reader" may not`},
		"reader, prefix only":     {header: bearerOf(bob.token(t, claims(nil))), uri: "/kbs/v0/resource-policy?x=1", wantErr: ErrForbidden},
		"expired":                 {header: bearerOf(alice.token(t, claims(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}))), wantErr: ErrUnauthenticated, wantErrMsg: "expired"},
		"unknown persona":         {header: bearerOf(mallory.token(t, claims(nil))), wantErr: ErrUnauthenticated},
		"role claim is ignored":   {header: bearerOf(bob.token(t, claims(map[string]any{"role": "admin"}))), uri: "/kbs/v0/resource/a/b/c", wantErr: ErrForbidden},
		"HS256 with a public key": {header: bearerOf(hs256WithPublicKey(t, bobPub, claims(nil))), wantErr: ErrUnauthenticated},
	})

	t.Run("without roles every persona may do everything", func(t *testing.T) {
		cfg.Roles = nil
		a, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authorize(context.Background(), bearerOf(bob.token(t, claims(nil))), "DELETE", "/kbs/v0/resource/a/b/c"); err != nil {
			t.Fatal(err)
		}
	})
}

// generation3 builds an AuthenticatedAuthorization config with three
// identity providers: an Ed25519 PEM (trustee's docker-compose setup), a
// JWKS file with a P-256 key, and a remote JWKS.
type gen3 struct {
	docker, jwksKey, remote signer
	dockerPub               []byte
	cfg                     Config
	server                  *httptest.Server
	served                  atomic.Value // JWKS JSON the server returns
}

func newGen3(t *testing.T) *gen3 {
	t.Helper()
	g := &gen3{}
	g.docker, g.dockerPub = edKey(t)
	var ecPriv *ecdsa.PrivateKey
	g.jwksKey, ecPriv = ecKey(t)
	g.jwksKey.kid = "file-key"
	remotePriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	g.remote = signer{alg: jose.RS256, key: remotePriv, kid: "r1"}

	jwksFile, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &ecPriv.PublicKey, KeyID: "file-key", Algorithm: "ES256", Use: "sig"},
		{Key: []byte("a symmetric key is skipped, ok!!!"), KeyID: "hmac"},
	}})
	remoteJWKS, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &remotePriv.PublicKey, KeyID: "r1", Use: "sig"}}})
	g.served.Store(remoteJWKS)
	g.server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": "https://idp", "jwks_uri": g.server.URL + "/keys"})
		case "/keys":
			w.Write(g.served.Load().([]byte))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(g.server.Close)
	old := httpClient
	httpClient = g.server.Client()
	t.Cleanup(func() { httpClient = old })

	g.cfg = Config{
		AuthorizationMode: ModeAuthenticatedAuthorization,
		Authentication: Authentication{BearerJWT: BearerJWT{IdentityProviders: []IdentityProvider{
			{Issuer: "TrusteeInDocker", Audience: "KBS", PublicKeyURI: writeFile(t, "admin.pub", g.dockerPub)},
			{Issuer: "file-idp", JWKSetURI: "file://" + writeFile(t, "jwks.json", jwksFile)},
			// An OpenID issuer URL: the JWKS is found through discovery.
			{Issuer: "https://idp", JWKSetURI: g.server.URL},
		}}},
		Authorization: Authorization{RegexACL: RegexACL{ACLs: []ACL{
			{Role: "admin", AllowedEndpoints: "^/kbs/v0/.+$"},
			{Role: "tester", AllowedEndpoints: "^/kbs/v0/(resource|resource-policy)(/.*)?$"},
			{Role: "auditor", AllowedEndpoints: "^/kbs/v0/(resource-policy|reference-value/.+)$", Methods: []string{"get"}},
		}}},
	}
	return g
}

// dockerToken is trustee's docker-compose setup.sh token, assembled by
// hand as openssl does: no JOSE library involved.
func dockerToken(t *testing.T, s signer, c map[string]any) string {
	t.Helper()
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT"}`))
	b, _ := json.Marshal(c)
	in := h + "." + base64.RawURLEncoding.EncodeToString(b)
	sig := ed25519.Sign(s.key.(ed25519.PrivateKey), []byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestGeneration3AuthenticatedAuthorization(t *testing.T) {
	g := newGen3(t)
	a, err := New(context.Background(), g.cfg)
	if err != nil {
		t.Fatal(err)
	}
	docker := func(extra map[string]any) string {
		base := map[string]any{"iss": "TrusteeInDocker", "sub": "admin", "aud": []string{"KBS"}, "role": "admin"}
		for k, v := range extra {
			base[k] = v
		}
		return bearerOf(dockerToken(t, g.docker, claims(base)))
	}
	stranger, _ := edKey(t)
	runCases(t, a, map[string]authCase{
		"docker-compose admin token": {header: docker(nil), uri: "/kbs/v0/resource/default/key/k1", want: Principal{Subject: "admin", Role: "admin"}},
		"audience as a string":       {header: docker(map[string]any{"aud": "KBS"}), want: Principal{Subject: "admin", Role: "admin"}},
		"role from the token":        {header: docker(map[string]any{"role": "tester", "sub": "ci"}), uri: "/kbs/v0/resource-policy", want: Principal{Subject: "ci", Role: "tester"}},
		"role not allowed here":      {header: docker(map[string]any{"role": "tester"}), uri: "/kbs/v0/attestation-policy", wantErr: ErrForbidden, wantErrMsg: `role "tester" may not POST /kbs/v0/attestation-policy`},
		"role unknown":               {header: docker(map[string]any{"role": "guest"}), wantErr: ErrForbidden},
		"ACL regex is anchored":      {header: docker(map[string]any{"role": "tester"}), uri: "/kbs/v0/resource-policy-x", wantErr: ErrForbidden},
		"query is matched too":       {header: docker(map[string]any{"role": "auditor"}), method: "GET", uri: "/kbs/v0/resource-policy?scope=x", wantErr: ErrForbidden},
		"method-limited ACL, GET":    {header: docker(map[string]any{"role": "auditor", "sub": "eve"}), method: "GET", uri: "/kbs/v0/reference-value/svn", want: Principal{Subject: "eve", Role: "auditor"}},
		"method-limited ACL, POST":   {header: docker(map[string]any{"role": "auditor"}), method: "POST", uri: "/kbs/v0/resource-policy", wantErr: ErrForbidden},
		"missing role":               {header: docker(map[string]any{"role": nil}), wantErr: ErrUnauthenticated, wantErrMsg: "no string role claim"},
		"role not a string":          {header: docker(map[string]any{"role": []string{"admin"}}), wantErr: ErrUnauthenticated, wantErrMsg: "no string role claim"},
		"wrong issuer":               {header: docker(map[string]any{"iss": "Elsewhere"}), wantErr: ErrUnauthenticated, wantErrMsg: `issuer "Elsewhere"`},
		"wrong audience":             {header: docker(map[string]any{"aud": []string{"other"}}), wantErr: ErrUnauthenticated, wantErrMsg: `audience "KBS"`},
		"no audience":                {header: docker(map[string]any{"aud": nil}), wantErr: ErrUnauthenticated, wantErrMsg: `audience "KBS"`},
		"expired":                    {header: docker(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}), wantErr: ErrUnauthenticated, wantErrMsg: "expired"},
		"no exp":                     {header: docker(map[string]any{"exp": nil}), wantErr: ErrUnauthenticated, wantErrMsg: "no exp"},
		"unknown key":                {header: bearerOf(stranger.token(t, claims(map[string]any{"iss": "TrusteeInDocker", "aud": "KBS", "role": "admin"}))), wantErr: ErrUnauthenticated, wantErrMsg: "no configured key"},
		"HS256 with the PEM key":     {header: bearerOf(hs256WithPublicKey(t, g.dockerPub, claims(map[string]any{"iss": "TrusteeInDocker", "aud": "KBS", "role": "admin"}))), wantErr: ErrUnauthenticated, wantErrMsg: "unaccepted algorithm"},
		"HS256 with the JWKS symmetric key": {
			header:  bearerOf(signer{alg: jose.HS256, key: []byte("a symmetric key is skipped, ok!!!"), kid: "hmac"}.token(t, claims(map[string]any{"iss": "file-idp", "role": "admin"}))),
			wantErr: ErrUnauthenticated, wantErrMsg: "unaccepted algorithm",
		},
		"JWKS file key": {
			header: bearerOf(g.jwksKey.token(t, claims(map[string]any{"iss": "file-idp", "sub": "robot", "role": "admin"}))),
			want:   Principal{Subject: "robot", Role: "admin"},
		},
		"JWKS file key, wrong issuer": {
			header:  bearerOf(g.jwksKey.token(t, claims(map[string]any{"iss": "TrusteeInDocker", "role": "admin"}))),
			wantErr: ErrUnauthenticated, wantErrMsg: "issuer",
		},
		"remote JWKS through OpenID discovery": {
			header: bearerOf(g.remote.token(t, claims(map[string]any{"iss": "https://idp", "sub": "sso-user", "role": "tester"}))),
			uri:    "/kbs/v0/resource/a/b/c", want: Principal{Subject: "sso-user", Role: "tester"},
		},
	})
}

func TestRemoteJWKSRotation(t *testing.T) {
	g := newGen3(t)
	a, err := New(context.Background(), g.cfg)
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	newKey := signer{alg: jose.PS256, key: rotated, kid: "r2"}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &rotated.PublicKey, KeyID: "r2"}}})
	g.served.Store(jwks)
	tok := bearerOf(newKey.token(t, claims(map[string]any{"iss": "https://idp", "role": "admin"})))

	if _, err := a.Authorize(context.Background(), tok, "GET", "/kbs/v0/resource-policy"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("a fresh key set was fetched again within the refresh interval: %v", err)
	}
	remote := a.providers[2].keys
	remote.mu.Lock()
	remote.lastFetch = time.Now().Add(-2 * refreshInterval)
	remote.mu.Unlock()
	if _, err := a.Authorize(context.Background(), tok, "GET", "/kbs/v0/resource-policy"); err != nil {
		t.Fatalf("rotated key not picked up: %v", err)
	}
	old := bearerOf(g.remote.token(t, claims(map[string]any{"iss": "https://idp", "role": "admin"})))
	if _, err := a.Authorize(context.Background(), old, "GET", "/kbs/v0/resource-policy"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("a key removed from the JWKS is still trusted: %v", err)
	}
}

func TestModes(t *testing.T) {
	good, goodPub := edKey(t)
	valid := bearerOf(good.token(t, claims(map[string]any{"role": "admin"})))
	tests := map[string]struct {
		cfg      Config
		header   string
		wantMode string
		wantErr  error
	}{
		"empty section denies":         {Config{}, valid, ModeDenyAll, ErrForbidden},
		"gen1 insecure_api":            {Config{InsecureAPI: true, AuthPublicKey: writeFile(t, "k.pub", goodPub)}, "", ModeInsecureAllowAll, nil},
		"gen2 InsecureAllowAll":        {Config{Type: ModeInsecureAllowAll}, "", ModeInsecureAllowAll, nil},
		"gen2 DenyAll":                 {Config{Type: ModeDenyAll}, valid, ModeDenyAll, ErrForbidden},
		"gen2 Simple without personas": {Config{Type: ModeSimple}, valid, ModeSimple, ErrUnauthenticated},
		"gen3 InsecureAllowAll":        {Config{AuthorizationMode: ModeInsecureAllowAll}, "Bearer junk", ModeInsecureAllowAll, nil},
		"gen3 DenyAll":                 {Config{AuthorizationMode: ModeDenyAll}, valid, ModeDenyAll, ErrForbidden},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a, err := New(context.Background(), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if a.Mode() != tc.wantMode || a.Insecure() != (tc.wantMode == ModeInsecureAllowAll) {
				t.Fatalf("mode %s insecure %v, want %s", a.Mode(), a.Insecure(), tc.wantMode)
			}
			p, err := a.Authorize(context.Background(), tc.header, "POST", "/kbs/v0/resource-policy")
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && p.Subject != "anonymous" {
				t.Fatalf("principal %+v", p)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	_, edPub := edKey(t)
	_, ecPriv := ecKey(t)
	edPath := writeFile(t, "ed.pub", edPub)
	ecPath := writeFile(t, "ec.pub", pubPEM(t, &ecPriv.PublicKey))
	privPEM, _, _ := GenerateKeyPair()
	privPath := writeFile(t, "admin.key", privPEM)
	smallRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallRSAPath := writeFile(t, "rsa.pub", pubPEM(t, &smallRSA.PublicKey))
	idp := func(p IdentityProvider) Config {
		return Config{AuthorizationMode: ModeAuthenticatedAuthorization,
			Authentication: Authentication{BearerJWT: BearerJWT{IdentityProviders: []IdentityProvider{p}}}}
	}
	tests := map[string]struct {
		cfg     Config
		wantErr string
	}{
		"mixed generations":       {Config{AuthPublicKey: edPath, Type: ModeSimple}, "several generations"},
		"mixed generations 2 & 3": {Config{Personas: []Persona{{ID: "a", PublicKeyPath: edPath}}, AuthorizationMode: ModeDenyAll}, "several generations"},
		"missing key file":        {Config{AuthPublicKey: "/nonexistent/admin.pub"}, "no such file"},
		"gen1 EC key":             {Config{AuthPublicKey: ecPath}, "want an Ed25519 public key"},
		"private key given":       {Config{AuthPublicKey: privPath}, `PEM block "PRIVATE KEY" is not a public key`},
		"unknown type":            {Config{Type: "Simpel"}, `unknown type "Simpel"`},
		"persona without key":     {Config{Type: ModeSimple, Personas: []Persona{{ID: "a"}}}, "id and public_key_path are required"},
		"duplicate persona":       {Config{Personas: []Persona{{ID: "a", PublicKeyPath: edPath}, {ID: "a", PublicKeyPath: edPath}}}, "defined twice"},
		"bad role regex":          {Config{Personas: []Persona{{ID: "a", PublicKeyPath: edPath}}, Roles: []Role{{ID: "a", AllowedEndpoints: "("}}}, "allowed_endpoints"},
		"DenyAll with personas":   {Config{Type: ModeDenyAll, Personas: []Persona{{ID: "a", PublicKeyPath: edPath}}}, "takes no personas"},
		"unknown mode":            {Config{AuthorizationMode: "AllowAll"}, `unknown authorization_mode "AllowAll"`},
		"providers without mode":  {Config{Authentication: Authentication{BearerJWT: BearerJWT{IdentityProviders: []IdentityProvider{{PublicKeyURI: edPath}}}}}, "authorization_mode is not"},
		"no providers":            {Config{AuthorizationMode: ModeAuthenticatedAuthorization}, "at least one identity provider"},
		"provider without keys":   {idp(IdentityProvider{Issuer: "x"}), "public_key_uri or jwk_set_uri is required"},
		"http without the flag":   {idp(IdentityProvider{JWKSetURI: "http://127.0.0.1:1/jwks"}), "insecure_public_key_from_uri"},
		"small RSA key":           {idp(IdentityProvider{PublicKeyURI: smallRSAPath}), "at least 2048"},
		"JWKS that is not JSON":   {idp(IdentityProvider{JWKSetURI: edPath}), "not a JWK Set"},
		"unanchored ACL": {
			Config{AuthorizationMode: ModeAuthenticatedAuthorization,
				Authentication: Authentication{BearerJWT: BearerJWT{IdentityProviders: []IdentityProvider{{PublicKeyURI: edPath}}}},
				Authorization:  Authorization{RegexACL: RegexACL{ACLs: []ACL{{Role: "admin", AllowedEndpoints: "/kbs/.*"}}}}},
			"must start with ^/kbs and end with $",
		},
		"ACL without role": {
			Config{AuthorizationMode: ModeAuthenticatedAuthorization,
				Authentication: Authentication{BearerJWT: BearerJWT{IdentityProviders: []IdentityProvider{{PublicKeyURI: edPath}}}},
				Authorization:  Authorization{RegexACL: RegexACL{ACLs: []ACL{{AllowedEndpoints: "^/kbs/.*$"}}}}},
			"role is required",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := New(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestInsecureHTTPKeySource(t *testing.T) {
	_, ecPriv := ecKey(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(pubPEM(t, &ecPriv.PublicKey))
	}))
	defer srv.Close()
	cfg := Config{
		AuthorizationMode: ModeAuthenticatedAuthorization,
		Authentication: Authentication{BearerJWT: BearerJWT{
			InsecurePublicKeyFromURI: true,
			IdentityProviders:        []IdentityProvider{{PublicKeyURI: srv.URL + "/admin.pub"}},
		}},
		Authorization: Authorization{RegexACL: RegexACL{ACLs: []ACL{{Role: "admin", AllowedEndpoints: "^/kbs/v0/.+$"}}}},
	}
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok := signer{alg: jose.ES256, key: ecPriv}.token(t, claims(map[string]any{"role": "admin"}))
	if _, err := a.Authorize(context.Background(), bearerOf(tok), "GET", "/kbs/v0/resource-policy"); err != nil {
		t.Fatal(err)
	}
}

func TestMintToken(t *testing.T) {
	privPEM, pubPEMBytes, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	derived, err := PublicKeyPEM(privPEM)
	if err != nil || string(derived) != string(pubPEMBytes) {
		t.Fatalf("PublicKeyPEM = %q, %v; want the generated public key", derived, err)
	}
	pubPath := writeFile(t, "admin.pub", pubPEMBytes)

	tok, err := MintToken(privPEM, TokenClaims{Issuer: "kbs-client", Subject: "alice", Audience: []string{"KBS"}, Role: "admin"}, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("shape", func(t *testing.T) {
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("%d parts", len(parts))
		}
		var hdr, body map[string]any
		h, _ := base64.RawURLEncoding.DecodeString(parts[0])
		b, _ := base64.RawURLEncoding.DecodeString(parts[1])
		if json.Unmarshal(h, &hdr) != nil || json.Unmarshal(b, &body) != nil {
			t.Fatal("undecodable token")
		}
		if hdr["alg"] != "EdDSA" || hdr["typ"] != "JWT" {
			t.Fatalf("header %v", hdr)
		}
		exp, _ := body["exp"].(float64)
		iat, _ := body["iat"].(float64)
		if body["role"] != "admin" || body["sub"] != "alice" || body["iss"] != "kbs-client" || exp-iat != 300 {
			t.Fatalf("claims %v", body)
		}
	})
	verifiers := map[string]Config{
		"generation 1": {AuthPublicKey: pubPath},
		"generation 2": {Type: ModeSimple, Personas: []Persona{{ID: "admin", PublicKeyPath: pubPath}}},
		"generation 3": {
			AuthorizationMode: ModeAuthenticatedAuthorization,
			Authentication:    Authentication{BearerJWT: BearerJWT{IdentityProviders: []IdentityProvider{{Issuer: "kbs-client", Audience: "KBS", PublicKeyURI: pubPath}}}},
			Authorization:     Authorization{RegexACL: RegexACL{ACLs: []ACL{{Role: "admin", AllowedEndpoints: "^/kbs/v0/.+$"}}}},
		},
	}
	for name, cfg := range verifiers {
		t.Run("accepted by "+name, func(t *testing.T) {
			a, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			p, err := a.Authorize(context.Background(), bearerOf(tok), "POST", "/kbs/v0/resource/a/b/c")
			if err != nil || p.Subject != "alice" {
				t.Fatalf("principal %+v, error %v", p, err)
			}
		})
	}
	errs := map[string]func() error{
		"zero lifetime": func() error { _, err := MintToken(privPEM, TokenClaims{}, 0); return err },
		"public key as private": func() error {
			_, err := MintToken(pubPEMBytes, TokenClaims{}, time.Minute)
			return err
		},
		"not PEM": func() error { _, err := MintToken([]byte("nope"), TokenClaims{}, time.Minute); return err },
		"EC private key": func() error {
			_, k := ecKey(t)
			der, _ := x509.MarshalPKCS8PrivateKey(k)
			_, err := MintToken(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), TokenClaims{}, time.Minute)
			return err
		},
	}
	for name, f := range errs {
		t.Run(name, func(t *testing.T) {
			if f() == nil {
				t.Fatal("no error")
			}
		})
	}
}
