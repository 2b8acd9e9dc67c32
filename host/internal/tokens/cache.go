package tokens

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/gokbs/kbs/host/internal/tokenverify"
)

// The broker verifies the token of every resource request, and most of
// them are its own tokens seen a moment before: the one an attested
// session holds (issued by this broker a few milliseconds earlier) or the
// one a guest presents as Bearer for each of its resources. Verifying the
// ES256 signature again was the largest single cost of a resource fetch.
// verified remembers the claims of the own issuer's tokens that verified,
// for as long as the token is unexpired and the issuer's keys are the ones
// that verified it. Tokens of other issuers are always verified in full:
// their key sets can change behind the broker's back.

const (
	// verifiedMax bounds the entries; beyond it an arbitrary one goes.
	verifiedMax = 512
	// verifiedMaxToken bounds the tokens remembered (keys are kept).
	verifiedMaxToken = 16 << 10
)

type verified struct {
	mu sync.Mutex
	m  map[string]verifiedToken
}

type verifiedToken struct {
	claims map[string]any
	exp    time.Time
	keys   *tokenverify.Verifier // the own keys that verified it
}

// get returns the claims of tok if keys verified it and it has not expired
// at now. The leeway that verification allows is not given here: a token
// past its exp is verified again, in full.
func (c *verified) get(tok string, keys *tokenverify.Verifier, now time.Time) (map[string]any, bool) {
	c.mu.Lock()
	e, ok := c.m[tok]
	if ok && (e.keys != keys || !now.Before(e.exp)) {
		delete(c.m, tok)
		ok = false
	}
	c.mu.Unlock()
	return e.claims, ok
}

// put remembers verified claims. A token without a usable exp is not kept.
func (c *verified) put(tok string, claims map[string]any, keys *tokenverify.Verifier) {
	if len(tok) > verifiedMaxToken {
		return
	}
	n, ok := claims["exp"].(json.Number)
	if !ok {
		return
	}
	exp, err := n.Int64()
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]verifiedToken, verifiedMax)
	}
	if len(c.m) >= verifiedMax {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[tok] = verifiedToken{claims: claims, exp: time.Unix(exp, 0), keys: keys}
}
