package dcap

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// intelRootPEM is Intel's SGX Root CA, the anchor of every PCK chain and of
// the TCB signing chain (valid 2018-05-21 .. 2049-12-31). It is public data,
// published at https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.pem.
//
//go:embed intel_sgx_root_ca.pem
var intelRootPEM []byte

// IntelRootSHA256 is the SHA-256 fingerprint of the pinned root's DER.
const IntelRootSHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

// IntelRoot returns a parsed copy of the pinned Intel SGX Root CA.
func IntelRoot() *x509.Certificate {
	blk, _ := pem.Decode(intelRootPEM)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		panic("dcap: embedded Intel root: " + err.Error())
	}
	return c
}

// ParseCertificatesPEM parses every CERTIFICATE block of a PEM bundle.
func ParseCertificatesPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

func p256Key(c *x509.Certificate) (*ecdsa.PublicKey, error) {
	k, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("public key is not ECDSA P-256")
	}
	return k, nil
}

// rawP256Key turns the X||Y of a quote's attestation key into a key.
func rawP256Key(xy []byte) (*ecdsa.PublicKey, error) {
	if len(xy) != 64 {
		return nil, fmt.Errorf("attestation key has %d bytes, want 64", len(xy))
	}
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{4}, xy...))
}

// verifyP256 checks an ECDSA-P256-SHA256 signature given as r||s (Intel's
// encoding in quotes and collateral).
func verifyP256(pub *ecdsa.PublicKey, msg, rs []byte) bool {
	if len(rs) != 64 {
		return false
	}
	h := sha256.Sum256(msg)
	r := new(big.Int).SetBytes(rs[:32])
	s := new(big.Int).SetBytes(rs[32:])
	return ecdsa.Verify(pub, h[:], r, s)
}
