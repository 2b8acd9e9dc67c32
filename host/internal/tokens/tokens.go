// Package tokens decides which attestation tokens the broker accepts: those
// of its own token-issuer plugin, always, and those of the issuers that the
// [attestation_token] configuration trusts.
package tokens

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gokbs/kbs/host/internal/tokenverify"
	"github.com/gokbs/kbs/sdk/token"
)

// IssuerSource gives the broker's own token issuer, if it has one.
type IssuerSource func() (token.Issuer, error)

// Verifier accepts a token when the own issuer's keys or the configured
// trust verify it.
type Verifier struct {
	external   *tokenverify.Verifier // nil when only the own issuer is trusted
	issuer     IssuerSource
	extraPaths []string
	leeway     time.Duration

	own        atomic.Pointer[ownKeys]
	refreshMu  sync.Mutex
	minRefresh time.Duration

	verified verified
	now      func() time.Time
}

type ownKeys struct {
	jwks    []byte
	v       *tokenverify.Verifier
	fetched time.Time
}

// New builds the verifier. external may be nil; issuer may be nil (a
// passport-mode broker without a token issuer). With neither, the broker
// would accept no token, which is refused.
func New(ctx context.Context, external *tokenverify.Verifier, issuer IssuerSource, extraPaths []string, leeway time.Duration) (*Verifier, error) {
	if external == nil && issuer == nil {
		return nil, errors.New("the broker would trust no attestation token: configure a token issuer ([plugins.token]), " +
			"or, for a passport-mode broker, the issuers it trusts ([attestation_token] trusted_certs_paths or trusted_jwk_sets)")
	}
	v := &Verifier{external: external, issuer: issuer, extraPaths: extraPaths, leeway: leeway, minRefresh: time.Second, now: time.Now}
	if issuer != nil {
		if err := v.refreshOwn(ctx, true); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// refreshOwn re-reads the own issuer's JWKS: at start, and when a token
// fails to verify (the issuer may have restarted with a new key). At most
// once per minRefresh unless forced.
func (v *Verifier) refreshOwn(ctx context.Context, force bool) error {
	v.refreshMu.Lock()
	defer v.refreshMu.Unlock()
	cur := v.own.Load()
	if !force && cur != nil && time.Since(cur.fetched) < v.minRefresh {
		return nil
	}
	iss, err := v.issuer()
	if err != nil {
		return fmt.Errorf("own token issuer: %w", err)
	}
	jwks, err := iss.JWKS(ctx)
	if err != nil {
		return fmt.Errorf("own token issuer's keys: %w", err)
	}
	if cur != nil && bytes.Equal(cur.jwks, jwks) {
		v.own.Store(&ownKeys{jwks: cur.jwks, v: cur.v, fetched: time.Now()})
		return nil
	}
	tv, err := tokenverify.New(tokenverify.Config{JWKSJSON: [][]byte{jwks}, Leeway: v.leeway})
	if err != nil {
		return fmt.Errorf("own token issuer's keys: %w", err)
	}
	v.own.Store(&ownKeys{jwks: jwks, v: tv, fetched: time.Now()})
	return nil
}

// Verify returns the claims of a trusted, unexpired token. Errors wrap
// tokenverify.ErrInvalidToken or tokenverify.ErrUnavailable. The claims
// of the own issuer's tokens are remembered and shared between requests:
// callers must not modify them.
func (v *Verifier) Verify(ctx context.Context, tok string) (map[string]any, error) {
	var errs []error
	if own := v.own.Load(); own != nil {
		if claims, ok := v.verified.get(tok, own.v, v.now()); ok {
			return claims, nil
		}
		claims, err := own.v.Verify(ctx, tok)
		if err == nil {
			v.verified.put(tok, claims, own.v)
			return claims, nil
		}
		// A key we have not seen may be the issuer's new one.
		if rerr := v.refreshOwn(ctx, false); rerr == nil {
			if now := v.own.Load(); now != own {
				if claims, err = now.v.Verify(ctx, tok); err == nil {
					v.verified.put(tok, claims, now.v)
					return claims, nil
				}
			}
		}
		errs = append(errs, err)
	}
	if v.external != nil {
		claims, err := v.external.Verify(ctx, tok)
		if err == nil {
			return claims, nil
		}
		errs = append(errs, err)
	}
	for _, err := range errs {
		if errors.Is(err, tokenverify.ErrUnavailable) {
			return nil, err
		}
	}
	return nil, errs[len(errs)-1]
}

// Issued remembers a token that the own issuer has just issued, so that the
// resource requests of the session that holds it do not verify it again:
// the broker got it from its own issuer over the plugin connection, and
// verifying our own fresh signature proves nothing new. The claims are
// read as Verify would return them; a token that cannot be read is simply
// not remembered (Verify will judge it).
func (v *Verifier) Issued(tok string) {
	own := v.own.Load()
	if own == nil {
		return
	}
	claims, err := tokenverify.UnverifiedClaims(tok)
	if err != nil {
		return
	}
	v.verified.put(tok, claims, own.v)
}

// TEEPubKey finds the guest's TEE key in verified claims.
func (v *Verifier) TEEPubKey(claims map[string]any) (json.RawMessage, error) {
	return tokenverify.TEEPubKey(claims, v.extraPaths)
}
