package cca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// trustAnchor is one CPAK with the platform it belongs to, as in the
// ccatoken trust-anchor store that trustee's CCA verifier is configured
// with (tastore.json).
type trustAnchor struct {
	key    *ecdsa.PublicKey
	implID []byte
}

// refValue is one acceptable platform state (rvstore.json "platform").
type refValue struct {
	config       []byte
	swComponents []refComponent
}

type refComponent struct {
	value, signerID []byte
	typ, version    *string
}

// stores are the trust anchors by instance ID and the platform reference
// values by implementation ID. They are read-only once built.
type stores struct {
	anchors map[string]trustAnchor // hex instance id →
	refs    map[string][]refValue  // hex implementation id →
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// publicKey turns an EC public JWK into an ECDSA key, checking the point.
func (j jwk) publicKey() (*ecdsa.PublicKey, error) {
	curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}
	c, ok := curves[j.Crv]
	if j.Kty != "EC" || !ok {
		return nil, fmt.Errorf("key is not an EC P-256/384/521 JWK (kty %q, crv %q)", j.Kty, j.Crv)
	}
	x, errX := base64.RawURLEncoding.DecodeString(j.X)
	y, errY := base64.RawURLEncoding.DecodeString(j.Y)
	size := (c.Params().BitSize + 7) / 8
	if errX != nil || errY != nil || len(x) != size || len(y) != size {
		return nil, fmt.Errorf("key coordinates are not %d-byte base64url values", size)
	}
	return ecdsa.ParseUncompressedPublicKey(c, append(append([]byte{4}, x...), y...))
}

func hexField(s, what string, size int) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s is not hex: %v", what, err)
	}
	if size > 0 && len(b) != size {
		return nil, fmt.Errorf("%s has %d bytes, want %d", what, len(b), size)
	}
	return b, nil
}

// parseTAStore reads a trust-anchor store: a JSON array of
// {"pkey": <JWK>, "implementation-id": <hex>, "instance-id": <hex>}.
func parseTAStore(b []byte) (map[string]trustAnchor, error) {
	var entries []struct {
		PKey   jwk    `json:"pkey"`
		ImplID string `json:"implementation-id"`
		InstID string `json:"instance-id"`
	}
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, err
	}
	out := make(map[string]trustAnchor, len(entries))
	for i, e := range entries {
		key, err := e.PKey.publicKey()
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		impl, err := hexField(e.ImplID, fmt.Sprintf("entry %d: implementation-id", i), 32)
		if err != nil {
			return nil, err
		}
		inst, err := hexField(e.InstID, fmt.Sprintf("entry %d: instance-id", i), 33)
		if err != nil {
			return nil, err
		}
		out[hex.EncodeToString(inst)] = trustAnchor{key: key, implID: impl}
	}
	return out, nil
}

// parseRVStore reads the platform part of a reference-value store:
// {"platform": [{"implementation-id", "sw-components": [...],
// "platform-configuration"}], "realm": [...]}. Realm values are left to
// the attestation policy, as trustee does.
func parseRVStore(b []byte) (map[string][]refValue, error) {
	var doc struct {
		Platform []struct {
			ImplID     string `json:"implementation-id"`
			Config     string `json:"platform-configuration"`
			Components []struct {
				Value    string  `json:"measurement-value"`
				SignerID string  `json:"signer-id"`
				Type     *string `json:"component-type"`
				Version  *string `json:"version"`
			} `json:"sw-components"`
		} `json:"platform"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	out := map[string][]refValue{}
	for i, p := range doc.Platform {
		impl, err := hexField(p.ImplID, fmt.Sprintf("platform %d: implementation-id", i), 32)
		if err != nil {
			return nil, err
		}
		cfg, err := hexField(p.Config, fmt.Sprintf("platform %d: platform-configuration", i), 0)
		if err != nil {
			return nil, err
		}
		rv := refValue{config: cfg}
		for j, c := range p.Components {
			what := fmt.Sprintf("platform %d: sw-component %d", i, j)
			v, err := hexField(c.Value, what+": measurement-value", 0)
			if err != nil {
				return nil, err
			}
			s, err := hexField(c.SignerID, what+": signer-id", 0)
			if err != nil {
				return nil, err
			}
			rv.swComponents = append(rv.swComponents, refComponent{value: v, signerID: s, typ: c.Type, version: c.Version})
		}
		key := hex.EncodeToString(impl)
		out[key] = append(out[key], rv)
	}
	return out, nil
}

// matches reports whether the platform's configuration and its software
// components, in order, are those of rv. Optional reference fields (type,
// version) constrain only when they are set.
func (rv *refValue) matches(p *platformClaims) bool {
	if !bytes.Equal(rv.config, p.Config) || len(rv.swComponents) != len(p.SWComponents) {
		return false
	}
	for i, want := range rv.swComponents {
		got := p.SWComponents[i]
		if !bytes.Equal(want.value, got.Value) || !bytes.Equal(want.signerID, got.SignerID) {
			return false
		}
		if want.typ != nil && (got.Type == nil || *got.Type != *want.typ) {
			return false
		}
		if want.version != nil && (got.Version == nil || *got.Version != *want.version) {
			return false
		}
	}
	return true
}
