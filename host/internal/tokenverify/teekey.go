package tokenverify

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNoTEEKey: the claims hold no usable tee-pubkey.
var ErrNoTEEKey = errors.New("no tee-pubkey in token claims")

// TEEKeyPaths are the JSON pointers searched for the guest's TEE key, after
// any configured extra paths (ITA, ITA vTPM, legacy Simple token, EAR,
// top level).
var TEEKeyPaths = []string{
	"/tdx/attester_runtime_data/tee-pubkey",
	"/tdx/attester_user_data/tee-pubkey",
	"/customized_claims/runtime_data/tee-pubkey",
	"/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey",
	"/tee-pubkey",
}

// TEEPubKey returns the JSON of the first value found at extraPaths, then
// TEEKeyPaths. The first hit must be a JSON object; it is not searched past.
func TEEPubKey(claims map[string]any, extraPaths []string) (json.RawMessage, error) {
	for _, paths := range [][]string{extraPaths, TEEKeyPaths} {
		for _, p := range paths {
			v, ok := pointer(claims, p)
			if !ok {
				continue
			}
			if _, isObj := v.(map[string]any); !isObj {
				return nil, fmt.Errorf("%w: value at %s is not a JSON object", ErrNoTEEKey, p)
			}
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrNoTEEKey, err)
			}
			return b, nil
		}
	}
	return nil, ErrNoTEEKey
}

// pointer resolves an RFC 6901 JSON pointer over decoded JSON. A pointer
// that is neither empty nor starts with "/" matches nothing.
func pointer(doc any, p string) (any, bool) {
	if p == "" {
		return doc, true
	}
	if !strings.HasPrefix(p, "/") {
		return nil, false
	}
	cur := doc
	for _, tok := range strings.Split(p[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			// RFC 6901: decimal index without leading zeros.
			if tok == "" || (len(tok) > 1 && tok[0] == '0') || strings.Trim(tok, "0123456789") != "" {
				return nil, false
			}
			i, err := strconv.Atoi(tok)
			if err != nil || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}
