package ita

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gokbs/kbs/sdk"
)

const (
	// jwksMaxAge makes keys be fetched again now and then, so that a
	// withdrawn key stops being trusted.
	jwksMaxAge = time.Hour
	// jwksMinInterval limits refetches caused by tokens with unknown
	// key IDs.
	jwksMinInterval = 30 * time.Second
	maxJWKS         = 1 << 20
)

// keySet holds the Trust Authority's token signing keys: from a file once,
// or from the JWKS URL, refreshed when they are old or a token names a key
// they lack.
type keySet struct {
	url    string // "" for a fixed set
	client *http.Client

	mu      sync.Mutex
	keys    *jose.JSONWebKeySet
	fetched time.Time
}

func parseJWKS(b []byte) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, err
	}
	for i, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() || k.KeyID == "" {
			return nil, fmt.Errorf("key %d is not a public key with a kid", i)
		}
	}
	return &set, nil
}

// key returns the public key for kid.
func (s *keySet) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.url != "" {
		stale := s.keys == nil || time.Since(s.fetched) > jwksMaxAge
		missing := s.keys != nil && len(s.keys.Key(kid)) == 0 && time.Since(s.fetched) > jwksMinInterval
		if stale || missing {
			if err := s.fetch(ctx); err != nil {
				return nil, err
			}
		}
	}
	if s.keys != nil {
		if ks := s.keys.Key(kid); len(ks) > 0 {
			return &ks[0], nil
		}
	}
	return nil, sdk.Unavailable("ita: no Trust Authority signing key with kid %q", kid)
}

// fetch is called with s.mu held: concurrent verifications wait for one
// fetch instead of each making their own.
func (s *keySet) fetch(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return sdk.Internal("ita: JWKS request: %v", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return sdk.Unavailable("ita: fetching the Trust Authority's keys: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS))
	if err != nil {
		return sdk.Unavailable("ita: fetching the Trust Authority's keys: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return sdk.Unavailable("ita: the Trust Authority's keys: %s", resp.Status)
	}
	set, err := parseJWKS(body)
	if err != nil {
		return sdk.Unavailable("ita: the Trust Authority's keys: %v", err)
	}
	s.keys, s.fetched = set, time.Now()
	return nil
}
