// Package dcaptest makes DCAP quotes and collateral that verify against a
// test PKI instead of Intel's: a P-256 root, PCK CA and PCK certificate
// with Intel's names and SGX extension, a quoting enclave whose report the
// PCK key signs and binds the attestation key, and TCB info, QE identity
// and CRLs signed by a test TCB signing certificate. Point a verifier at
// Platform.Root (dcap.Options.Roots, or the plugins' root_ca_file setting)
// and at the collateral (Platform.Collateral, or WriteCollateralDir and the
// plugins' collateral_dir setting).
//
// It is for tests only: the keys are generated in memory and nothing here
// is secret.
package dcaptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/gokbs/kbs/plugins/lib/dcap"
)

// Defaults of the test platform.
var (
	DefaultFMSPC  = []byte{0x00, 0x90, 0x6e, 0xd5, 0x00, 0x00}
	DefaultPCEID  = []byte{0x00, 0x00}
	DefaultTCB    = [16]byte{3, 3, 2, 2, 3, 1, 0, 3}
	DefaultPCESVN = uint16(13)
	// DefaultTEETCBSVN is a TDX module 1.x with ISVSVN 3.
	DefaultTEETCBSVN = [16]byte{3, 1, 2}
	// QEMRSigner is the test QE's signer (and the QE identity's).
	QEMRSigner = bytes.Repeat([]byte{0x5a}, 32)
	intelQE    = []byte{0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07}
)

// Options shape the test PKI.
type Options struct {
	// Now centres the certificates' validity (default: time.Now()).
	Now time.Time
	// Processor issues the PCK certificate from a "processor" CA, which
	// carries no platform instance ID or configuration.
	Processor bool
}

// Platform is a test PKI and quoting enclave.
type Platform struct {
	Root, PCKCA, PCK, Signing             *x509.Certificate
	RootKey, PCKCAKey, PCKKey, SigningKey *ecdsa.PrivateKey
	AttestationKey                        *ecdsa.PrivateKey
	FMSPC, PCEID                          []byte
	TCB                                   [16]byte
	PCESVN                                uint16
	Now                                   time.Time
	rootDER, pckCADER, pckDER, signingDER []byte
	caKind                                string
	serial                                int64
	qeAuthData                            []byte
}

// New makes a test platform. It panics only if the system's random source
// fails.
func New(opts Options) *Platform {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	p := &Platform{FMSPC: DefaultFMSPC, PCEID: DefaultPCEID, TCB: DefaultTCB, PCESVN: DefaultPCESVN,
		Now: now.UTC().Truncate(time.Second), caKind: "platform", qeAuthData: bytes.Repeat([]byte{0xa5}, 32)}
	caCN := dcap.PlatformCACN
	if opts.Processor {
		p.caKind, caCN = "processor", dcap.ProcessorCACN
	}
	p.RootKey, p.PCKCAKey, p.PCKKey, p.SigningKey, p.AttestationKey = key(), key(), key(), key(), key()
	p.rootDER = p.cert(dcap.RootCN, p.RootKey, nil, nil, true, nil)
	p.Root = mustParse(p.rootDER)
	p.pckCADER = p.cert(caCN, p.PCKCAKey, p.Root, p.RootKey, true, nil)
	p.PCKCA = mustParse(p.pckCADER)
	p.signingDER = p.cert(dcap.TCBSigningCN, p.SigningKey, p.Root, p.RootKey, false, nil)
	p.Signing = mustParse(p.signingDER)
	p.pckDER = p.cert(dcap.PCKCN, p.PCKKey, p.PCKCA, p.PCKCAKey, false, p.sgxExtension())
	p.PCK = mustParse(p.pckDER)
	return p
}

func key() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func mustParse(der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}

func intelName(cn string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{"Intel Corporation"}, Locality: []string{"Santa Clara"},
		Province: []string{"CA"}, Country: []string{"US"}}
}

// cert issues a certificate shaped like Intel's: same names, key usages
// and the six extensions a PCK certificate has.
func (p *Platform) cert(cn string, k *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, ca bool, sgx []byte) []byte {
	p.serial++
	ski := sha256.Sum256(elliptic.MarshalCompressed(elliptic.P256(), k.X, k.Y))
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(p.serial),
		Subject:               intelName(cn),
		NotBefore:             p.Now.Add(-24 * time.Hour),
		NotAfter:              p.Now.Add(365 * 24 * time.Hour),
		SubjectKeyId:          ski[:20],
		BasicConstraintsValid: true,
		IsCA:                  ca,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		CRLDistributionPoints: []string{"https://certificates.example/IntelSGXRootCA.der"},
		SignatureAlgorithm:    x509.ECDSAWithSHA256,
	}
	if ca {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		tmpl.MaxPathLen = 1
		if parent != nil {
			tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
		}
	}
	if sgx != nil {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}, Value: sgx}}
	}
	if parent == nil {
		parent, parentKey = tmpl, k
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, parentKey)
	if err != nil {
		panic(err)
	}
	return der
}

// sgxExtension encodes the SGX extension of the PCK certificate.
func (p *Platform) sgxExtension() []byte {
	oid := func(n ...int) asn1.ObjectIdentifier {
		return append(asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}, n...)
	}
	m := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			panic(err)
		}
		return b
	}
	seq := func(items ...[]byte) []byte {
		return m(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: bytes.Join(items, nil)})
	}
	pair := func(id asn1.ObjectIdentifier, v []byte) []byte { return seq(m(id), v) }
	var tcb [][]byte
	for i, c := range p.TCB {
		tcb = append(tcb, pair(oid(2, i+1), m(int(c))))
	}
	tcb = append(tcb, pair(oid(2, 17), m(int(p.PCESVN))), pair(oid(2, 18), m(p.TCB[:])))
	items := [][]byte{
		pair(oid(1), m(bytes.Repeat([]byte{0x11}, 16))),
		pair(oid(2), seq(tcb...)),
		pair(oid(3), m(p.PCEID)),
		pair(oid(4), m(p.FMSPC)),
		pair(oid(5), m(asn1.Enumerated(1))),
	}
	if p.caKind == "platform" {
		items = append(items,
			pair(oid(6), m(bytes.Repeat([]byte{0x22}, 16))),
			pair(oid(7), seq(pair(oid(7, 1), m(false)), pair(oid(7, 2), m(true)), pair(oid(7, 3), m(true)))))
	}
	return seq(items...)
}

// RootPEM is the test root CA in PEM, for a verifier's trusted roots.
func (p *Platform) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.rootDER})
}

// PCKChainPEM is the chain the quotes carry: PCK, PCK CA, root.
func (p *Platform) PCKChainPEM() []byte {
	var b bytes.Buffer
	for _, der := range [][]byte{p.pckDER, p.pckCADER, p.rootDER} {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return b.Bytes()
}

// TDXOptions shape a TD quote. Zero fields take defaults.
type TDXOptions struct {
	ReportData []byte // padded to 64 bytes
	MRConfigID []byte // padded to 48 bytes
	RTMRs      [4][]byte
	// TDAttributes default to SEPT_VE_DISABLE (bit 28).
	TDAttributes []byte
	TEETCBSVN    *[16]byte
	// Version is 4 (default) or 5; BodyType (v5) is dcap.BodyTD10 or
	// dcap.BodyTD15 (default).
	Version  uint16
	BodyType uint16
	// QESVN is the QE report's ISVSVN (default 8).
	QESVN uint16
}

// TDXQuote makes a TD quote signed by the platform's attestation key.
func (p *Platform) TDXQuote(o TDXOptions) []byte {
	if o.Version == 0 {
		o.Version = 4
	}
	bodyType := dcap.BodyTD10
	if o.Version == 5 {
		bodyType = dcap.BodyTD15
		if o.BodyType != 0 {
			bodyType = o.BodyType
		}
	}
	size := dcap.TD10BodySize
	if bodyType == dcap.BodyTD15 {
		size = dcap.TD15BodySize
	}
	body := make([]byte, size)
	tee := DefaultTEETCBSVN
	if o.TEETCBSVN != nil {
		tee = *o.TEETCBSVN
	}
	copy(body[0:16], tee[:])
	copy(body[16:64], bytes.Repeat([]byte{0x4d}, 48)) // MRSEAM
	attrs := o.TDAttributes
	if attrs == nil {
		attrs = []byte{0, 0, 0, 0x10, 0, 0, 0, 0}
	}
	copy(body[120:128], attrs)
	copy(body[128:136], []byte{0xe7, 0x02, 0x06, 0, 0, 0, 0, 0}) // XFAM
	copy(body[136:184], bytes.Repeat([]byte{0x7d}, 48))          // MRTD
	copy(body[184:232], o.MRConfigID)
	for i, r := range o.RTMRs {
		copy(body[328+48*i:376+48*i], r)
	}
	copy(body[520:584], o.ReportData)
	if bodyType == dcap.BodyTD15 {
		copy(body[584:600], tee[:])
	}
	hdr := header(o.Version, dcap.TEETDX)
	signed := hdr
	if o.Version == 5 {
		var d [6]byte
		binary.LittleEndian.PutUint16(d[0:2], bodyType)
		binary.LittleEndian.PutUint32(d[2:6], uint32(size))
		signed = append(signed, d[:]...)
	}
	signed = append(signed, body...)
	qe := p.qeCertData(o.QESVN, 2)
	cert := binary.LittleEndian.AppendUint16(nil, 6)
	cert = binary.LittleEndian.AppendUint32(cert, uint32(len(qe)))
	cert = append(cert, qe...)
	return p.assemble(signed, cert)
}

// SGXOptions shape an SGX quote.
type SGXOptions struct {
	ReportData []byte // padded to 64 bytes
	ConfigID   []byte // padded to 64 bytes
	MREnclave  []byte
	QESVN      uint16
}

// SGXQuote makes an SGX v3 quote signed by the platform's attestation key.
func (p *Platform) SGXQuote(o SGXOptions) []byte {
	body := make([]byte, dcap.EnclaveBodySize)
	copy(body[0:16], p.TCB[:])
	copy(body[48:64], []byte{0x07, 0, 0, 0, 0, 0, 0, 0, 0xe7, 0, 0, 0, 0, 0, 0, 0})
	mre := o.MREnclave
	if mre == nil {
		mre = bytes.Repeat([]byte{0xe1}, 32)
	}
	copy(body[64:96], mre)
	copy(body[128:160], bytes.Repeat([]byte{0x51}, 32))
	copy(body[192:256], o.ConfigID)
	binary.LittleEndian.PutUint16(body[256:258], 7) // ISVPRODID
	binary.LittleEndian.PutUint16(body[258:260], 3) // ISVSVN
	copy(body[320:384], o.ReportData)
	signed := append(header(3, dcap.TEESGX), body...)
	return p.assemble(signed, p.qeCertData(o.QESVN, 1))
}

func header(version uint16, tee uint32) []byte {
	h := make([]byte, dcap.HeaderSize)
	binary.LittleEndian.PutUint16(h[0:2], version)
	binary.LittleEndian.PutUint16(h[2:4], 2) // ECDSA-256-with-P-256
	if version != 3 {
		binary.LittleEndian.PutUint32(h[4:8], tee)
	}
	copy(h[12:28], intelQE)
	copy(h[28:48], bytes.Repeat([]byte{0x0d}, 16))
	return h
}

// qeCertData is the QE report (signed by the PCK key, binding the
// attestation key), its signature, the QE authentication data and the PCK
// chain (certification data type 5).
func (p *Platform) qeCertData(svn, prodID uint16) []byte {
	if svn == 0 {
		svn = 8
	}
	ak := p.akBytes()
	report := make([]byte, dcap.EnclaveBodySize)
	copy(report[0:16], p.TCB[:])
	copy(report[48:64], []byte{0x11, 0, 0, 0, 0, 0, 0, 0, 0xe7, 0, 0, 0, 0, 0, 0, 0})
	copy(report[64:96], bytes.Repeat([]byte{0xce}, 32))
	copy(report[128:160], QEMRSigner)
	binary.LittleEndian.PutUint16(report[256:258], prodID)
	binary.LittleEndian.PutUint16(report[258:260], svn)
	h := sha256.Sum256(append(append([]byte{}, ak...), p.qeAuthData...))
	copy(report[320:352], h[:])
	out := append(report, sign(p.PCKKey, report)...)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(p.qeAuthData)))
	out = append(out, p.qeAuthData...)
	chain := p.PCKChainPEM()
	out = binary.LittleEndian.AppendUint16(out, 5)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(chain)))
	return append(out, chain...)
}

func (p *Platform) akBytes() []byte {
	b, err := p.AttestationKey.PublicKey.Bytes()
	if err != nil {
		panic(err)
	}
	return b[1:]
}

func (p *Platform) assemble(signed, certData []byte) []byte {
	sd := append(sign(p.AttestationKey, signed), p.akBytes()...)
	sd = append(sd, certData...)
	out := append([]byte{}, signed...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(sd)))
	return append(out, sd...)
}

// sign returns an ECDSA-P256-SHA256 signature as r||s.
func sign(k *ecdsa.PrivateKey, msg []byte) []byte {
	h := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
	if err != nil {
		panic(err)
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out
}

// CollateralOptions shape the collateral. Zero fields take defaults.
type CollateralOptions struct {
	// Status is the status of the TCB level the default platform and TD
	// match (default UpToDate). A TD whose TEE TCB SVN[2] is below 2
	// matches the next level, OutOfDate with advisory INTEL-SA-00001.
	Status string
	// ModuleStatus is the status of TDX module 1.x at ISVSVN 3 and above.
	ModuleStatus string
	// QEStatus is the status of QE ISVSVN 8 and above; lower is OutOfDate.
	QEStatus string
	// IssueDate and NextUpdate of TCB info, QE identity and CRLs (default
	// an hour ago and 30 days on).
	IssueDate, NextUpdate time.Time
	// RevokePCK and RevokePCKCA put the PCK certificate on the PCK CRL, or
	// the PCK CA on the root CRL.
	RevokePCK, RevokePCKCA bool
}

// Collateral returns signed collateral for the platform's TDX or SGX quotes.
func (p *Platform) Collateral(tdx bool, o CollateralOptions) *dcap.Collateral {
	o = p.defaults(o)
	return &dcap.Collateral{
		TCBInfo:      p.signedJSON("tcbInfo", p.tcbInfo(tdx, o)),
		QEIdentity:   p.signedJSON("enclaveIdentity", p.qeIdentity(tdx, o)),
		SigningChain: p.SigningChainPEM(),
		PCKCRL:       p.crl(p.PCKCA, p.PCKCAKey, o.RevokePCK, p.PCK.SerialNumber, o),
		RootCRL:      p.crl(p.Root, p.RootKey, o.RevokePCKCA, p.PCKCA.SerialNumber, o),
	}
}

// SigningChainPEM is the test TCB signing certificate and root.
func (p *Platform) SigningChainPEM() []byte {
	var b bytes.Buffer
	for _, der := range [][]byte{p.signingDER, p.rootDER} {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return b.Bytes()
}

// WriteCollateralDir writes TDX and SGX collateral for the platform into
// dir in the layout of a collateral directory (dcap.Store).
func (p *Platform) WriteCollateralDir(dir string, o CollateralOptions) error {
	fmspc := fmt.Sprintf("%X", p.FMSPC)
	for _, tdx := range []bool{true, false} {
		c := p.Collateral(tdx, o)
		files := map[string][]byte{
			dcap.TCBInfoFile(tdx, fmspc): c.TCBInfo,
			dcap.QEIdentityFile(tdx):     c.QEIdentity,
			dcap.SigningChainFile:        c.SigningChain,
			dcap.PCKCRLFile(p.caKind):    c.PCKCRL,
			dcap.RootCRLFile:             c.RootCRL,
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteSettings prepares dir for a tdx or sgx verifier plugin that trusts
// this platform: the collateral in dir/collateral, the root in
// dir/root.pem. It returns the plugin settings that use them:
// {"collateral_dir":…,"root_ca_file":…}.
func (p *Platform) WriteSettings(dir string, o CollateralOptions) ([]byte, error) {
	col := filepath.Join(dir, "collateral")
	if err := os.MkdirAll(col, 0o755); err != nil {
		return nil, err
	}
	if err := p.WriteCollateralDir(col, o); err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(root, p.RootPEM(), 0o644); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]string{"collateral_dir": col, "root_ca_file": root})
}

// TDXEvidence is a TD quote as CoCo's TDX attester sends it:
// {"quote":"<base64>","cc_eventlog":"<base64>"|null}.
func (p *Platform) TDXEvidence(o TDXOptions, ccel []byte) []byte {
	ev := map[string]any{"quote": base64.StdEncoding.EncodeToString(p.TDXQuote(o)), "cc_eventlog": nil}
	if ccel != nil {
		ev["cc_eventlog"] = base64.StdEncoding.EncodeToString(ccel)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

// SGXEvidence is an SGX quote as CoCo's SGX attester sends it:
// {"quote":"<base64>"}.
func (p *Platform) SGXEvidence(o SGXOptions) []byte {
	b, err := json.Marshal(map[string]string{"quote": base64.StdEncoding.EncodeToString(p.SGXQuote(o))})
	if err != nil {
		panic(err)
	}
	return b
}

func (p *Platform) defaults(o CollateralOptions) CollateralOptions {
	if o.Status == "" {
		o.Status = dcap.StatusUpToDate
	}
	if o.ModuleStatus == "" {
		o.ModuleStatus = dcap.StatusUpToDate
	}
	if o.QEStatus == "" {
		o.QEStatus = dcap.StatusUpToDate
	}
	if o.IssueDate.IsZero() {
		o.IssueDate = p.Now.Add(-time.Hour)
	}
	if o.NextUpdate.IsZero() {
		o.NextUpdate = p.Now.Add(30 * 24 * time.Hour)
	}
	return o
}

type comp struct {
	SVN int `json:"svn"`
}

func comps(svns ...byte) []comp {
	out := make([]comp, 16)
	for i, s := range svns {
		out[i].SVN = int(s)
	}
	return out
}

type level struct {
	TCB         map[string]any `json:"tcb"`
	TCBDate     string         `json:"tcbDate"`
	TCBStatus   string         `json:"tcbStatus"`
	AdvisoryIDs []string       `json:"advisoryIDs,omitempty"`
}

func (p *Platform) tcbInfo(tdx bool, o CollateralOptions) map[string]any {
	date := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	upper := map[string]any{"sgxtcbcomponents": comps(p.TCB[:]...), "pcesvn": int(p.PCESVN)}
	lower := map[string]any{"sgxtcbcomponents": comps(), "pcesvn": 0}
	if tdx {
		upper["tdxtcbcomponents"] = comps(0, 0, 2)
		lower["tdxtcbcomponents"] = comps()
	}
	ti := map[string]any{
		"id": "SGX", "version": 3,
		"issueDate": date(o.IssueDate), "nextUpdate": date(o.NextUpdate),
		"fmspc": fmt.Sprintf("%X", p.FMSPC), "pceId": fmt.Sprintf("%X", p.PCEID),
		"tcbType": 0, "tcbEvaluationDataNumber": 17,
		"tcbLevels": []level{
			{TCB: upper, TCBDate: "2024-03-13T00:00:00Z", TCBStatus: o.Status},
			{TCB: lower, TCBDate: "2018-01-04T00:00:00Z", TCBStatus: dcap.StatusOutOfDate, AdvisoryIDs: []string{"INTEL-SA-00001"}},
		},
	}
	if tdx {
		zero48 := hex.EncodeToString(make([]byte, 48))
		ti["id"] = "TDX"
		ti["tdxModule"] = map[string]any{"mrsigner": zero48, "attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF"}
		ti["tdxModuleIdentities"] = []map[string]any{{
			"id": "TDX_01", "mrsigner": zero48, "attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF",
			"tcbLevels": []level{
				{TCB: map[string]any{"isvsvn": 3}, TCBDate: "2024-03-13T00:00:00Z", TCBStatus: o.ModuleStatus},
				{TCB: map[string]any{"isvsvn": 0}, TCBDate: "2023-08-09T00:00:00Z", TCBStatus: dcap.StatusOutOfDate, AdvisoryIDs: []string{"INTEL-SA-00002"}},
			},
		}}
	}
	return ti
}

func (p *Platform) qeIdentity(tdx bool, o CollateralOptions) map[string]any {
	id, prod := "QE", 1
	if tdx {
		id, prod = "TD_QE", 2
	}
	return map[string]any{
		"id": id, "version": 2,
		"issueDate": o.IssueDate.UTC().Format(time.RFC3339), "nextUpdate": o.NextUpdate.UTC().Format(time.RFC3339),
		"tcbEvaluationDataNumber": 16,
		"miscselect":              "00000000", "miscselectMask": "FFFFFFFF",
		"attributes": "11000000000000000000000000000000", "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
		"mrsigner": fmt.Sprintf("%X", QEMRSigner), "isvprodid": prod,
		"tcbLevels": []level{
			{TCB: map[string]any{"isvsvn": 8}, TCBDate: "2024-03-13T00:00:00Z", TCBStatus: o.QEStatus},
			{TCB: map[string]any{"isvsvn": 0}, TCBDate: "2019-05-15T00:00:00Z", TCBStatus: dcap.StatusOutOfDate, AdvisoryIDs: []string{"INTEL-SA-00003"}},
		},
	}
}

// signedJSON renders {"<member>":{...},"signature":"<hex r||s>"}, signed
// over the member's bytes as rendered.
func (p *Platform) signedJSON(member string, v any) []byte {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	out, err := json.Marshal(map[string]any{member: json.RawMessage(body), "signature": hex.EncodeToString(sign(p.SigningKey, body))})
	if err != nil {
		panic(err)
	}
	return out
}

func (p *Platform) crl(issuer *x509.Certificate, k *ecdsa.PrivateKey, revoke bool, serial *big.Int, o CollateralOptions) []byte {
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: o.IssueDate, NextUpdate: o.NextUpdate}
	if revoke {
		tmpl.RevokedCertificateEntries = []x509.RevocationListEntry{{SerialNumber: serial, RevocationTime: o.IssueDate}}
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, k)
	if err != nil {
		panic(err)
	}
	return der
}
