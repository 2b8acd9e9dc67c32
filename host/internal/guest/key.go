// Package guest is what kbs-client needs to act as a CoCo guest: a TEE key
// pair exported as the guest's tee-pubkey JWK, kept in a PEM file, and
// used to open the broker's JWE responses the way the CoCo guest does
// (rebuilding the AAD from the parsed protected header), plus sample
// evidence bound to a runtime-data digest.
package guest

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"

	"github.com/gokbs/kbs/host/internal/jwe"
)

// Key kinds for NewKey.
const (
	KindECP256  = "ec-p256" // the CoCo guest's default
	KindECP521  = "ec-p521"
	KindRSAOAEP = "rsa-oaep-256"
	KindRSA15   = "rsa1_5" // legacy guests
)

const (
	rsaBits       = 2048
	pemTypeRSA    = "RSA PRIVATE KEY"
	pemTypePKCS8  = "PRIVATE KEY"
	pemTypeSEC1EC = "EC PRIVATE KEY"
)

// Kinds lists the accepted key kinds, default first.
var Kinds = []string{KindECP256, KindECP521, KindRSAOAEP, KindRSA15}

// Key is a guest's TEE key pair. The private half never leaves it except
// through MarshalPEM.
type Key struct {
	ec  *ecdsa.PrivateKey
	rsa *rsa.PrivateKey
	alg string // JWE key management algorithm the key is exported with
	crv string // EC only
}

// NewKey generates a key of the given kind ("" means KindECP256).
func NewKey(kind string) (*Key, error) {
	switch kind {
	case "", KindECP256, KindECP521:
		c := elliptic.P256()
		if kind == KindECP521 {
			c = elliptic.P521()
		}
		priv, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate tee key: %w", err)
		}
		return ecKey(priv)
	case KindRSAOAEP, KindRSA15:
		priv, err := rsa.GenerateKey(rand.Reader, rsaBits)
		if err != nil {
			return nil, fmt.Errorf("generate tee key: %w", err)
		}
		return rsaKey(priv, kind)
	default:
		return nil, fmt.Errorf("unknown tee key kind %q (want one of %v)", kind, Kinds)
	}
}

func ecKey(priv *ecdsa.PrivateKey) (*Key, error) {
	switch priv.Curve {
	case elliptic.P256():
		return &Key{ec: priv, alg: jwe.AlgECDHESA256KW, crv: jwe.CurveP256}, nil
	case elliptic.P521():
		return &Key{ec: priv, alg: jwe.AlgECDHESA256KW, crv: jwe.CurveP521}, nil
	default:
		return nil, fmt.Errorf("tee key: unsupported curve %s", priv.Curve.Params().Name)
	}
}

func rsaKey(priv *rsa.PrivateKey, kind string) (*Key, error) {
	if priv.N.BitLen() < rsaBits {
		return nil, fmt.Errorf("tee key: RSA key is %d bits, want at least %d", priv.N.BitLen(), rsaBits)
	}
	alg := jwe.AlgRSAOAEP256
	if kind == KindRSA15 {
		alg = jwe.AlgRSA15
	}
	return &Key{rsa: priv, alg: alg}, nil
}

// Kind returns the key's kind.
func (k *Key) Kind() string {
	switch {
	case k.crv == jwe.CurveP256:
		return KindECP256
	case k.crv == jwe.CurveP521:
		return KindECP521
	case k.alg == jwe.AlgRSA15:
		return KindRSA15
	default:
		return KindRSAOAEP
	}
}

// PublicJWK returns the tee-pubkey the guest sends, member for member as
// the CoCo guest exports it: {"kty":"EC","crv","alg","x","y"} with
// fixed-size coordinates, or {"kty":"RSA","alg","n","e"}.
func (k *Key) PublicJWK() *jwe.TEEPubKey {
	b64 := base64.RawURLEncoding.EncodeToString
	if k.ec != nil {
		size := (k.ec.Curve.Params().BitSize + 7) / 8
		return &jwe.TEEPubKey{Kty: "EC", Crv: k.crv, Alg: k.alg,
			X: b64(k.ec.X.FillBytes(make([]byte, size))), Y: b64(k.ec.Y.FillBytes(make([]byte, size)))}
	}
	return &jwe.TEEPubKey{Kty: "RSA", Alg: k.alg,
		N: b64(k.rsa.N.Bytes()), E: b64(big.NewInt(int64(k.rsa.E)).Bytes())}
}

// PublicJWKJSON is PublicJWK as JSON, ready for runtime-data.
func (k *Key) PublicJWKJSON() (json.RawMessage, error) {
	return json.Marshal(k.PublicJWK())
}

// MarshalPEM encodes the private key as the CoCo guest stores it: PKCS#1
// for RSA, PKCS#8 for EC.
func (k *Key) MarshalPEM() ([]byte, error) {
	if k.rsa != nil {
		return pem.EncodeToMemory(&pem.Block{Type: pemTypeRSA, Bytes: x509.MarshalPKCS1PrivateKey(k.rsa)}), nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.ec)
	if err != nil {
		return nil, fmt.Errorf("encode tee key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemTypePKCS8, Bytes: der}), nil
}

// ParsePEM reads a private key written by MarshalPEM, or a SEC1 EC key.
// PEM does not record which RSA padding the key is for: rsaKind picks it
// (KindRSAOAEP or KindRSA15; "" means KindRSAOAEP) and is ignored for EC.
func ParsePEM(data []byte, rsaKind string) (*Key, error) {
	if rsaKind == "" {
		rsaKind = KindRSAOAEP
	}
	if rsaKind != KindRSAOAEP && rsaKind != KindRSA15 {
		return nil, fmt.Errorf("tee key: %q is not an RSA key kind", rsaKind)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("tee key: no PEM block")
	}
	var parsed any
	var err error
	switch b.Type {
	case pemTypeRSA:
		parsed, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case pemTypePKCS8:
		parsed, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case pemTypeSEC1EC:
		parsed, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("tee key: unsupported PEM block %q", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("tee key: %w", err)
	}
	switch p := parsed.(type) {
	case *ecdsa.PrivateKey:
		return ecKey(p)
	case *rsa.PrivateKey:
		return rsaKey(p, rsaKind)
	default:
		return nil, fmt.Errorf("tee key: unsupported key type %T", parsed)
	}
}

// LoadFile reads a key saved with SaveFile (see ParsePEM for rsaKind).
func LoadFile(path, rsaKind string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tee key: %w", err)
	}
	return ParsePEM(data, rsaKind)
}

// SaveFile writes the private key as PEM, readable by the owner only. An
// existing file is not overwritten.
func (k *Key) SaveFile(path string) error {
	data, err := k.MarshalPEM()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("tee key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("tee key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tee key: %w", err)
	}
	return nil
}

// ecdh returns the key as crypto/ecdh, which checks peer points.
func (k *Key) ecdh() (*ecdh.PrivateKey, error) {
	return k.ec.ECDH()
}
