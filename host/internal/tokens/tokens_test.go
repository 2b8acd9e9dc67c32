package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gokbs/kbs/host/internal/tokenverify"
	"github.com/gokbs/kbs/sdk/token"
)

// issuer signs ES256 tokens with a key that a test can replace, as a
// restarted ear plugin with an ephemeral key would.
type issuer struct {
	mu   sync.Mutex
	key  *ecdsa.PrivateKey
	kid  string
	jwks []byte
	n    int
}

func newIssuer(t *testing.T) *issuer {
	i := &issuer{}
	i.rotate(t)
	return i
}

func (i *issuer) rotate(t *testing.T) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.n++
	i.key, i.kid = k, fmt.Sprintf("key-%d", i.n)
	i.jwks, _ = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: i.kid, Algorithm: "ES256", Use: "sig"}}})
}

func (i *issuer) sign(t *testing.T, exp time.Time) string {
	t.Helper()
	i.mu.Lock()
	defer i.mu.Unlock()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: i.key}, (&jose.SignerOptions{}).WithHeader("kid", i.kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"exp": exp.Unix(), "submods": map[string]any{}})
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jws.CompactSerialize()
	return tok
}

func (i *issuer) Issue(context.Context, *token.IssueRequest) (*token.Issued, error) {
	return nil, errors.New("not used")
}

func (i *issuer) JWKS(context.Context) (json.RawMessage, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.jwks, nil
}

func TestVerifiedTokensAreRemembered(t *testing.T) {
	ctx := context.Background()
	iss := newIssuer(t)
	v, err := New(ctx, nil, func() (token.Issuer, error) { return iss, nil }, nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	v.minRefresh = 0
	tok := iss.sign(t, time.Now().Add(time.Hour))
	first, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	second, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if reflect.ValueOf(first).Pointer() != reflect.ValueOf(second).Pointer() {
		t.Fatal("a token verified a moment ago was verified again")
	}

	// The issuer restarts with a new key: once the broker has learnt it
	// (the first token of the new key), the old token no longer passes,
	// remembered or not.
	iss.rotate(t)
	if _, err := v.Verify(ctx, iss.sign(t, time.Now().Add(time.Hour))); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}
	if _, err := v.Verify(ctx, tok); !errors.Is(err, tokenverify.ErrInvalidToken) {
		t.Fatalf("token of the old key after the key changed: %v, want invalid", err)
	}

	// Forged tokens are never remembered as good.
	forged := tok[:len(tok)-4] + "AAAA"
	for range 2 {
		if _, err := v.Verify(ctx, forged); !errors.Is(err, tokenverify.ErrInvalidToken) {
			t.Fatalf("forged token: %v", err)
		}
	}
}

func TestVerifiedCache(t *testing.T) {
	now := time.Unix(10_000, 0)
	keys, other := &tokenverify.Verifier{}, &tokenverify.Verifier{}
	claims := func(exp int64) map[string]any { return map[string]any{"exp": json.Number(fmt.Sprint(exp))} }
	tests := map[string]struct {
		claims map[string]any
		token  string
		keys   *tokenverify.Verifier
		at     time.Time
		want   bool
	}{
		"fresh":                 {claims: claims(10_100), keys: keys, at: now, want: true},
		"at exp":                {claims: claims(10_100), keys: keys, at: time.Unix(10_100, 0)},
		"expired":               {claims: claims(10_100), keys: keys, at: time.Unix(10_200, 0)},
		"other keys":            {claims: claims(10_100), keys: other, at: now},
		"no exp":                {claims: map[string]any{}, keys: keys, at: now},
		"exp not an integer":    {claims: map[string]any{"exp": json.Number("1e99")}, keys: keys, at: now},
		"exp of the wrong type": {claims: map[string]any{"exp": 10_100.0}, keys: keys, at: now},
		"huge token":            {claims: claims(10_100), token: string(make([]byte, verifiedMaxToken+1)), keys: keys, at: now},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var c verified
			tok := tc.token
			if tok == "" {
				tok = "a.b.c"
			}
			c.put(tok, tc.claims, keys)
			if _, ok := c.get(tok, tc.keys, tc.at); ok != tc.want {
				t.Fatalf("remembered = %v, want %v", ok, tc.want)
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		var c verified
		for i := range 3 * verifiedMax {
			c.put(fmt.Sprint(i), claims(10_100), keys)
		}
		if len(c.m) != verifiedMax {
			t.Fatalf("%d entries, want %d", len(c.m), verifiedMax)
		}
	})
}

func TestIssuedTokensAreNotVerifiedAgain(t *testing.T) {
	ctx := context.Background()
	iss := newIssuer(t)
	v, err := New(ctx, nil, func() (token.Issuer, error) { return iss, nil }, nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tok := iss.sign(t, time.Now().Add(time.Hour))
	v.Issued(tok)
	c1, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := v.Verify(ctx, tok)
	if reflect.ValueOf(c1).Pointer() != reflect.ValueOf(c2).Pointer() {
		t.Fatal("an issued token was verified again")
	}
	if _, ok := c1["exp"].(json.Number); !ok {
		t.Fatalf("claims of an issued token differ from verified ones: exp is %T", c1["exp"])
	}
	// What cannot be read is left to Verify, which refuses it.
	for _, bad := range []string{"garbage", "a.b!.c", "a." + "bm90IGpzb24" + ".c"} {
		v.Issued(bad)
		if _, err := v.Verify(ctx, bad); !errors.Is(err, tokenverify.ErrInvalidToken) {
			t.Fatalf("%q after Issued: %v, want invalid", bad, err)
		}
	}
	// An expired issued token is not taken.
	old := iss.sign(t, time.Now().Add(-time.Hour))
	v.Issued(old)
	if _, err := v.Verify(ctx, old); !errors.Is(err, tokenverify.ErrInvalidToken) {
		t.Fatalf("expired issued token: %v, want invalid", err)
	}
}
