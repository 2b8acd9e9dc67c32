package adminauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// GenerateKeyPair makes an Ed25519 admin key pair: the private key as PEM
// PKCS#8 ("PRIVATE KEY", what `openssl genpkey -algorithm ed25519` writes)
// and the public key as PEM SPKI ("PUBLIC KEY", what auth_public_key,
// public_key_path and public_key_uri read).
func GenerateKeyPair() (privPEM, pubPEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	pubPEM, err = marshalPublic(pub)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), pubPEM, nil
}

// PublicKeyPEM derives the public key PEM of an Ed25519 private key PEM.
func PublicKeyPEM(privPEM []byte) ([]byte, error) {
	priv, err := parsePrivate(privPEM)
	if err != nil {
		return nil, err
	}
	return marshalPublic(priv.Public().(ed25519.PublicKey))
}

func marshalPublic(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func parsePrivate(privPEM []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(privPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("admin key: want a PEM PKCS#8 \"PRIVATE KEY\"")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("admin key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("admin key: want Ed25519, got %T", k)
	}
	return priv, nil
}

// TokenClaims are what an admin token says about its holder. Role is
// required by generation-3 configurations and ignored by the older ones.
type TokenClaims struct {
	Issuer   string
	Subject  string
	Audience []string
	Role     string
}

// MintToken signs an EdDSA admin token valid for ttl from now, with iat and
// exp set; the shape of trustee's docker-compose admin token.
func MintToken(privPEM []byte, c TokenClaims, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		return "", errors.New("admin token: the lifetime must be positive")
	}
	priv, err := parsePrivate(privPEM)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	std := jwt.Claims{
		Issuer:   c.Issuer,
		Subject:  c.Subject,
		Audience: jwt.Audience(c.Audience),
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(ttl)),
	}
	b := jwt.Signed(signer).Claims(std)
	if c.Role != "" {
		b = b.Claims(map[string]any{"role": c.Role})
	}
	return b.Serialize()
}
