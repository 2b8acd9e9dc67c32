package cca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// CBOR labels of the CCA attestation token (Arm CCA security model,
// draft-ffm-rats-cca-token).
const (
	tagLegacyCollection = 399 // EAT collection, the original CCA token
	tagCMWCollection    = 907 // CMW collection, current firmware
	coapEATCWT          = 263 // content format of each CMW entry

	labelPlatform = 44234
	labelRealm    = 44241
)

// Platform profiles, and the realm profile whose presence switches the
// RAK from a raw point to a COSE_Key.
const (
	profilePlatformLegacy = "http://arm.com/CCA-SSD/1.0.0"
	profilePlatform       = "tag:arm.com,2023:cca_platform#1.0.0"
	profileRealm          = "tag:arm.com,2023:realm#1.0.0"
)

// maxToken bounds a CCA token; real ones are a few KiB.
const maxToken = 64 << 10

// decMode refuses duplicate keys, indefinite lengths and deep nesting, so
// that a token has one meaning and a bounded cost.
var decMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		MaxNestedLevels:  16,
		MaxArrayElements: 1024,
		MaxMapPairs:      256,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

type swComponent struct {
	Type     *string `cbor:"1,keyasint,omitempty"`
	Value    []byte  `cbor:"2,keyasint,omitempty"`
	Version  *string `cbor:"4,keyasint,omitempty"`
	SignerID []byte  `cbor:"5,keyasint,omitempty"`
	Desc     *string `cbor:"6,keyasint,omitempty"`
}

type platformClaims struct {
	Profile      *string       `cbor:"265,keyasint,omitempty"`
	Challenge    []byte        `cbor:"10,keyasint,omitempty"`
	InstID       []byte        `cbor:"256,keyasint,omitempty"`
	Lifecycle    *uint64       `cbor:"2395,keyasint,omitempty"`
	ImplID       []byte        `cbor:"2396,keyasint,omitempty"`
	SWComponents []swComponent `cbor:"2399,keyasint,omitempty"`
	VSI          *string       `cbor:"2400,keyasint,omitempty"`
	Config       []byte        `cbor:"2401,keyasint,omitempty"`
	HashAlgID    *string       `cbor:"2402,keyasint,omitempty"`
}

type realmClaims struct {
	Profile         *string  `cbor:"265,keyasint,omitempty"`
	Challenge       []byte   `cbor:"10,keyasint,omitempty"`
	Perso           []byte   `cbor:"44235,keyasint,omitempty"`
	HashAlgID       *string  `cbor:"44236,keyasint,omitempty"`
	PubKey          []byte   `cbor:"44237,keyasint,omitempty"`
	RIM             []byte   `cbor:"44238,keyasint,omitempty"`
	REM             [][]byte `cbor:"44239,keyasint,omitempty"`
	PubKeyHashAlgID *string  `cbor:"44240,keyasint,omitempty"`
}

// token is a decoded CCA token whose signatures are not yet checked.
type token struct {
	platformMsg *cose.Sign1Message
	realmMsg    *cose.Sign1Message
	platform    platformClaims
	realm       realmClaims
	rak         *ecdsa.PublicKey
}

// parseToken decodes the collection, both COSE_Sign1 envelopes and both
// claims-sets, and checks that every mandatory claim is there with a sane
// size. It checks no signature.
func parseToken(b []byte) (*token, error) {
	if len(b) > maxToken {
		return nil, fmt.Errorf("token is %d bytes, more than %d", len(b), maxToken)
	}
	var tag cbor.RawTag
	if err := decMode.Unmarshal(b, &tag); err != nil {
		return nil, fmt.Errorf("not a tagged CBOR collection: %w", err)
	}
	var entries map[int64]cbor.RawMessage
	if err := decMode.Unmarshal(tag.Content, &entries); err != nil {
		return nil, fmt.Errorf("collection: %w", err)
	}
	raw := map[int64][]byte{}
	for label, v := range entries {
		if label != labelPlatform && label != labelRealm {
			return nil, fmt.Errorf("collection: unknown label %d", label)
		}
		var tok []byte
		switch tag.Number {
		case tagLegacyCollection:
			if err := decMode.Unmarshal(v, &tok); err != nil {
				return nil, fmt.Errorf("collection entry %d: %w", label, err)
			}
		case tagCMWCollection:
			var cmw []cbor.RawMessage
			var ct uint64
			if err := decMode.Unmarshal(v, &cmw); err != nil || len(cmw) != 2 ||
				decMode.Unmarshal(cmw[0], &ct) != nil || ct != coapEATCWT || decMode.Unmarshal(cmw[1], &tok) != nil {
				return nil, fmt.Errorf("collection entry %d is not [%d, token]", label, coapEATCWT)
			}
		default:
			return nil, fmt.Errorf("CBOR tag %d is not a CCA token (%d or %d)", tag.Number, tagCMWCollection, tagLegacyCollection)
		}
		raw[label] = tok
	}
	if raw[labelPlatform] == nil || raw[labelRealm] == nil {
		return nil, errors.New("collection lacks the platform or the realm token")
	}
	t := &token{}
	var err error
	if t.platformMsg, err = parseSign1(raw[labelPlatform]); err != nil {
		return nil, fmt.Errorf("platform token: %w", err)
	}
	if t.realmMsg, err = parseSign1(raw[labelRealm]); err != nil {
		return nil, fmt.Errorf("realm token: %w", err)
	}
	if err := decMode.Unmarshal(t.platformMsg.Payload, &t.platform); err != nil {
		return nil, fmt.Errorf("platform claims: %w", err)
	}
	if err := decMode.Unmarshal(t.realmMsg.Payload, &t.realm); err != nil {
		return nil, fmt.Errorf("realm claims: %w", err)
	}
	if err := t.platform.validate(); err != nil {
		return nil, fmt.Errorf("platform claims: %w", err)
	}
	if err := t.realm.validate(); err != nil {
		return nil, fmt.Errorf("realm claims: %w", err)
	}
	if t.rak, err = t.realm.rakKey(); err != nil {
		return nil, fmt.Errorf("realm claims: %w", err)
	}
	return t, nil
}

// parseSign1 accepts a tagged or an untagged COSE_Sign1 with a payload.
func parseSign1(b []byte) (*cose.Sign1Message, error) {
	m := cose.NewSign1Message()
	if err := m.UnmarshalCBOR(b); err != nil {
		var u cose.UntaggedSign1Message
		if uerr := u.UnmarshalCBOR(b); uerr != nil {
			return nil, fmt.Errorf("not a COSE_Sign1: %w", err)
		}
		m = (*cose.Sign1Message)(&u)
	}
	if len(m.Payload) == 0 {
		return nil, errors.New("COSE_Sign1 without a payload")
	}
	return m, nil
}

func oneOf(n int, sizes ...int) bool {
	for _, s := range sizes {
		if n == s {
			return true
		}
	}
	return false
}

func (p *platformClaims) validate() error {
	switch {
	case p.Profile == nil:
		return errors.New("profile is missing")
	case *p.Profile != profilePlatformLegacy && *p.Profile != profilePlatform:
		return fmt.Errorf("profile %q is not a CCA platform profile", *p.Profile)
	case !oneOf(len(p.Challenge), 32, 48, 64):
		return fmt.Errorf("challenge has %d bytes", len(p.Challenge))
	case len(p.ImplID) != 32:
		return fmt.Errorf("implementation id has %d bytes, want 32", len(p.ImplID))
	case len(p.InstID) != 33 || p.InstID[0] != 0x01:
		return errors.New("instance id is not a 33-byte random UEID")
	case p.Config == nil:
		return errors.New("platform config is missing")
	case p.Lifecycle == nil:
		return errors.New("lifecycle is missing")
	case len(p.SWComponents) == 0:
		return errors.New("software components are missing")
	case p.HashAlgID == nil:
		return errors.New("hash algorithm id is missing")
	}
	for i, c := range p.SWComponents {
		if len(c.Value) == 0 || len(c.SignerID) == 0 {
			return fmt.Errorf("software component %d lacks its measurement or signer id", i)
		}
	}
	return nil
}

// secured reports whether the platform is in a lifecycle state where its
// attestation can be relied on: "secured", or "non-CCA-platform debug"
// (debug access that does not reach the CCA platform's own secrets).
func (p *platformClaims) secured() bool {
	state := *p.Lifecycle &^ 0xff
	return state == 0x3000 || state == 0x4000
}

func (r *realmClaims) validate() error {
	switch {
	case r.Profile != nil && *r.Profile != profileRealm:
		return fmt.Errorf("profile %q is not the CCA realm profile", *r.Profile)
	case len(r.Challenge) != 64:
		return fmt.Errorf("challenge has %d bytes, want 64", len(r.Challenge))
	case len(r.Perso) != 64:
		return fmt.Errorf("personalization value has %d bytes, want 64", len(r.Perso))
	case r.HashAlgID == nil:
		return errors.New("hash algorithm id is missing")
	case !oneOf(len(r.RIM), 32, 48, 64):
		return fmt.Errorf("initial measurement has %d bytes", len(r.RIM))
	case len(r.REM) != 4:
		return fmt.Errorf("%d extensible measurements, want 4", len(r.REM))
	case len(r.PubKey) == 0:
		return errors.New("public key (RAK) is missing")
	case r.PubKeyHashAlgID == nil:
		return errors.New("public key hash algorithm id is missing")
	}
	for i, m := range r.REM {
		if len(m) != len(r.RIM) {
			return fmt.Errorf("extensible measurement %d has %d bytes, the initial one %d", i, len(m), len(r.RIM))
		}
	}
	return nil
}

// rakKey decodes the realm attestation key: a raw P-384 point in the
// original token, a COSE_Key since the realm profile claim exists.
func (r *realmClaims) rakKey() (*ecdsa.PublicKey, error) {
	if r.Profile == nil {
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P384(), r.PubKey)
		if err != nil {
			return nil, fmt.Errorf("public key (RAK) is not a P-384 point: %w", err)
		}
		return k, nil
	}
	var ck cose.Key
	if err := ck.UnmarshalCBOR(r.PubKey); err != nil {
		return nil, fmt.Errorf("public key (RAK) is not a COSE_Key: %w", err)
	}
	pub, err := ck.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("public key (RAK): %w", err)
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P384() {
		return nil, errors.New("public key (RAK) is not a P-384 key")
	}
	return k, nil
}

// hashByName maps the IANA hash names that CCA tokens use.
func hashByName(name string) (hash.Hash, error) {
	switch name {
	case "sha-256":
		return sha256.New(), nil
	case "sha-384":
		return sha512.New384(), nil
	case "sha-512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("hash algorithm %q is not known", name)
}

// algFor is the COSE algorithm that goes with an ECDSA key's curve.
func algFor(k *ecdsa.PublicKey) (cose.Algorithm, error) {
	switch k.Curve {
	case elliptic.P256():
		return cose.AlgorithmES256, nil
	case elliptic.P384():
		return cose.AlgorithmES384, nil
	case elliptic.P521():
		return cose.AlgorithmES512, nil
	}
	return 0, errors.New("unsupported curve")
}

// verifySign1 checks m's signature with k, refusing an algorithm that
// does not match the key's curve.
func verifySign1(m *cose.Sign1Message, k *ecdsa.PublicKey) error {
	want, err := algFor(k)
	if err != nil {
		return err
	}
	alg, err := m.Headers.Protected.Algorithm()
	if err != nil {
		return fmt.Errorf("protected header: %w", err)
	}
	if alg != want {
		return fmt.Errorf("signed with %v, but the key needs %v", alg, want)
	}
	v, err := cose.NewVerifier(alg, crypto.PublicKey(k))
	if err != nil {
		return err
	}
	return m.Verify(nil, v)
}
