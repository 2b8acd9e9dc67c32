package dcap

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/gokbs/kbs/sdk"
)

// Common names of Intel's DCAP PKI. Verification insists on them, as
// Intel's QVL does, so that a certificate of one role cannot stand in for
// another of the same root.
const (
	RootCN         = "Intel SGX Root CA"
	PlatformCACN   = "Intel SGX PCK Platform CA"
	ProcessorCACN  = "Intel SGX PCK Processor CA"
	PCKCN          = "Intel SGX PCK Certificate"
	TCBSigningCN   = "Intel SGX TCB Signing"
	caPlatform     = "platform"
	caProcessor    = "processor"
	sgxExtensionID = "1.2.840.113741.1.13.1"
)

// SGX types in the PCK certificate.
const (
	SGXTypeStandard              = 0
	SGXTypeScalable              = 1
	SGXTypeScalableWithIntegrity = 2
)

// PCKChain is the certificate chain of a quote's certification data.
type PCKChain struct {
	Leaf, Intermediate, Root *x509.Certificate
}

// CA returns "platform" or "processor": which PCK CA issued the leaf, and so
// which PCK CRL applies.
func (c *PCKChain) CA() string {
	if c.Intermediate.Subject.CommonName == ProcessorCACN {
		return caProcessor
	}
	return caPlatform
}

// ParsePCKChain parses the PEM chain of a quote: exactly the PCK leaf, the
// PCK CA and the root, in that order, with Intel's common names. Trailing
// NUL bytes and white space are allowed; anything else is not.
func ParsePCKChain(pemChain []byte) (*PCKChain, error) {
	var certs []*x509.Certificate
	rest := pemChain
	for len(certs) < 4 {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, sdk.BadEvidence("PCK chain: PEM block %q is not a certificate", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, sdk.BadEvidence("PCK chain: certificate %d: %v", len(certs), err)
		}
		certs = append(certs, c)
	}
	if len(certs) != 3 {
		return nil, sdk.BadEvidence("PCK chain: %d certificates, want 3 (PCK, PCK CA, root CA)", len(certs))
	}
	if len(bytes.Trim(rest, "\x00 \t\r\n")) != 0 {
		return nil, sdk.BadEvidence("PCK chain: unexpected data after the root certificate")
	}
	ch := &PCKChain{Leaf: certs[0], Intermediate: certs[1], Root: certs[2]}
	if cn := ch.Leaf.Subject.CommonName; cn != PCKCN {
		return nil, sdk.BadEvidence("PCK chain: leaf common name %q, want %q", cn, PCKCN)
	}
	if cn := ch.Intermediate.Subject.CommonName; cn != PlatformCACN && cn != ProcessorCACN {
		return nil, sdk.BadEvidence("PCK chain: CA common name %q, want %q or %q", cn, PlatformCACN, ProcessorCACN)
	}
	if cn := ch.Root.Subject.CommonName; cn != RootCN {
		return nil, sdk.BadEvidence("PCK chain: root common name %q, want %q", cn, RootCN)
	}
	return ch, nil
}

// verify checks the chain against the trusted roots at time now, and that
// the chain's own root is one of them.
func (c *PCKChain) verify(roots *x509.CertPool, trusted []*x509.Certificate, now time.Time) error {
	if !isTrusted(c.Root, trusted) {
		return sdk.BadEvidence("PCK chain: root CA %q (serial %s) is not a trusted root", c.Root.Subject.CommonName, c.Root.SerialNumber)
	}
	for _, cert := range []*x509.Certificate{c.Leaf, c.Intermediate} {
		if err := checkECDSAP256(cert); err != nil {
			return sdk.BadEvidence("PCK chain: %q: %v", cert.Subject.CommonName, err)
		}
	}
	inter := x509.NewCertPool()
	inter.AddCert(c.Intermediate)
	chains, err := c.Leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return sdk.BadEvidence("PCK chain: %v", err)
	}
	// Go may build a chain that skips the quote's intermediate (a
	// cross-signed copy in the pool); insist on the one the quote names.
	for _, ch := range chains {
		if len(ch) == 3 && ch[1].Equal(c.Intermediate) {
			return nil
		}
	}
	return sdk.BadEvidence("PCK chain: the PCK certificate does not chain through %q", c.Intermediate.Subject.CommonName)
}

func isTrusted(c *x509.Certificate, trusted []*x509.Certificate) bool {
	for _, t := range trusted {
		if t.Equal(c) {
			return true
		}
	}
	return false
}

func checkECDSAP256(c *x509.Certificate) error {
	if c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		return fmt.Errorf("signature algorithm %v, want ECDSA-SHA256", c.SignatureAlgorithm)
	}
	if _, err := p256Key(c); err != nil {
		return err
	}
	return nil
}

// PlatformInfo is what the PCK leaf certificate's SGX extension says about
// the platform ("Intel SGX PCK Certificate and CRL Profile").
type PlatformInfo struct {
	PPID             []byte // 16 bytes
	CPUSVN           []byte // 16 bytes
	TCBComponents    [16]byte
	PCESVN           uint16
	PCEID            []byte // 2 bytes
	FMSPC            []byte // 6 bytes
	SGXType          int
	CA               string // "platform" or "processor"
	PlatformInstance []byte // 16 bytes; platform CA certificates only
	// Configuration flags; set only for platform CA certificates.
	DynamicPlatform, CachedKeys, SMTEnabled *bool
}

type oidValue struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue
}

var (
	oidSGX          = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
	oidPPID         = append(oidSGX[:len(oidSGX):len(oidSGX)], 1)
	oidTCB          = append(oidSGX[:len(oidSGX):len(oidSGX)], 2)
	oidPCEID        = append(oidSGX[:len(oidSGX):len(oidSGX)], 3)
	oidFMSPC        = append(oidSGX[:len(oidSGX):len(oidSGX)], 4)
	oidSGXType      = append(oidSGX[:len(oidSGX):len(oidSGX)], 5)
	oidPlatformInst = append(oidSGX[:len(oidSGX):len(oidSGX)], 6)
	oidConfig       = append(oidSGX[:len(oidSGX):len(oidSGX)], 7)
)

// ParsePlatformInfo reads the SGX extension (OID 1.2.840.113741.1.13.1) of
// a PCK leaf certificate. ca is "platform" or "processor"; a platform
// certificate must carry the platform instance ID and configuration.
func ParsePlatformInfo(leaf *x509.Certificate, ca string) (*PlatformInfo, error) {
	var ext []byte
	for _, e := range leaf.Extensions {
		if e.Id.Equal(oidSGX) {
			if ext != nil {
				return nil, sdk.BadEvidence("PCK certificate: two SGX extensions")
			}
			ext = e.Value
		}
	}
	if ext == nil {
		return nil, sdk.BadEvidence("PCK certificate: no SGX extension (%s)", sgxExtensionID)
	}
	items, err := oidSequence(ext)
	if err != nil {
		return nil, sdk.BadEvidence("PCK certificate: SGX extension: %v", err)
	}
	p := &PlatformInfo{CA: ca, SGXType: -1}
	seen := map[string]bool{}
	for _, it := range items {
		key := it.ID.String()
		if seen[key] {
			return nil, sdk.BadEvidence("PCK certificate: SGX extension repeats %s", key)
		}
		seen[key] = true
		switch {
		case it.ID.Equal(oidPPID):
			p.PPID, err = octets(it.Value, 16)
		case it.ID.Equal(oidTCB):
			err = p.parseTCB(it.Value)
		case it.ID.Equal(oidPCEID):
			p.PCEID, err = octets(it.Value, 2)
		case it.ID.Equal(oidFMSPC):
			p.FMSPC, err = octets(it.Value, 6)
		case it.ID.Equal(oidSGXType):
			var e asn1.Enumerated
			if _, err = asn1.Unmarshal(it.Value.FullBytes, &e); err == nil {
				p.SGXType = int(e)
			}
		case it.ID.Equal(oidPlatformInst):
			p.PlatformInstance, err = octets(it.Value, 16)
		case it.ID.Equal(oidConfig):
			err = p.parseConfig(it.Value)
		}
		if err != nil {
			return nil, sdk.BadEvidence("PCK certificate: SGX extension %s: %v", key, err)
		}
	}
	switch {
	case p.PPID == nil || p.CPUSVN == nil || p.PCEID == nil || p.FMSPC == nil || p.SGXType < 0:
		return nil, sdk.BadEvidence("PCK certificate: SGX extension lacks PPID, TCB, PCE-ID, FMSPC or SGX type")
	case ca == caPlatform && (p.PlatformInstance == nil || p.SMTEnabled == nil):
		return nil, sdk.BadEvidence("PCK certificate: a platform CA certificate without platform instance ID or configuration")
	case ca == caProcessor && (p.PlatformInstance != nil || p.SMTEnabled != nil):
		return nil, sdk.BadEvidence("PCK certificate: a processor CA certificate with platform instance ID or configuration")
	}
	return p, nil
}

func (p *PlatformInfo) parseTCB(v asn1.RawValue) error {
	items, err := oidSequence(v.FullBytes)
	if err != nil {
		return err
	}
	tcbOID := oidTCB
	var have [18]bool
	for _, it := range items {
		if len(it.ID) != len(tcbOID)+1 || !it.ID[:len(tcbOID)].Equal(tcbOID) {
			return fmt.Errorf("unexpected TCB item %s", it.ID)
		}
		n := it.ID[len(tcbOID)]
		if n < 1 || n > 18 || have[n-1] {
			return fmt.Errorf("unexpected or repeated TCB item %s", it.ID)
		}
		have[n-1] = true
		switch {
		case n <= 16:
			var x int
			if _, err := asn1.Unmarshal(it.Value.FullBytes, &x); err != nil || x < 0 || x > 255 {
				return fmt.Errorf("TCB component %d is not a byte", n)
			}
			p.TCBComponents[n-1] = byte(x)
		case n == 17:
			var x int
			if _, err := asn1.Unmarshal(it.Value.FullBytes, &x); err != nil || x < 0 || x > 65535 {
				return fmt.Errorf("PCESVN is not a 16-bit number")
			}
			p.PCESVN = uint16(x)
		case n == 18:
			if p.CPUSVN, err = octets(it.Value, 16); err != nil {
				return err
			}
		}
	}
	for i, ok := range have {
		if !ok {
			return fmt.Errorf("TCB item %d missing", i+1)
		}
	}
	return nil
}

func (p *PlatformInfo) parseConfig(v asn1.RawValue) error {
	items, err := oidSequence(v.FullBytes)
	if err != nil {
		return err
	}
	for _, it := range items {
		var b bool
		if _, err := asn1.Unmarshal(it.Value.FullBytes, &b); err != nil {
			return fmt.Errorf("configuration item %s: %v", it.ID, err)
		}
		switch {
		case it.ID.Equal(append(oidConfig[:len(oidConfig):len(oidConfig)], 1)):
			p.DynamicPlatform = &b
		case it.ID.Equal(append(oidConfig[:len(oidConfig):len(oidConfig)], 2)):
			p.CachedKeys = &b
		case it.ID.Equal(append(oidConfig[:len(oidConfig):len(oidConfig)], 3)):
			p.SMTEnabled = &b
		}
	}
	if p.DynamicPlatform == nil || p.CachedKeys == nil || p.SMTEnabled == nil {
		return fmt.Errorf("configuration lacks dynamic platform, cached keys or SMT enabled")
	}
	return nil
}

// oidSequence parses SEQUENCE OF SEQUENCE { OID, value } with nothing after.
func oidSequence(der []byte) ([]oidValue, error) {
	var raw []asn1.RawValue
	rest, err := asn1.Unmarshal(der, &raw)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d bytes after the sequence", len(rest))
	}
	out := make([]oidValue, 0, len(raw))
	for _, r := range raw {
		var ov oidValue
		rest, err := asn1.Unmarshal(r.FullBytes, &ov)
		if err != nil {
			return nil, err
		}
		if len(rest) != 0 {
			return nil, fmt.Errorf("%d bytes after an item", len(rest))
		}
		out = append(out, ov)
	}
	return out, nil
}

func octets(v asn1.RawValue, n int) ([]byte, error) {
	var b []byte
	if _, err := asn1.Unmarshal(v.FullBytes, &b); err != nil {
		return nil, err
	}
	if len(b) != n {
		return nil, fmt.Errorf("%d bytes, want %d", len(b), n)
	}
	return b, nil
}
