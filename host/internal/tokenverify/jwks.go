package tokenverify

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// trustedKey is a public signing key from a trusted set.
type trustedKey struct {
	kid   string
	alg   string // empty: any algorithm the key type supports
	thumb string // RFC 7638 SHA-256 thumbprint
	jwk   jose.JSONWebKey
}

type keySet []trustedKey

// query selects keys by kid or, for a token that carries its key in the
// header, by that key's thumbprint.
type query struct {
	kid, thumb, alg string
}

func (s keySet) find(q query) []crypto.PublicKey {
	var out []crypto.PublicKey
	for i := range s {
		k := &s[i]
		if (q.kid == "" || k.kid != q.kid) && (q.thumb == "" || k.thumb != q.thumb) {
			continue
		}
		if k.alg != "" && k.alg != q.alg {
			continue
		}
		if !usable(&k.jwk, q.alg) {
			continue
		}
		out = append(out, k.jwk.Key)
	}
	return out
}

// parseJWKS keeps the public signature keys of a JWK set. Keys of a type
// go-jose cannot read, encryption keys and symmetric keys are skipped, so
// that one exotic entry does not void a provider's whole set.
func parseJWKS(raw []byte) (keySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("not a JWK set: %w", err)
	}
	var out keySet
	for _, r := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			continue
		}
		if k.Use == "enc" {
			continue
		}
		if !k.IsPublic() {
			if _, secret := k.Key.([]byte); secret {
				continue
			}
			k = k.Public()
			if !k.Valid() {
				continue
			}
		}
		out = append(out, trustedKey{kid: k.KeyID, alg: k.Algorithm, thumb: thumbprint(&k), jwk: k})
	}
	if len(out) == 0 {
		return nil, errors.New("no usable public signature key")
	}
	return out, nil
}

func thumbprint(k *jose.JSONWebKey) string {
	t, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(t)
}

// remoteSet is an https JWK set, fetched lazily and cached.
type remoteSet struct {
	url string

	mu        sync.RWMutex
	keys      keySet
	fetched   time.Time // last successful fetch
	attempted time.Time // last fetch, successful or not
	err       error     // error of the last fetch
}

// find returns the keys matching q, fetching the set when it was never
// fetched, is older than MaxAge, or lacks the key - at most once per
// MinRefresh. The error is set when no key matched and the set could not
// be fetched.
func (r *remoteSet) find(ctx context.Context, v *Verifier, q query) ([]crypto.PublicKey, error) {
	now := v.now()
	r.mu.RLock()
	found := r.keys.find(q)
	fresh := !r.fetched.IsZero() && now.Sub(r.fetched) < v.maxAge
	r.mu.RUnlock()
	if len(found) > 0 && fresh {
		return found, nil
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	// Another caller may have fetched while this one waited for the lock.
	found = r.keys.find(q)
	fresh = !r.fetched.IsZero() && now.Sub(r.fetched) < v.maxAge
	if len(found) > 0 && fresh {
		return found, nil
	}
	if r.attempted.IsZero() || now.Sub(r.attempted) >= v.minRefresh {
		r.attempted = now
		// One caller's cancellation must not poison the cache for others;
		// the client's timeout bounds the fetch.
		keys, err := v.fetchJWKS(context.WithoutCancel(ctx), r.url)
		r.err = err
		if err == nil {
			r.keys, r.fetched = keys, now
		}
		found = r.keys.find(q)
	}
	if len(found) == 0 && r.err != nil {
		return nil, r.err
	}
	return found, nil
}

// fetchJWKS reads the set at uri, falling back to OpenID discovery.
func (v *Verifier) fetchJWKS(ctx context.Context, uri string) (keySet, error) {
	keys, direct := v.getJWKS(ctx, uri)
	if direct == nil {
		return keys, nil
	}
	var disc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	cfgURL := strings.TrimSuffix(uri, "/") + "/.well-known/openid-configuration"
	body, err := v.get(ctx, cfgURL)
	if err == nil {
		err = json.Unmarshal(body, &disc)
	}
	if err == nil && !strings.HasPrefix(disc.JWKSURI, "https://") {
		err = fmt.Errorf("jwks_uri %q is not https", disc.JWKSURI)
	}
	if err != nil {
		return nil, fmt.Errorf("jwk set %s: %v; openid discovery: %v", uri, direct, err)
	}
	keys, err = v.getJWKS(ctx, disc.JWKSURI)
	if err != nil {
		return nil, fmt.Errorf("jwk set %s (from %s): %w", disc.JWKSURI, cfgURL, err)
	}
	return keys, nil
}

func (v *Verifier) getJWKS(ctx context.Context, uri string) (keySet, error) {
	body, err := v.get(ctx, uri)
	if err != nil {
		return nil, err
	}
	return parseJWKS(body)
}

func (v *Verifier) get(ctx context.Context, uri string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", uri, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", uri, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("GET %s: response larger than %d bytes", uri, maxJWKSBytes)
	}
	return body, nil
}
