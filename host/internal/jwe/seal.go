// Package jwe seals a resource to a guest's TEE key as the flattened JWE
// JSON of the KBS protocol (RFC 7516 §7.2.2): A256GCM content encryption,
// key management ECDH-ES+A256KW (P-256, P-521), RSA-OAEP-256 or RSA1_5.
//
// The CoCo guest does not use the received "protected" string as AAD: it
// parses the header and re-serializes it (alg, enc, then the other members
// in sorted order, nested objects sorted, no spaces). Seal therefore emits
// exactly those bytes; any other layout fails the guest's GCM tag check.
package jwe

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"

	josecipher "github.com/go-jose/go-jose/v4/cipher"
)

// Response is the flattened JWE JSON sent to the guest. Every member is
// unpadded base64url. AAD is never set by Seal; it exists so that a
// received response carrying "aad" still parses.
type Response struct {
	Protected    string `json:"protected"`
	EncryptedKey string `json:"encrypted_key"`
	AAD          string `json:"aad,omitempty"`
	IV           string `json:"iv"`
	Ciphertext   string `json:"ciphertext"`
	Tag          string `json:"tag"`
}

// Header is the protected header. Its field order is the guest's
// serialization order: alg, enc, then the rest sorted (only epk here).
type Header struct {
	Alg string `json:"alg"`
	Enc string `json:"enc"`
	EPK *EPK   `json:"epk,omitempty"`
}

// EPK is the ephemeral public key of ECDH-ES, members sorted.
type EPK struct {
	Crv string `json:"crv"`
	Kty string `json:"kty"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

const (
	cekSize = 32 // A256GCM
	ivSize  = 12
	tagSize = 16
)

// Seal encrypts plaintext to teeKey. A fresh CEK, IV and (for ECDH-ES)
// ephemeral key come from crypto/rand on every call. Errors wrap
// ErrUnsupportedKey or ErrInvalidKey when the key is at fault.
func Seal(teeKey *TEEPubKey, plaintext []byte) (*Response, error) {
	if teeKey == nil {
		return nil, fmt.Errorf("%w: no key", ErrInvalidKey)
	}
	if err := teeKey.Validate(); err != nil {
		return nil, err
	}
	cek := make([]byte, cekSize)
	if _, err := rand.Read(cek); err != nil {
		return nil, fmt.Errorf("cek: %w", err)
	}
	defer clear(cek)

	hdr := Header{Alg: teeKey.Alg, Enc: EncA256GCM}
	var encryptedKey []byte
	var err error
	switch pub := teeKey.pub.(type) {
	case *ecdh.PublicKey:
		hdr.EPK, encryptedKey, err = wrapECDHES(pub, teeKey.Crv, cek)
	case *rsa.PublicKey:
		if teeKey.Alg == AlgRSAOAEP256 {
			encryptedKey, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, cek, nil)
		} else {
			//lint:ignore SA1019 RSA1_5 is still sent by older guests.
			encryptedKey, err = rsa.EncryptPKCS1v15(rand.Reader, pub, cek)
		}
	default:
		err = fmt.Errorf("%w: kty %q", ErrUnsupportedKey, teeKey.Kty)
	}
	if err != nil {
		return nil, fmt.Errorf("wrap cek: %w", err)
	}

	protected, err := EncodeHeader(&hdr)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, fmt.Errorf("content cipher: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("content cipher: %w", err)
	}
	iv := make([]byte, ivSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("iv: %w", err)
	}
	// RFC 7516 §5.1 step 14: the AAD is the ASCII of the encoded header.
	sealed := gcm.Seal(nil, iv, plaintext, []byte(protected))
	ct, tag := sealed[:len(sealed)-tagSize], sealed[len(sealed)-tagSize:]

	b64 := base64.RawURLEncoding.EncodeToString
	return &Response{
		Protected:    protected,
		EncryptedKey: b64(encryptedKey),
		IV:           b64(iv),
		Ciphertext:   b64(ct),
		Tag:          b64(tag),
	}, nil
}

// EncodeHeader returns b64url(compact JSON of h), the exact "protected"
// value and AEAD AAD.
func EncodeHeader(h *Header) (string, error) {
	// The values are algorithm names and base64url strings, so
	// encoding/json's HTML escaping never applies.
	b, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("protected header: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func wrapECDHES(pub *ecdh.PublicKey, crv string, cek []byte) (*EPK, []byte, error) {
	eph, err := pub.Curve().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ephemeral key: %w", err)
	}
	z, err := eph.ECDH(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ecdh: %v", ErrInvalidKey, err)
	}
	kek := concatKDF(z, AlgECDHESA256KW)
	clear(z)
	defer clear(kek)
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, nil, fmt.Errorf("kek cipher: %w", err)
	}
	wrapped, err := josecipher.KeyWrap(block, cek)
	if err != nil {
		return nil, nil, fmt.Errorf("key wrap: %w", err)
	}
	// Uncompressed point 0x04 || X || Y with fixed-size coordinates.
	pt := eph.PublicKey().Bytes()
	size := (len(pt) - 1) / 2
	b64 := base64.RawURLEncoding.EncodeToString
	return &EPK{Crv: crv, Kty: "EC", X: b64(pt[1 : 1+size]), Y: b64(pt[1+size:])}, wrapped, nil
}

// concatKDF derives the 256-bit A256KW key from the ECDH shared secret z
// (NIST SP 800-56A Concat KDF with SHA-256, RFC 7518 §4.6.2): empty apu and
// apv, AlgorithmID = alg. One SHA-256 round yields all 256 bits.
func concatKDF(z []byte, alg string) []byte {
	h := sha256.New()
	var u32 [4]byte
	put := func(v int) {
		binary.BigEndian.PutUint32(u32[:], uint32(v))
		h.Write(u32[:])
	}
	put(1) // round counter
	h.Write(z)
	put(len(alg))
	h.Write([]byte(alg))
	put(0)   // apu
	put(0)   // apv
	put(256) // keydatalen in bits
	return h.Sum(nil)
}
