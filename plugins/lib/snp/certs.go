package snp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-sev-guest/verify/trust"

	"github.com/gokbs/kbs/sdk"
)

// rootSet is one generation's AMD certificates: the ARK (trust anchor), the
// ASK that certifies VCEKs and the ASVK that certifies VLEKs.
type rootSet struct {
	ark, ask, asvk *x509.Certificate
}

func (rs *rootSet) intermediate(s Signer) *x509.Certificate {
	if s == SignerVLEK {
		return rs.asvk
	}
	return rs.ask
}

// amdRoots are the pinned roots: the ARK/ASK/ASVK bundles that go-sev-guest
// embeds (as published at kdsintf.amd.com/{vcek,vlek}/v1/<gen>/cert_chain).
var amdRoots = func() map[Generation]*rootSet {
	bundles := []struct {
		gen        Generation
		vcek, vlek []byte
	}{
		{Milan, trust.AskArkMilanVcekBytes, trust.AskArkMilanVlekBytes},
		{Genoa, trust.AskArkGenoaVcekBytes, trust.AskArkGenoaVlekBytes},
		{Turin, trust.AskArkTurinVcekBytes, trust.AskArkTurinVlekBytes},
	}
	m := make(map[Generation]*rootSet, len(bundles))
	for _, b := range bundles {
		rs, err := loadRoots(b.vcek, b.vlek)
		if err != nil {
			panic(fmt.Sprintf("snp: embedded %v roots: %v", b.gen, err))
		}
		m[b.gen] = rs
	}
	return m
}()

func loadRoots(vcekBundle, vlekBundle []byte) (*rootSet, error) {
	askDER, arkDER, err := icaAndARK(vcekBundle)
	if err != nil {
		return nil, err
	}
	asvkDER, ark2DER, err := icaAndARK(vlekBundle)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(arkDER, ark2DER) {
		return nil, fmt.Errorf("the VCEK and VLEK bundles have different ARKs")
	}
	var rs rootSet
	for _, c := range []struct {
		dst **x509.Certificate
		der []byte
	}{{&rs.ark, arkDER}, {&rs.ask, askDER}, {&rs.asvk, asvkDER}} {
		if *c.dst, err = x509.ParseCertificate(c.der); err != nil {
			return nil, err
		}
	}
	return &rs, nil
}

// icaAndARK reads a KDS cert_chain bundle: the ASK (or ASVK) then the ARK,
// as PEM. (kds.ParseProductCertChain refuses the trailing blank line of
// the embedded Turin VLEK bundle.)
func icaAndARK(bundle []byte) (ica, ark []byte, err error) {
	var ders [][]byte
	for {
		var b *pem.Block
		b, bundle = pem.Decode(bundle)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			ders = append(ders, b.Bytes)
		}
	}
	if len(ders) != 2 || len(bytes.TrimSpace(bundle)) != 0 {
		return nil, nil, fmt.Errorf("want exactly two PEM certificates, ASK then ARK")
	}
	return ders[0], ders[1], nil
}

// AMD's OIDs in V[CL]EK certificates (KDS specification, AMD #57230).
var (
	oidProductName = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 2}
	oidBlSPL       = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 1}
	oidTeeSPL      = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 2}
	oidSnpSPL      = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 3}
	oidUcodeSPL    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 8}
	oidFmcSPL      = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 9}
	oidHWID        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 4}
	oidCSPID       = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 5}
)

// vekExtensions are the AMD extensions of a VCEK or VLEK certificate.
// go-sev-guest v0.15.0 rejects Turin's (fmcSPL, 8-byte hwID), so they are
// read here.
type vekExtensions struct {
	productName string
	hwid        []byte // VCEK: 64 bytes (Milan, Genoa) or 8 (Turin)
	cspID       string // VLEK
	tcb         TCB
	hasFMC      bool
}

func parseVEKExtensions(c *x509.Certificate) (*vekExtensions, error) {
	var e vekExtensions
	var haveBl, haveTee, haveSnp, haveUcode bool
	for _, ext := range c.Extensions {
		var err error
		switch {
		case ext.Id.Equal(oidProductName):
			e.productName, err = ia5(ext.Value)
		case ext.Id.Equal(oidBlSPL):
			e.tcb.Bootloader, err = spl(ext.Value)
			haveBl = true
		case ext.Id.Equal(oidTeeSPL):
			e.tcb.TEE, err = spl(ext.Value)
			haveTee = true
		case ext.Id.Equal(oidSnpSPL):
			e.tcb.SNP, err = spl(ext.Value)
			haveSnp = true
		case ext.Id.Equal(oidUcodeSPL):
			e.tcb.Microcode, err = spl(ext.Value)
			haveUcode = true
		case ext.Id.Equal(oidFmcSPL):
			e.tcb.FMC, err = spl(ext.Value)
			e.hasFMC = true
		case ext.Id.Equal(oidHWID):
			e.hwid, err = hwid(ext.Value)
		case ext.Id.Equal(oidCSPID):
			e.cspID, err = ia5(ext.Value)
		}
		if err != nil {
			return nil, fmt.Errorf("extension %v: %w", ext.Id, err)
		}
	}
	if !haveBl || !haveTee || !haveSnp || !haveUcode {
		return nil, fmt.Errorf("TCB extensions (blSPL, teeSPL, snpSPL, ucodeSPL) missing")
	}
	return &e, nil
}

func spl(v []byte) (uint8, error) {
	var i int
	rest, err := asn1.Unmarshal(v, &i)
	if err != nil || len(rest) != 0 || i < 0 || i > 255 {
		return 0, fmt.Errorf("not an INTEGER in 0..255")
	}
	return uint8(i), nil
}

func ia5(v []byte) (string, error) {
	var s string
	if len(v) == 0 || v[0] != asn1.TagIA5String {
		return "", fmt.Errorf("not an IA5String")
	}
	rest, err := asn1.UnmarshalWithParams(v, &s, "ia5")
	if err != nil || len(rest) != 0 {
		return "", fmt.Errorf("not an IA5String")
	}
	return s, nil
}

// hwid accepts both encodings KDS has used: the raw ID, and a DER OCTET
// STRING around it.
func hwid(v []byte) ([]byte, error) {
	if len(v) == 64 || len(v) == 8 {
		return v, nil
	}
	var b []byte
	rest, err := asn1.Unmarshal(v, &b)
	if err != nil || len(rest) != 0 || (len(b) != 64 && len(b) != 8) {
		return nil, fmt.Errorf("hwID is neither 64 nor 8 bytes")
	}
	return b, nil
}

// vek is a verified endorsement key certificate.
type vek struct {
	cert *x509.Certificate
	ext  *vekExtensions
	gen  Generation
	// validity window of the whole chain, to re-check a cached result.
	notBefore, notAfter time.Time
}

// checkVEKShape checks what the KDS specification promises about a V[CL]EK
// certificate, before any chain is built.
func checkVEKShape(c *x509.Certificate, s Signer) (*vekExtensions, error) {
	if c.Version != 3 {
		return nil, fmt.Errorf("certificate version %d, want 3", c.Version)
	}
	if c.SignatureAlgorithm != x509.SHA384WithRSAPSS {
		return nil, fmt.Errorf("signed with %v, want SHA384-RSAPSS", c.SignatureAlgorithm)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		return nil, fmt.Errorf("public key is not ECDSA P-384")
	}
	if want := "SEV-" + s.String(); c.Subject.CommonName != want {
		return nil, fmt.Errorf("subject CN %q, want %q", c.Subject.CommonName, want)
	}
	ext, err := parseVEKExtensions(c)
	if err != nil {
		return nil, err
	}
	switch {
	case s == SignerVCEK && (ext.hwid == nil || ext.cspID != ""):
		return nil, fmt.Errorf("a VCEK needs a hwID and no CSP ID")
	case s == SignerVLEK && (ext.hwid != nil || ext.cspID == ""):
		return nil, fmt.Errorf("a VLEK needs a CSP ID and no hwID")
	}
	return ext, nil
}

// productGeneration reads the generation from the productName extension
// ("Milan-B0" for a VCEK, "Milan" for a VLEK).
func productGeneration(ext *vekExtensions) (Generation, error) {
	line, _, _ := strings.Cut(ext.productName, "-")
	g, ok := parseGeneration(line)
	if !ok {
		return GenerationUnknown, fmt.Errorf("product name %q is not Milan, Genoa or Turin", ext.productName)
	}
	return g, nil
}

// verifyChain checks that c chains to the pinned ARK of its generation
// through that generation's ASK (VCEK) or ASVK (VLEK), or an intermediate
// the evidence carried, at time now.
func verifyChain(c *x509.Certificate, rs *rootSet, s Signer, extra []*x509.Certificate, now time.Time) (notBefore, notAfter time.Time, err error) {
	roots := x509.NewCertPool()
	roots.AddCert(rs.ark)
	inter := x509.NewCertPool()
	inter.AddCert(rs.intermediate(s))
	for _, x := range extra {
		inter.AddCert(x)
	}
	chains, err := c.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	notBefore, notAfter = c.NotBefore, c.NotAfter
	for _, x := range chains[0] {
		if x.NotBefore.After(notBefore) {
			notBefore = x.NotBefore
		}
		if x.NotAfter.Before(notAfter) {
			notAfter = x.NotAfter
		}
	}
	return notBefore, notAfter, nil
}

// parseCert accepts DER or a single PEM certificate.
func parseCert(b []byte) (*x509.Certificate, error) {
	return trust.ParseCert(b)
}

// CertsFromPEM classifies the certificates of a PEM bundle by their AMD
// subject names, for evidence that carries the VCEK and its chain as PEM
// (Azure's vcek field): SEV-VCEK, SEV-VLEK, SEV-<gen> or SEV-VLEK-<gen>
// (ASK/ASVK) and ARK-<gen>. Other certificates are an error.
func CertsFromPEM(data []byte) ([]Cert, error) {
	var certs []Cert
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, sdk.BadEvidence("snp certificates: %v", err)
		}
		cn := c.Subject.CommonName
		var t CertType
		switch {
		case cn == "SEV-VCEK":
			t = CertVCEK
		case cn == "SEV-VLEK":
			t = CertVLEK
		case strings.HasPrefix(cn, "ARK-"):
			t = CertARK
		case strings.HasPrefix(cn, "SEV-"):
			t = CertASK
		default:
			return nil, sdk.BadEvidence("snp certificates: %q is not an AMD SEV certificate", cn)
		}
		certs = append(certs, Cert{Type: t, Data: b.Bytes})
	}
	if len(certs) == 0 {
		return nil, sdk.BadEvidence("snp certificates: no PEM certificate")
	}
	return certs, nil
}
