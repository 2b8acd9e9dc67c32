// Package vtpm verifies the vTPM half of Azure confidential VM evidence
// (TEE types "az-snp-vtpm" and "az-tdx-vtpm"): the TPM quote, the HCL
// report whose variable data carries the vTPM's attestation key, and the
// bindings between them, the runtime-data digest and the init-data digest.
// The hardware half (the SNP report or the TD quote) is verified by
// plugins/lib/snp or plugins/lib/dcap; the plugins run the steps in
// trustee's order:
//
//	ev, _ := vtpm.ParseEvidence(raw, vtpm.SNP)       // v0, v1 or v2 JSON; the HCL report parsed
//	att, _ := ev.VerifyQuote(reportData)             // AK signature, nonce == reportData, PCR digest
//	_ = ev.HCL.CheckBinding(hwReportData)            // SHA-256(var-data) == REPORT_DATA[:32]
//	_ = ev.CheckUserData(reportData)                 // v2: var-data user-data starts with reportData
//	// ... the SNP report or TD quote is verified here ...
//	_ = att.CheckInitData(initDataDigest)            // PCR8 == SHA-256(0^32 || digest)
//	maps.Copy(claims, att.Claims())                  // tpm.pcrNN, report_data, init_data
//
// What this proves, once the hardware report is verified: the quote was
// signed by the key the hardware-rooted HCL report vouches for, over the
// PCR values given and over a nonce equal to the runtime-data digest.
package vtpm

import (
	"bytes"

	"github.com/gokbs/kbs/sdk"
)

// Kind says which hardware report the evidence carries.
type Kind int

const (
	// SNP evidence carries the SNP report inside the HCL report and the
	// VCEK beside it.
	SNP Kind = iota + 1
	// TDX evidence carries a TD quote beside the HCL report.
	TDX
)

func (k Kind) String() string {
	switch k {
	case SNP:
		return "az-snp-vtpm"
	case TDX:
		return "az-tdx-vtpm"
	}
	return "unknown"
}

// MaxEvidenceSize bounds the evidence JSON. The largest real document, a
// version 0 TDX one with integer arrays, is 26 KiB.
const MaxEvidenceSize = 256 << 10

// Size limits of the parts, well above what Azure sends.
const (
	maxMessage   = 1024     // TPMS_ATTEST of a quote: about 160 bytes
	maxSignature = 1024     // RSA 2048: 256 bytes
	maxPCRs      = 24       // the SHA-256 bank
	maxHCLReport = 16 << 10 // 2600 bytes
	maxVCEK      = 16 << 10 // a VCEK PEM with its chain: 6.5 KiB
	maxTDQuote   = 64 << 10 // as plugins/lib/dcap
)

// Quote is the vTPM's TPM2_Quote: Message is the TPMS_ATTEST the AK
// signed, Signature the raw RSASSA-PKCS1-v1_5 signature, PCRs the values of
// the selected PCRs in ascending index order.
type Quote struct {
	Signature []byte
	Message   []byte
	PCRs      [][]byte
}

// Evidence is one Azure vTPM evidence document.
type Evidence struct {
	Kind Kind
	// Version is 0 (the legacy form with integer arrays), 1 or 2 (the HCL
	// variable data's user-data carries the runtime-data digest).
	Version int
	Quote   Quote
	// HCL is the parsed HCL report; its type matches Kind.
	HCL *HCLReport
	// VCEK (SNP) is the VCEK as sent: PEM text (version 0, possibly with
	// the ASK and ARK) or DER (versions 1 and 2).
	VCEK []byte
	// TDQuote (TDX) is the raw TD quote.
	TDQuote []byte
}

// VCEKIsPEM says whether VCEK is PEM text (version 0) rather than DER.
func (e *Evidence) VCEKIsPEM() bool { return e.Version == 0 }

// field names per kind and form.
type names struct {
	quote, hcl, hw string
}

var (
	namesV0  = map[Kind]names{SNP: {"quote", "report", "vcek"}, TDX: {"tpm_quote", "hcl_report", "td_quote"}}
	namesV12 = map[Kind]names{SNP: {"tpm_quote", "hcl_report", "vcek"}, TDX: {"tpm_quote", "hcl_report", "td_quote"}}
)

// ParseEvidence parses the evidence JSON of kind k:
//
//	v1, v2: {"version":1|2,"tpm_quote":{"signature":"<hex>","message":"<hex>","pcrs":["<hex>",...]},
//	         "hcl_report":"<base64url>","vcek":"<base64url DER>"|"td_quote":"<base64url>"}
//	v0 SNP: {"quote":{"signature":[u8],"message":[u8],"pcrs":[[u8;32],...]},"report":[u8],"vcek":"<PEM>"}
//	v0 TDX: {"tpm_quote":{...as v0 SNP's quote},"hcl_report":[u8],"td_quote":[u8]}
//
// A "version" member selects the form; without one the document is
// version 0. Names are matched exactly, a repeated name is an error,
// unknown names are ignored (as serde does). The HCL report is parsed and
// must carry the kind's hardware report. Errors are sdk.BadEvidence, or
// sdk.Unsupported for an unknown version.
func ParseEvidence(data []byte, k Kind) (*Evidence, error) {
	if k != SNP && k != TDX {
		return nil, sdk.Internal("vtpm: unknown evidence kind %d", k)
	}
	if len(data) > MaxEvidenceSize {
		return nil, sdk.BadEvidence("%v evidence: %d bytes, more than %d", k, len(data), MaxEvidenceSize)
	}
	top, err := members(data)
	if err != nil {
		return nil, sdk.BadEvidence("%v evidence: %v", k, err)
	}
	ev := &Evidence{Kind: k}
	if v, ok := top["version"]; ok {
		switch string(bytes.TrimSpace(v)) {
		case "1":
			ev.Version = 1
		case "2":
			ev.Version = 2
		default:
			return nil, sdk.Unsupported("%v evidence: version %s is not supported (1 or 2; none for the legacy form)", k, v)
		}
	}
	n := namesV12[k]
	if ev.Version == 0 {
		n = namesV0[k]
	}
	get := func(name string) ([]byte, error) {
		v, ok := top[name]
		if !ok {
			return nil, sdk.BadEvidence("%v evidence (version %d): %s is missing", k, ev.Version, name)
		}
		return v, nil
	}
	var raw [3][]byte
	for i, name := range []string{n.quote, n.hcl, n.hw} {
		if raw[i], err = get(name); err != nil {
			return nil, err
		}
	}
	bad := func(name string, err error) error {
		return sdk.BadEvidence("%v evidence (version %d): %s: %v", k, ev.Version, name, err)
	}
	if ev.Quote, err = parseQuote(raw[0], ev.Version == 0); err != nil {
		return nil, bad(n.quote, err)
	}
	var hcl []byte
	if ev.Version == 0 {
		hcl, err = intBytes(raw[1], maxHCLReport)
	} else {
		hcl, err = base64URL(raw[1], maxHCLReport)
	}
	if err != nil {
		return nil, bad(n.hcl, err)
	}
	if ev.HCL, err = ParseHCLReport(hcl); err != nil {
		return nil, err
	}
	want := ReportTypeSNP
	if k == TDX {
		want = ReportTypeTDX
	}
	if ev.HCL.Type != want {
		return nil, sdk.BadEvidence("%v evidence: the HCL report carries a %v report", k, ev.HCL.Type)
	}
	var hw []byte
	switch {
	case k == SNP && ev.Version == 0:
		var s string
		if s, err = jsonString(raw[2], maxVCEK); err == nil && s == "" {
			err = errEmpty
		}
		hw = []byte(s)
	case k == SNP:
		hw, err = base64URL(raw[2], maxVCEK)
	case ev.Version == 0:
		hw, err = intBytes(raw[2], maxTDQuote)
	default:
		hw, err = base64URL(raw[2], maxTDQuote)
	}
	if err != nil {
		return nil, bad(n.hw, err)
	}
	if k == SNP {
		ev.VCEK = hw
	} else {
		ev.TDQuote = hw
	}
	return ev, nil
}

// parseQuote reads {"signature","message","pcrs"}: hex strings (v1, v2) or
// integer arrays (v0).
func parseQuote(raw []byte, ints bool) (Quote, error) {
	var q Quote
	m, err := members(raw)
	if err != nil {
		return q, err
	}
	field := func(name string, max int) ([]byte, error) {
		v, ok := m[name]
		if !ok {
			return nil, errMissing(name)
		}
		var b []byte
		if ints {
			b, err = intBytes(v, max)
		} else {
			b, err = hexString(v, max)
		}
		if err != nil {
			return nil, prefix(name, err)
		}
		return b, nil
	}
	if q.Signature, err = field("signature", maxSignature); err != nil {
		return q, err
	}
	if q.Message, err = field("message", maxMessage); err != nil {
		return q, err
	}
	v, ok := m["pcrs"]
	if !ok {
		return q, errMissing("pcrs")
	}
	elems, err := array(v, maxPCRs)
	if err != nil {
		return q, prefix("pcrs", err)
	}
	for i, e := range elems {
		var p []byte
		if ints {
			p, err = intBytes(e, 32)
		} else {
			p, err = hexString(e, 32)
		}
		if err == nil && len(p) != 32 {
			err = errLength(len(p), 32)
		}
		if err != nil {
			return q, prefix("pcrs["+itoa(i)+"]", err)
		}
		q.PCRs = append(q.PCRs, p)
	}
	return q, nil
}
