package jwe

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// Key management algorithms the broker can seal to, and the one content
// encryption it uses (the CoCo guest accepts nothing else).
const (
	AlgECDHESA256KW = "ECDH-ES+A256KW"
	AlgRSAOAEP256   = "RSA-OAEP-256"
	// AlgRSA15 is deprecated (Bleichenbacher-style oracles) and kept only
	// because older guests still send RSA keys that ask for it.
	AlgRSA15   = "RSA1_5"
	EncA256GCM = "A256GCM"

	CurveP256 = "P-256"
	CurveP521 = "P-521"
)

// minRSABits is the smallest modulus accepted for a TEE key; the CoCo guest
// generates 2048-bit keys.
const minRSABits = 2048

// maxRSABits bounds the work a guest can make the broker do per request.
const maxRSABits = 8192

var (
	// ErrUnsupportedKey: the key is well formed but asks for a kty, alg or
	// curve the broker does not seal to.
	ErrUnsupportedKey = errors.New("unsupported tee key")
	// ErrInvalidKey: the key JSON is malformed or its material is unusable
	// (bad encoding, point not on the curve, weak RSA parameters).
	ErrInvalidKey = errors.New("invalid tee key")
)

// TEEPubKey is the JWK a guest sends as runtime-data "tee-pubkey":
// {"kty":"EC","crv","alg","x","y"} or {"kty":"RSA","alg","n","e"}.
// Field order matches what the CoCo guest emits.
type TEEPubKey struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	Alg string `json:"alg"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`

	// pub caches the decoded public key (*ecdh.PublicKey or *rsa.PublicKey)
	// once the key has been validated.
	pub any
}

// ParseTEEPubKey decodes a tee-pubkey JWK (see UnmarshalJSON) and
// validates it (see Validate). The result is ready for Seal.
func ParseTEEPubKey(data []byte) (*TEEPubKey, error) {
	var k TEEPubKey
	if err := k.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	if err := k.Validate(); err != nil {
		return nil, err
	}
	return &k, nil
}

// UnmarshalJSON decodes the JWK structurally: member names are matched
// exactly (case-sensitive, unlike encoding/json), every member the kty needs
// must be a string, and trailing data is refused. Unknown members are
// ignored, as the trustee KBS does; re-marshalling the key drops them, which
// is also the form trustee hashes into the runtime data. The key material is
// not checked here, so that a key the broker cannot seal to can still be
// attested (as with trustee) and fail later at resource time; call Validate
// for that.
func (k *TEEPubKey) UnmarshalJSON(data []byte) error {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JWK", ErrInvalidKey)
	}
	if m == nil {
		return fmt.Errorf("%w: not a JSON object", ErrInvalidKey)
	}
	str := func(name string) (string, error) {
		raw, ok := m[name]
		if !ok {
			return "", fmt.Errorf("%w: missing %q", ErrInvalidKey, name)
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%w: %q is not a string", ErrInvalidKey, name)
		}
		return s, nil
	}
	var out TEEPubKey
	var err error
	if out.Kty, err = str("kty"); err != nil {
		return err
	}
	var names []string
	switch out.Kty {
	case "EC":
		names = []string{"crv", "alg", "x", "y"}
	case "RSA":
		names = []string{"alg", "n", "e"}
	default:
		return fmt.Errorf("%w: kty %q", ErrUnsupportedKey, out.Kty)
	}
	for _, name := range names {
		s, err := str(name)
		if err != nil {
			return err
		}
		switch name {
		case "crv":
			out.Crv = s
		case "alg":
			out.Alg = s
		case "x":
			out.X = s
		case "y":
			out.Y = s
		case "n":
			out.N = s
		case "e":
			out.E = s
		}
	}
	*k = out
	return nil
}

// Validate checks that the key can be sealed to and caches the decoded
// public key. Errors wrap ErrUnsupportedKey or ErrInvalidKey.
func (k *TEEPubKey) Validate() error {
	if k.pub != nil {
		return nil
	}
	pub, err := k.decode()
	if err != nil {
		return err
	}
	k.pub = pub
	return nil
}

func (k *TEEPubKey) decode() (any, error) {
	switch k.Kty {
	case "EC":
		if k.Alg != AlgECDHESA256KW {
			return nil, fmt.Errorf("%w: EC alg %q", ErrUnsupportedKey, k.Alg)
		}
		curve, size, err := curveByName(k.Crv)
		if err != nil {
			return nil, err
		}
		x, err := decodeFixed("x", k.X, size)
		if err != nil {
			return nil, err
		}
		y, err := decodeFixed("y", k.Y, size)
		if err != nil {
			return nil, err
		}
		point := make([]byte, 0, 1+2*size)
		point = append(append(append(point, 4), x...), y...)
		pub, err := curve.NewPublicKey(point)
		if err != nil {
			return nil, fmt.Errorf("%w: point is not on %s", ErrInvalidKey, k.Crv)
		}
		return pub, nil
	case "RSA":
		if k.Alg != AlgRSAOAEP256 && k.Alg != AlgRSA15 {
			return nil, fmt.Errorf("%w: RSA alg %q", ErrUnsupportedKey, k.Alg)
		}
		n, err := decodeB64("n", k.N)
		if err != nil {
			return nil, err
		}
		e, err := decodeB64("e", k.E)
		if err != nil {
			return nil, err
		}
		return rsaPublicKey(n, e)
	default:
		return nil, fmt.Errorf("%w: kty %q", ErrUnsupportedKey, k.Kty)
	}
}

func curveByName(crv string) (ecdh.Curve, int, error) {
	switch crv {
	case CurveP256:
		return ecdh.P256(), 32, nil
	case CurveP521:
		return ecdh.P521(), 66, nil
	default:
		return nil, 0, fmt.Errorf("%w: curve %q", ErrUnsupportedKey, crv)
	}
}

func decodeB64(name, s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not unpadded base64url", ErrInvalidKey, name)
	}
	return b, nil
}

// decodeFixed enforces the full coordinate length of RFC 7518 §6.2.1.2, as
// trustee does: a shortened or padded coordinate is a malformed key.
func decodeFixed(name, s string, size int) ([]byte, error) {
	b, err := decodeB64(name, s)
	if err != nil {
		return nil, err
	}
	if len(b) != size {
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d", ErrInvalidKey, name, len(b), size)
	}
	return b, nil
}

// rsaPublicKey tolerates leading zero octets in n and e, which RFC 7518
// forbids but some libraries emit and trustee accepts.
func rsaPublicKey(n, e []byte) (*rsa.PublicKey, error) {
	e = bytes.TrimLeft(e, "\x00")
	N := new(big.Int).SetBytes(n)
	if N.BitLen() < minRSABits || N.BitLen() > maxRSABits {
		return nil, fmt.Errorf("%w: RSA modulus is %d bits, want %d to %d", ErrInvalidKey, N.BitLen(), minRSABits, maxRSABits)
	}
	if N.Bit(0) == 0 {
		return nil, fmt.Errorf("%w: RSA modulus is even", ErrInvalidKey)
	}
	if len(e) == 0 || len(e) > 4 {
		return nil, fmt.Errorf("%w: RSA exponent is zero or longer than 4 bytes", ErrInvalidKey)
	}
	var E int64
	for _, b := range e {
		E = E<<8 | int64(b)
	}
	// Go's crypto/rsa takes exponents in [3, 2^31-1]; they must be odd.
	if E < 3 || E > 1<<31-1 || E%2 == 0 {
		return nil, fmt.Errorf("%w: RSA exponent %d", ErrInvalidKey, E)
	}
	return &rsa.PublicKey{N: N, E: int(E)}, nil
}
