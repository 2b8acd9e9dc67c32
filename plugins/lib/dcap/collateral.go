package dcap

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gokbs/kbs/sdk"
)

// Collateral is the raw verification collateral for one quote, in the
// encodings Intel's PCS serves it. Sources fill it; the Verifier checks it.
type Collateral struct {
	// TCBInfo and QEIdentity are PCS response bodies:
	// {"tcbInfo":{...},"signature":"<hex r||s>"} and
	// {"enclaveIdentity":{...},"signature":"..."}.
	TCBInfo    []byte
	QEIdentity []byte
	// SigningChain holds the "Intel SGX TCB Signing" certificate (PEM; the
	// TCB-Info-Issuer-Chain header of PCS, root optional).
	SigningChain []byte
	// PCKCRL (for the PCK CA that issued the quote's PCK certificate) and
	// RootCRL (of the Intel SGX Root CA): DER, PEM or hex DER. Nil when
	// revocation is not checked.
	PCKCRL  []byte
	RootCRL []byte
}

// Request names the collateral a quote needs.
type Request struct {
	// TDX selects the TDX TCB info and TD QE identity; SGX otherwise.
	TDX bool
	// FMSPC is upper-case hex, as the PCK certificate gives it.
	FMSPC string
	// CA is "platform" or "processor": the PCK CRL to fetch.
	CA string
	// CRLs asks for the PCK and root CRLs too.
	CRLs bool
}

// tee returns the path segment of PCS URLs and file names: "tdx" or "sgx".
func (r Request) tee() string {
	if r.TDX {
		return "tdx"
	}
	return "sgx"
}

// HexBytes is a hex string in collateral JSON.
type HexBytes []byte

func (h *HexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// TCBInfo is Intel's TCB info, version 3, for SGX ("id":"SGX") or TDX
// ("id":"TDX").
type TCBInfo struct {
	ID                      string              `json:"id"`
	Version                 int                 `json:"version"`
	IssueDate               time.Time           `json:"issueDate"`
	NextUpdate              time.Time           `json:"nextUpdate"`
	FMSPC                   string              `json:"fmspc"`
	PCEID                   string              `json:"pceId"`
	TCBType                 int                 `json:"tcbType"`
	TCBEvaluationDataNumber int                 `json:"tcbEvaluationDataNumber"`
	TDXModule               *TDXModule          `json:"tdxModule"`
	TDXModuleIdentities     []TDXModuleIdentity `json:"tdxModuleIdentities"`
	TCBLevels               []TCBLevel          `json:"tcbLevels"`
}

// TDXModule is the expected identity of the TDX module (SEAM).
type TDXModule struct {
	MRSigner       HexBytes `json:"mrsigner"`
	Attributes     HexBytes `json:"attributes"`
	AttributesMask HexBytes `json:"attributesMask"`
}

// TDXModuleIdentity is the identity and TCB levels of one TDX module
// major version ("TDX_01", "TDX_03", ...).
type TDXModuleIdentity struct {
	ID string `json:"id"`
	TDXModule
	TCBLevels []TCBLevel `json:"tcbLevels"`
}

// TCBLevel is one TCB level of a TCB info or of an enclave identity.
type TCBLevel struct {
	TCB struct {
		SGXComponents []TCBComponent `json:"sgxtcbcomponents"`
		PCESVN        int            `json:"pcesvn"`
		TDXComponents []TCBComponent `json:"tdxtcbcomponents"`
		ISVSVN        int            `json:"isvsvn"`
	} `json:"tcb"`
	TCBDate     time.Time `json:"tcbDate"`
	TCBStatus   string    `json:"tcbStatus"`
	AdvisoryIDs []string  `json:"advisoryIDs"`
}

// TCBComponent is one SVN of a TCB level.
type TCBComponent struct {
	SVN      int    `json:"svn"`
	Category string `json:"category,omitempty"`
	Type     string `json:"type,omitempty"`
}

// EnclaveIdentity is Intel's identity of a quoting enclave (QE for SGX,
// TD_QE for TDX), version 2.
type EnclaveIdentity struct {
	ID                      string     `json:"id"`
	Version                 int        `json:"version"`
	IssueDate               time.Time  `json:"issueDate"`
	NextUpdate              time.Time  `json:"nextUpdate"`
	TCBEvaluationDataNumber int        `json:"tcbEvaluationDataNumber"`
	MiscSelect              HexBytes   `json:"miscselect"`
	MiscSelectMask          HexBytes   `json:"miscselectMask"`
	Attributes              HexBytes   `json:"attributes"`
	AttributesMask          HexBytes   `json:"attributesMask"`
	MRSigner                HexBytes   `json:"mrsigner"`
	ISVProdID               int        `json:"isvprodid"`
	TCBLevels               []TCBLevel `json:"tcbLevels"`
}

// signedBody splits a PCS response into the exact bytes of its signed
// member and the signature. Intel signs the member's bytes as served, so
// they must not be re-encoded.
func signedBody(body []byte, member string) (signed, sig []byte, err error) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, nil, err
	}
	signed = env[member]
	if len(signed) == 0 {
		return nil, nil, fmt.Errorf("no %q member", member)
	}
	var sigHex string
	if err := json.Unmarshal(env["signature"], &sigHex); err != nil {
		return nil, nil, fmt.Errorf("signature: %v", err)
	}
	if sig, err = hex.DecodeString(sigHex); err != nil || len(sig) != 64 {
		return nil, nil, fmt.Errorf("signature is not 64 hex-encoded bytes")
	}
	return signed, sig, nil
}

// ParseTCBInfo parses a TCB info response body without checking its
// signature, and returns the signed bytes and the signature with it.
func ParseTCBInfo(body []byte) (*TCBInfo, []byte, []byte, error) {
	signed, sig, err := signedBody(body, "tcbInfo")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("TCB info: %v", err)
	}
	ti := &TCBInfo{}
	if err := json.Unmarshal(signed, ti); err != nil {
		return nil, nil, nil, fmt.Errorf("TCB info: %v", err)
	}
	if ti.Version != 3 {
		return nil, nil, nil, fmt.Errorf("TCB info: version %d (only 3)", ti.Version)
	}
	if len(ti.TCBLevels) == 0 {
		return nil, nil, nil, fmt.Errorf("TCB info: no TCB levels")
	}
	for i, l := range ti.TCBLevels {
		if len(l.TCB.SGXComponents) != 16 {
			return nil, nil, nil, fmt.Errorf("TCB info: level %d has %d SGX components, want 16", i, len(l.TCB.SGXComponents))
		}
		if ti.ID == "TDX" && len(l.TCB.TDXComponents) != 16 {
			return nil, nil, nil, fmt.Errorf("TCB info: level %d has %d TDX components, want 16", i, len(l.TCB.TDXComponents))
		}
	}
	return ti, signed, sig, nil
}

// ParseEnclaveIdentity parses a QE identity response body without checking
// its signature.
func ParseEnclaveIdentity(body []byte) (*EnclaveIdentity, []byte, []byte, error) {
	signed, sig, err := signedBody(body, "enclaveIdentity")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("QE identity: %v", err)
	}
	ei := &EnclaveIdentity{}
	if err := json.Unmarshal(signed, ei); err != nil {
		return nil, nil, nil, fmt.Errorf("QE identity: %v", err)
	}
	if ei.Version != 2 {
		return nil, nil, nil, fmt.Errorf("QE identity: version %d (only 2)", ei.Version)
	}
	if len(ei.TCBLevels) == 0 {
		return nil, nil, nil, fmt.Errorf("QE identity: no TCB levels")
	}
	if len(ei.MiscSelect) != 4 || len(ei.MiscSelectMask) != 4 || len(ei.Attributes) != 16 ||
		len(ei.AttributesMask) != 16 || len(ei.MRSigner) != 32 {
		return nil, nil, nil, fmt.Errorf("QE identity: miscselect, attributes or mrsigner of the wrong size")
	}
	return ei, signed, sig, nil
}

// CheckCollateralSignature reports whether the signature of a PCS response
// body (member "tcbInfo" or "enclaveIdentity") verifies with cert's key. It
// checks neither the certificate nor any date.
func CheckCollateralSignature(body []byte, member string, cert *x509.Certificate) (bool, error) {
	signed, sig, err := signedBody(body, member)
	if err != nil {
		return false, err
	}
	pub, err := p256Key(cert)
	if err != nil {
		return false, err
	}
	return verifyP256(pub, signed, sig), nil
}

// ParseCRL accepts a CRL as DER, PEM or hex-encoded DER (PCCS serves hex).
func ParseCRL(b []byte) (*x509.RevocationList, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		return x509.ParseRevocationList(blk.Bytes)
	}
	if d, err := hex.DecodeString(string(bytes.TrimSpace(b))); err == nil && len(d) > 0 {
		return x509.ParseRevocationList(d)
	}
	return x509.ParseRevocationList(b)
}

// checked is collateral whose signatures have been verified. It depends on
// the raw Collateral it came from only; time is checked per quote.
type checked struct {
	raw      *Collateral
	tcbInfo  *TCBInfo
	qe       *EnclaveIdentity
	signer   *x509.Certificate // the TCB signing certificate
	pckCRL   *x509.RevocationList
	rootCRL  *x509.RevocationList
	issue    []time.Time // every issue date of the collateral
	expiry   []time.Time // every expiry date of the collateral
	revoked  map[string]bool
	crlsUsed bool
	// crlIssuers are the PCK CAs whose signature on pckCRL has been
	// checked (*x509.Certificate -> bool); the PCK CA is in the quote.
	crlIssuers sync.Map
}

// checkPCKCRLIssuer checks that the PCK CRL is the one of ca.
func (c *checked) checkPCKCRLIssuer(ca *x509.Certificate) error {
	if ok, _ := c.crlIssuers.Load(ca); ok == true {
		return nil
	}
	if !bytes.Equal(c.pckCRL.RawIssuer, ca.RawSubject) || c.pckCRL.CheckSignatureFrom(ca) != nil {
		return sdk.Unavailable("DCAP collateral: the PCK CRL is not signed by %q", ca.Subject.CommonName)
	}
	c.crlIssuers.Store(ca, true)
	return nil
}

// checkCollateral parses raw and verifies Intel's signatures on it: TCB info
// and QE identity by a TCB signing certificate of the trusted roots (valid
// when the collateral was issued), the root CRL by a trusted root. The PCK
// CRL's issuer is in the quote; Verify checks it there.
func checkCollateral(raw *Collateral, req Request, roots *x509.CertPool, trusted []*x509.Certificate) (*checked, error) {
	c := &checked{raw: raw, revoked: map[string]bool{}}
	ti, tiSigned, tiSig, err := ParseTCBInfo(raw.TCBInfo)
	if err != nil {
		return nil, err
	}
	wantID := map[bool]string{true: "TDX", false: "SGX"}[req.TDX]
	if ti.ID != wantID {
		return nil, fmt.Errorf("TCB info: id %q, want %q", ti.ID, wantID)
	}
	if !strings.EqualFold(ti.FMSPC, req.FMSPC) {
		return nil, fmt.Errorf("TCB info: FMSPC %s, want %s", ti.FMSPC, req.FMSPC)
	}
	qe, qeSigned, qeSig, err := ParseEnclaveIdentity(raw.QEIdentity)
	if err != nil {
		return nil, err
	}
	wantQE := map[bool]string{true: "TD_QE", false: "QE"}[req.TDX]
	if qe.ID != wantQE {
		return nil, fmt.Errorf("QE identity: id %q, want %q", qe.ID, wantQE)
	}
	signers, err := ParseCertificatesPEM(raw.SigningChain)
	if err != nil {
		return nil, fmt.Errorf("TCB signing chain: %v", err)
	}
	c.signer, err = pickSigner(signers, roots, tiSigned, tiSig, ti.IssueDate)
	if err != nil {
		return nil, fmt.Errorf("TCB info: %v", err)
	}
	qeSigner, err := pickSigner(signers, roots, qeSigned, qeSig, qe.IssueDate)
	if err != nil {
		return nil, fmt.Errorf("QE identity: %v", err)
	}
	c.tcbInfo, c.qe = ti, qe
	c.issue = []time.Time{ti.IssueDate, qe.IssueDate, c.signer.NotBefore, qeSigner.NotBefore}
	c.expiry = []time.Time{ti.NextUpdate, qe.NextUpdate, c.signer.NotAfter, qeSigner.NotAfter}

	if !req.CRLs {
		return c, nil
	}
	c.crlsUsed = true
	if c.rootCRL, err = ParseCRL(raw.RootCRL); err != nil {
		return nil, fmt.Errorf("root CA CRL: %v", err)
	}
	if c.pckCRL, err = ParseCRL(raw.PCKCRL); err != nil {
		return nil, fmt.Errorf("PCK CRL: %v", err)
	}
	var rootOK bool
	for _, r := range trusted {
		if c.rootCRL.CheckSignatureFrom(r) == nil && bytes.Equal(c.rootCRL.RawIssuer, r.RawSubject) {
			rootOK = true
			break
		}
	}
	if !rootOK {
		return nil, fmt.Errorf("root CA CRL is not signed by a trusted root")
	}
	for _, e := range c.rootCRL.RevokedCertificateEntries {
		c.revoked[e.SerialNumber.String()] = true
	}
	for _, s := range []*x509.Certificate{c.signer, qeSigner} {
		if c.revoked[s.SerialNumber.String()] {
			return nil, fmt.Errorf("TCB signing certificate (serial %s) is revoked", s.SerialNumber)
		}
	}
	c.issue = append(c.issue, c.rootCRL.ThisUpdate, c.pckCRL.ThisUpdate)
	c.expiry = append(c.expiry, c.rootCRL.NextUpdate, c.pckCRL.NextUpdate)
	return c, nil
}

// pickSigner returns the TCB signing certificate that verifies sig over msg
// and chains to the roots at the time the collateral was issued.
func pickSigner(certs []*x509.Certificate, roots *x509.CertPool, msg, sig []byte, issued time.Time) (*x509.Certificate, error) {
	var lastErr error = fmt.Errorf("no %q certificate", TCBSigningCN)
	for _, c := range certs {
		if c.Subject.CommonName != TCBSigningCN {
			continue
		}
		pub, err := p256Key(c)
		if err != nil {
			lastErr = err
			continue
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: issued, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			lastErr = fmt.Errorf("TCB signing certificate: %v", err)
			continue
		}
		if !verifyP256(pub, msg, sig) {
			lastErr = fmt.Errorf("signature does not verify with the TCB signing certificate")
			continue
		}
		return c, nil
	}
	return nil, lastErr
}
