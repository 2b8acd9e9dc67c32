package tokenverify

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// fuzzKey signs the fuzz seeds; fixed, so that every fuzzing process
// trusts what the seeds were signed with. A test key only.
const fuzzKey = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgaezpm6RXYVuH6Vul
7aujkdFdgRVPo8OqEISkPQhe9W6hRANCAAQGDzhMx/3zPSg+TWvDnJCtWzjAwMsh
YkE7VafHpyOrS3iIWngUdJHPq2K60wRROppGjfeSMp45SZf0wql/PTD6
-----END PRIVATE KEY-----`

// FuzzVerify: no token, however malformed, panics the verifier or passes
// without a valid signature, an exp and the trusted key; every refusal
// wraps ErrInvalidToken (nothing here fetches keys, so never
// ErrUnavailable).
//
//	go test -run=^$ -fuzz=FuzzVerify -fuzztime=10s ./internal/tokenverify
func FuzzVerify(f *testing.F) {
	block, _ := pem.Decode([]byte(fuzzKey))
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		f.Fatal(err)
	}
	key := parsed.(*ecdsa.PrivateKey)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	trusted := must(New(Config{JWKSJSON: [][]byte{jwks}, Now: fixedNow}))
	headerJWK := must(New(Config{InsecureHeaderJWK: true, Now: fixedNow}))

	pubJWK := map[string]any{"kty": "EC", "crv": "P-256", "alg": "ES256",
		"x": b64.EncodeToString(key.X.FillBytes(make([]byte, 32))), "y": b64.EncodeToString(key.Y.FillBytes(make([]byte, 32)))}
	for _, seed := range []string{
		sign("ES256", key, kid("k1"), claimsAt(t0.Add(time.Hour), nil)),
		sign("ES256", key, kid("k1"), claimsAt(t0.Add(-time.Hour), nil)),
		sign("ES256", key, map[string]any{"jwk": pubJWK}, claimsAt(t0.Add(time.Hour), nil)),
		sign("ES256", key, kid("k1"), `{"exp":1e400}`),
		sign("ES256", key, kid("k1"), `{"exp":17604261340,"exp":1}`),
		sign("ES256", key, kid("k1"), `{"exp":1760429734}trailing`),
		sign("none", nil, kid("k1"), claimsAt(t0.Add(time.Hour), nil)),
		sign("HS256", []byte("k1"), kid("k1"), claimsAt(t0.Add(time.Hour), nil)),
		"e30.e30.", "a.b.c", "...", "", `{"payload":"e30","signatures":[]}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		for name, v := range map[string]*Verifier{"trusted key set": trusted, "header jwk": headerJWK} {
			claims, err := v.Verify(context.Background(), tok)
			if err != nil {
				if !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("%s: error %v does not wrap ErrInvalidToken", name, err)
				}
				continue
			}
			if _, ok := claims["exp"]; !ok {
				t.Fatalf("%s: a token without exp passed: %q", name, tok)
			}
			if name == "trusted key set" {
				// Only our key signs what the trusted verifier accepts.
				jws, err := jose.ParseSignedCompact(tok, Algorithms)
				if err != nil {
					t.Fatalf("accepted a token go-jose cannot parse: %v", err)
				}
				if _, err := jws.Verify(&key.PublicKey); err != nil {
					t.Fatalf("accepted a token our key did not sign: %q", tok)
				}
			}
		}
		// Reading claims unverified never panics either.
		if claims, err := UnverifiedClaims(tok); err == nil && claims == nil {
			t.Fatal("UnverifiedClaims returned no claims and no error")
		}
	})
}
