package ear

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/token"
)

// The keys under testdata/ are test-only, made with openssl genpkey / ec /
// ecparam / rsa / pkcs8. signing-key*.pem hold the same P-256 key.

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var ctx = context.Background()

func request() *token.IssueRequest {
	return &token.IssueRequest{Submods: map[string]token.Appraisal{
		"cpu0": {
			Status:      "affirming",
			TrustVector: map[string]int{"instance-identity": 0, "configuration": 2, "executables": 3, "file-system": 0, "hardware": 2, "runtime-opaque": 0, "storage-opaque": 0, "sourced-data": 0},
			PolicyID:    "default_cpu",
			AnnotatedEvidence: map[string]any{
				"sample":              map[string]any{"svn": "1", "launch_digest": "abcde", "platform_version": map[string]any{"major": 1, "minor": 4}, "debug": false},
				"report_data":         "99c0a6da",
				"runtime_data_claims": map[string]any{"nonce": "bm9uY2U=", "tee-pubkey": map[string]any{"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "x", "y": "y"}, "additional-evidence": ""},
				"init_data_claims":    nil,
			},
			Extensions: map[string]any{"ear.trustee.identifiers": map[string]any{"validated": map[string]any{"container_images": []any{}}}},
		},
		"gpu0": {Status: "warning", TrustVector: map[string]int{"hardware": 32}, PolicyID: "default_gpu"},
	}}
}

func configured(t *testing.T, cfg Config) *Issuer {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	i := New()
	if err := i.Configure(ctx, raw); err != nil {
		t.Fatalf("Configure(%s): %v", raw, err)
	}
	return i
}

func readKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	k, err := loadSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeChain writes a two-certificate PEM chain (leaf over key, then its CA)
// and returns the path and the certificates.
func writeChain(t *testing.T, key *ecdsa.PrivateKey, rootFirst bool) (string, []*x509.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test token CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "token signer"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	certs := []*x509.Certificate{leaf, ca}
	if rootFirst {
		certs = []*x509.Certificate{ca, leaf}
	}
	var buf bytes.Buffer
	for _, c := range certs {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	path := filepath.Join(t.TempDir(), "chain.pem")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, certs
}

type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
	JWK struct {
		Kty string   `json:"kty"`
		Crv string   `json:"crv"`
		X   string   `json:"x"`
		Y   string   `json:"y"`
		Alg string   `json:"alg"`
		X5c []string `json:"x5c"`
		D   string   `json:"d"`
	} `json:"jwk"`
}

// splitToken decodes a compact JWS without trusting it.
func splitToken(t *testing.T, tok string) (header, []byte, []byte, string) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	dec := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("segment is not unpadded base64url: %v", err)
		}
		return b
	}
	rawHeader := dec(parts[0])
	var h header
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		t.Fatalf("header %s: %v", rawHeader, err)
	}
	return h, rawHeader, dec(parts[1]), parts[0] + "." + parts[1]
}

// verifyWithHeaderJWK checks the signature the way a relying party that
// trusts the header jwk does, with the standard library only.
func verifyWithHeaderJWK(t *testing.T, h header, signingInput string, tok string) {
	t.Helper()
	if h.JWK.Kty != "EC" || h.JWK.Crv != "P-256" || h.JWK.Alg != "ES256" || h.JWK.D != "" {
		t.Fatalf("header jwk = %+v, want a public EC P-256 key with alg ES256", h.JWK)
	}
	x, errX := base64.RawURLEncoding.DecodeString(h.JWK.X)
	y, errY := base64.RawURLEncoding.DecodeString(h.JWK.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		t.Fatalf("jwk x/y must be 32-byte base64url: %d, %d bytes (%v, %v)", len(x), len(y), errX, errY)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(tok[strings.LastIndex(tok, ".")+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("ES256 signature must be 64 bytes r||s: %d bytes, %v", len(sig), err)
	}
	digest := sha256.Sum256([]byte(signingInput))
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatal("signature does not verify with the header jwk")
	}
	// RFC 7638: the kid is the SHA-256 of the required members in order.
	tp := sha256.Sum256(fmt.Appendf(nil, `{"crv":"P-256","kty":"EC","x":%q,"y":%q}`, h.JWK.X, h.JWK.Y))
	if want := base64.RawURLEncoding.EncodeToString(tp[:]); h.Kid != want {
		t.Errorf("kid = %q, want the RFC 7638 thumbprint %q", h.Kid, want)
	}
}

// verifyWithJWKS checks the signature with go-jose and the published JWKS,
// looking the key up by the header kid.
func verifyWithJWKS(t *testing.T, i *Issuer, tok, kid string) []byte {
	t.Helper()
	raw, err := i.JWKS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatalf("JWKS %s: %v", raw, err)
	}
	var plain struct {
		Keys []map[string]any `json:"keys"`
	}
	json.Unmarshal(raw, &plain)
	if len(plain.Keys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1", len(plain.Keys))
	}
	for _, member := range []string{"kty", "crv", "x", "y", "alg", "use", "kid"} {
		if _, ok := plain.Keys[0][member]; !ok {
			t.Errorf("JWKS key lacks %q: %s", member, raw)
		}
	}
	if _, ok := plain.Keys[0]["d"]; ok {
		t.Fatal("JWKS publishes the private key")
	}
	keys := set.Key(kid)
	if len(keys) != 1 || keys[0].Algorithm != "ES256" || keys[0].Use != "sig" {
		t.Fatalf("JWKS has no ES256 signing key with kid %q: %s", kid, raw)
	}
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("token does not verify with the JWKS: %v", err)
	}
	return payload
}

func TestIssueAndVerify(t *testing.T) {
	key := readKey(t, "testdata/signing-key.pem")
	chainPath, chain := writeChain(t, key, false)
	tests := map[string]struct {
		cfg      Config
		duration time.Duration
		chain    []*x509.Certificate
	}{
		"ephemeral key":             {cfg: Config{}, duration: 5 * time.Minute},
		"PKCS#8 key":                {cfg: Config{SigningKeyPath: "testdata/signing-key.pem", Duration: "90s"}, duration: 90 * time.Second},
		"SEC 1 key":                 {cfg: Config{SigningKeyPath: "testdata/signing-key-sec1.pem", Duration: "1h"}, duration: time.Hour},
		"SEC 1 after EC PARAMETERS": {cfg: Config{SigningKeyPath: "testdata/signing-key-ecparams.pem"}, duration: 5 * time.Minute},
		"certificate chain":         {cfg: Config{SigningKeyPath: "testdata/signing-key.pem", CertChainPath: chainPath}, duration: 5 * time.Minute, chain: chain},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			i := configured(t, tc.cfg)
			before := time.Now().Unix()
			issued, err := i.Issue(ctx, request())
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			h, _, payload, signingInput := splitToken(t, issued.Token)
			if h.Alg != "ES256" || h.Typ != "JWT" || h.Kid == "" {
				t.Errorf("header alg/typ/kid = %q/%q/%q, want ES256/JWT/<thumbprint>", h.Alg, h.Typ, h.Kid)
			}
			verifyWithHeaderJWK(t, h, signingInput, issued.Token)
			if got := verifyWithJWKS(t, i, issued.Token, h.Kid); !bytes.Equal(got, payload) {
				t.Error("the verified payload differs from the token's")
			}

			var c struct {
				Iat, Exp int64
				Iss      string
				Submods  map[string]token.Appraisal
			}
			if err := json.Unmarshal(payload, &c); err != nil {
				t.Fatal(err)
			}
			if c.Iat < before || c.Iat > time.Now().Unix() {
				t.Errorf("iat = %d, want now", c.Iat)
			}
			if got := time.Duration(c.Exp-c.Iat) * time.Second; got != tc.duration {
				t.Errorf("exp - iat = %v, want %v", got, tc.duration)
			}
			if !issued.ExpiresAt.Equal(time.Unix(c.Exp, 0)) {
				t.Errorf("ExpiresAt = %v, want exp %d", issued.ExpiresAt, c.Exp)
			}
			if c.Iss != DefaultIssuer || c.Submods["cpu0"].Status != "affirming" || c.Submods["gpu0"].Status != "warning" {
				t.Errorf("claims = %s", payload)
			}

			if len(h.JWK.X5c) != len(tc.chain) {
				t.Fatalf("x5c has %d certificates, want %d", len(h.JWK.X5c), len(tc.chain))
			}
			for n, c := range tc.chain {
				der, err := base64.StdEncoding.DecodeString(h.JWK.X5c[n])
				if err != nil || !bytes.Equal(der, c.Raw) {
					t.Errorf("x5c[%d] is not the std-base64 DER of certificate %d (%v)", n, n, err)
				}
			}
		})
	}
}

// TestGolden pins the token's header and claims with a fixed key and clock.
func TestGolden(t *testing.T) {
	i := configured(t, Config{SigningKeyPath: "testdata/signing-key.pem"})
	i.now = func() time.Time { return time.Unix(1760426134, 0) }
	issued, err := i.Issue(ctx, request())
	if err != nil {
		t.Fatal(err)
	}
	_, rawHeader, payload, _ := splitToken(t, issued.Token)
	jwks, _ := i.JWKS(ctx)
	for name, got := range map[string][]byte{"header": rawHeader, "claims": payload, "jwks": jwks} {
		plugintest.GoldenJSON(t, filepath.Join("testdata", name+".golden.json"), json.RawMessage(got), *update)
	}
}

func TestSettings(t *testing.T) {
	i := configured(t, Config{Duration: "10m", Issuer: "https://kbs.example", Profile: "tag:example,2026:p", Developer: "dev", Build: "b 1"})
	i.now = func() time.Time { return time.Unix(1000, 0) }
	issued, err := i.Issue(ctx, request())
	if err != nil {
		t.Fatal(err)
	}
	_, _, payload, _ := splitToken(t, issued.Token)
	var c map[string]any
	json.Unmarshal(payload, &c)
	want := map[string]any{
		"iss": "https://kbs.example", "eat_profile": "tag:example,2026:p", "iat": float64(1000), "exp": float64(1600),
		"ear.verifier-id": map[string]any{"developer": "dev", "build": "b 1"},
	}
	for k, v := range want {
		if fmt.Sprint(c[k]) != fmt.Sprint(v) {
			t.Errorf("claim %s = %v, want %v", k, c[k], v)
		}
	}
}

func TestConfigureErrors(t *testing.T) {
	key := readKey(t, "testdata/signing-key.pem")
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherChain, _ := writeChain(t, other, false)
	rootFirst, _ := writeChain(t, key, true)
	_, chainA := writeChain(t, key, false)
	_, chainB := writeChain(t, key, false)
	foreignCA := filepath.Join(t.TempDir(), "foreign-ca.pem")
	os.WriteFile(foreignCA, append(
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chainA[0].Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chainB[1].Raw})...), 0o600)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgybB4LNHH\n-----END PRIVATE KEY-----\n"), 0o600)
	certAsKey := filepath.Join(t.TempDir(), "cert.pem")
	os.WriteFile(certAsKey, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600)

	tests := map[string]struct {
		cfg  string
		want string
	}{
		"RSA PKCS#8 key":          {cfg: `{"signing_key_path":"testdata/rsa-key.pem"}`, want: "RSA"},
		"RSA PKCS#1 key":          {cfg: `{"signing_key_path":"testdata/rsa-key-pkcs1.pem"}`, want: "RSA"},
		"P-384 key":               {cfg: `{"signing_key_path":"testdata/p384-key.pem"}`, want: "P-384"},
		"Ed25519 key":             {cfg: `{"signing_key_path":"testdata/ed25519-key.pem"}`, want: "Ed25519"},
		"encrypted key":           {cfg: `{"signing_key_path":"testdata/encrypted-key.pem"}`, want: "encrypted"},
		"corrupt key":             {cfg: fmt.Sprintf(`{"signing_key_path":%q}`, garbage), want: "parsing"},
		"certificate as key":      {cfg: fmt.Sprintf(`{"signing_key_path":%q}`, certAsKey), want: "CERTIFICATE"},
		"missing key file":        {cfg: `{"signing_key_path":"testdata/absent.pem"}`, want: "no such file"},
		"chain of another key":    {cfg: fmt.Sprintf(`{"signing_key_path":"testdata/signing-key.pem","cert_chain_path":%q}`, otherChain), want: "does not certify the signing key"},
		"chain root first":        {cfg: fmt.Sprintf(`{"signing_key_path":"testdata/signing-key.pem","cert_chain_path":%q}`, rootFirst), want: "does not certify"},
		"chain with a foreign CA": {cfg: fmt.Sprintf(`{"signing_key_path":"testdata/signing-key.pem","cert_chain_path":%q}`, foreignCA), want: "is not signed by certificate 1"},
		"chain without certs":     {cfg: `{"signing_key_path":"testdata/signing-key.pem","cert_chain_path":"testdata/signing-key.pem"}`, want: "no PEM certificate"},
		"chain with ephemeral":    {cfg: fmt.Sprintf(`{"cert_chain_path":%q}`, otherChain), want: "needs signing_key_path"},
		"bad duration":            {cfg: `{"duration":"5 minutes"}`, want: "duration"},
		"duration in minutes":     {cfg: `{"duration":5}`, want: "duration"},
		"duration too short":      {cfg: `{"duration":"10ms"}`, want: "shorter than a second"},
		"negative duration":       {cfg: `{"duration":"-5m"}`, want: "shorter"},
		"unknown key":             {cfg: `{"duration_min":5}`, want: "duration_min"},
		"trustee-style key path":  {cfg: `{"signer":{"key_path":"x"}}`, want: "signer"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := New().Configure(ctx, []byte(tc.cfg))
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("Configure(%s) = %v (class %q), want invalid_argument", tc.cfg, err, sdk.ClassOf(err))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			// No error quotes key material.
			if strings.Contains(err.Error(), "MII") || strings.Contains(err.Error(), "-----BEGIN") {
				t.Errorf("error quotes the file: %q", err)
			}
		})
	}
}

func TestIssueErrors(t *testing.T) {
	i := New()
	tests := map[string]*token.IssueRequest{
		"nil request":    nil,
		"no submodules":  {},
		"empty name":     {Submods: map[string]token.Appraisal{"": {Status: "affirming"}}},
		"unknown status": {Submods: map[string]token.Appraisal{"cpu0": {Status: "trusted"}}},
		"empty status":   {Submods: map[string]token.Appraisal{"cpu0": {}}},
	}
	for name, req := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := i.Issue(ctx, req); !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("Issue = %v, want invalid_argument", err)
			}
		})
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := i.Issue(cctx, request()); !errors.Is(err, context.Canceled) {
		t.Errorf("Issue(cancelled) = %v, want context.Canceled", err)
	}
}

// TestEphemeralKeyWithoutConfigure: an issuer nobody configured still signs,
// with one key across calls and goroutines.
func TestEphemeralKeyWithoutConfigure(t *testing.T) {
	i := New()
	var wg sync.WaitGroup
	kids := make(chan string, 16)
	for range 16 {
		wg.Go(func() {
			issued, err := i.Issue(ctx, request())
			if err != nil {
				t.Error(err)
				return
			}
			h, _, _, _ := splitToken(t, issued.Token)
			kids <- h.Kid
		})
	}
	wg.Wait()
	close(kids)
	seen := map[string]bool{}
	for k := range kids {
		seen[k] = true
	}
	if len(seen) != 1 {
		t.Errorf("tokens signed with %d keys, want 1", len(seen))
	}
	if other := New(); true {
		issued, _ := other.Issue(ctx, request())
		h, _, _, _ := splitToken(t, issued.Token)
		if seen[h.Kid] {
			t.Error("two issuers share an ephemeral key")
		}
	}
}
