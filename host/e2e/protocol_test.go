package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	jwxjwe "github.com/lestrrat-go/jwx/v3/jwe"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbsclient"
)

// handshake attests as a sample guest with key k and returns the client
// (holding the session cookie) and the token.
func handshake(t *testing.T, url string, k *guest.Key) (*kbsclient.Client, string) {
	t.Helper()
	ctx := context.Background()
	c := kbsclient.New(url)
	ch, err := c.Auth(ctx, "sample")
	if err != nil {
		t.Fatal(err)
	}
	jwkJSON, err := k.PublicJWKJSON()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Attest(ctx, ch, jwkJSON, func(d []byte) (json.RawMessage, error) {
		return guest.NewSampleEvidence(d).JSON(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, tok
}

// decryptWithJWX opens the broker's JWE with a second JOSE implementation.
func decryptWithJWX(t *testing.T, k *guest.Key, body []byte) []byte {
	t.Helper()
	pemBytes, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.ParseKey(pemBytes, jwk.WithPEM(true))
	if err != nil {
		t.Fatal(err)
	}
	alg := map[string]jwa.KeyEncryptionAlgorithm{
		guest.KindECP256:  jwa.ECDH_ES_A256KW(),
		guest.KindECP521:  jwa.ECDH_ES_A256KW(),
		guest.KindRSAOAEP: jwa.RSA_OAEP_256(),
		guest.KindRSA15:   jwa.RSA1_5(),
	}[k.Kind()]
	plain, err := jwxjwe.Decrypt(body, jwxjwe.WithKey(alg, priv))
	if err != nil {
		t.Fatalf("jwx cannot decrypt the broker's JWE: %v\n%s", err, body)
	}
	return plain
}

func TestHandshakeEveryKeyKind(t *testing.T) {
	br := startDev(t, "")
	secret := []byte("a secret\x00with binary\xff bytes")
	writeResource(t, br.DevDir, "default/key/one", secret)
	for _, kind := range []string{guest.KindECP256, guest.KindECP521, guest.KindRSAOAEP, guest.KindRSA15} {
		t.Run(kind, func(t *testing.T) {
			k, err := guest.NewKey(kind)
			if err != nil {
				t.Fatal(err)
			}
			c, tok := handshake(t, br.URL, k)
			for _, via := range []struct{ name, bearer string }{{"cookie", ""}, {"bearer", tok}} {
				t.Run(via.name, func(t *testing.T) {
					body, err := c.GetResource(context.Background(), "default/key/one", via.bearer)
					if err != nil {
						t.Fatal(err)
					}
					// The guest's own way: rebuild the header for the AAD.
					plain, err := k.DecryptJSON(body)
					if err != nil {
						t.Fatalf("guest-style decryption: %v", err)
					}
					if !bytes.Equal(plain, secret) {
						t.Fatalf("secret = %q, want %q", plain, secret)
					}
					if got := decryptWithJWX(t, k, body); !bytes.Equal(got, secret) {
						t.Fatalf("jwx secret = %q, want %q", got, secret)
					}
				})
			}
		})
	}
}

func TestBearerWithoutCookie(t *testing.T) {
	br := startDev(t, "")
	writeResource(t, br.DevDir, "default/key/two", []byte("two"))
	k, _ := guest.NewKey(guest.KindECP256)
	_, tok := handshake(t, br.URL, k)
	// A fresh client: no cookie jar content, only the token, as CDH does.
	body, err := kbsclient.New(br.URL).GetResource(context.Background(), "default/key/two", tok)
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := k.DecryptJSON(body); err != nil || string(plain) != "two" {
		t.Fatalf("got %q, %v", plain, err)
	}
}

func TestHealthEndpoints(t *testing.T) {
	br := startDev(t, "")
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(br.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s = %d", p, resp.StatusCode)
		}
	}
}
