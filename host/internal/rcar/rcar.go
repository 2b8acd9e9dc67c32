// Package rcar computes what the guest binds into its evidence during the
// RCAR handshake: the runtime-data digest (JCS of nonce, TEE key and
// additional evidence) and the init-data digest, and exposes the init-data
// claims the attestation token carries.
package rcar

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	_ "crypto/sha256" // registers SHA-256 for crypto.Hash
	_ "crypto/sha512" // registers SHA-384 and SHA-512 for crypto.Hash

	"github.com/gowebpki/jcs"
)

// ErrUnsupportedHash is returned for a hash name the broker does not
// implement (sm3 today) or does not know.
var ErrUnsupportedHash = errors.New("unsupported hash algorithm")

// DefaultHash is what the guest uses when the challenge selects none.
const DefaultHash = "sha384"

// Hash maps a negotiated hash name to its crypto.Hash. Names are matched
// case-insensitively, as the guest parses "selected-hash-algorithm"; an
// empty name means DefaultHash.
func Hash(name string) (crypto.Hash, error) {
	switch strings.ToLower(name) {
	case "", DefaultHash:
		return crypto.SHA384, nil
	case "sha256":
		return crypto.SHA256, nil
	case "sha512":
		return crypto.SHA512, nil
	default:
		return 0, fmt.Errorf("%w: %q", ErrUnsupportedHash, name)
	}
}

// Sum hashes data with the named algorithm (see Hash).
func Sum(name string, data []byte) ([]byte, error) {
	h, err := Hash(name)
	if err != nil {
		return nil, err
	}
	hh := h.New()
	hh.Write(data)
	return hh.Sum(nil), nil
}

// Canonical returns the RFC 8785 (JCS) form of the JSON document v.
func Canonical(v json.RawMessage) ([]byte, error) {
	out, err := jcs.Transform(v)
	if err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return out, nil
}

// RuntimeData is the structure the guest hashes into its evidence. It is
// also what the token carries as runtime_data_claims.
type RuntimeData struct {
	Nonce string `json:"nonce"`
	// TEEPubKey is the JWK as the broker understood it. Trustee hashes its
	// parsed key (known members only), so pass the re-marshalled
	// jwe.TEEPubKey rather than the raw request bytes.
	TEEPubKey json.RawMessage `json:"tee-pubkey"`
	// AdditionalEvidence is the tee-evidence additional_evidence string
	// ("" when there is none). Nil omits the member: that is the form bound
	// into each additional device's evidence.
	AdditionalEvidence *string `json:"additional-evidence,omitempty"`
}

// Primary is the runtime data of the primary evidence.
func Primary(nonce string, teePubKey json.RawMessage, additionalEvidence string) RuntimeData {
	return RuntimeData{Nonce: nonce, TEEPubKey: teePubKey, AdditionalEvidence: &additionalEvidence}
}

// Device is the runtime data of an additional device's evidence (no
// additional-evidence member).
func Device(nonce string, teePubKey json.RawMessage) RuntimeData {
	return RuntimeData{Nonce: nonce, TEEPubKey: teePubKey}
}

// Canonical returns the JCS bytes that are hashed.
func (r RuntimeData) Canonical() ([]byte, error) {
	if len(r.TEEPubKey) == 0 {
		return nil, errors.New("runtime data: no tee-pubkey")
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("runtime data: %w", err)
	}
	return Canonical(b)
}

// Digest returns hash(JCS(r)) with the named hash (see Hash).
func (r RuntimeData) Digest(hashName string) ([]byte, error) {
	h, err := Hash(hashName)
	if err != nil {
		return nil, err
	}
	c, err := r.Canonical()
	if err != nil {
		return nil, err
	}
	hh := h.New()
	hh.Write(c)
	return hh.Sum(nil), nil
}
