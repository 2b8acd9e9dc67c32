package dcap

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/gokbs/kbs/sdk"
)

// TEE types in the quote header.
const (
	TEESGX uint32 = 0x00000000
	TEETDX uint32 = 0x00000081
)

// Body types of a v5 quote (and the implied body type of v3 and v4 quotes).
const (
	BodySGX    uint16 = 1
	BodyTD10   uint16 = 2
	BodyTD15   uint16 = 3
	attKeyP256        = 2
	// certification data types (Intel DCAP quote library, sgx_quote_4.h)
	certPCKChain      = 5
	certQEReportChain = 6
)

// Sizes of the fixed parts of a quote.
const (
	HeaderSize       = 48
	EnclaveBodySize  = 384
	TD10BodySize     = 584
	TD15BodySize     = 648
	sigSize          = 64
	attKeySize       = 64
	v5DescriptorSize = 6
)

// MaxQuoteSize bounds what ParseQuote accepts. Real quotes are about 5 KiB
// (the PCK chain is most of it); some attesters pad them to 8 KiB.
const MaxQuoteSize = 64 << 10

// intelQEVendorID is the vendor ID of Intel's quoting enclaves.
var intelQEVendorID = []byte{0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07}

// Header is the 48-byte quote header. For SGX v3 quotes TEEType is the
// reserved attestation-key data and Reserved holds QE SVN and PCE SVN.
type Header struct {
	Version    uint16
	AttKeyType uint16
	TEEType    uint32
	Raw        []byte // the 48 header bytes
}

// Field slices of the raw header, named as trustee names its claims.
func (h *Header) RawVersion() []byte    { return h.Raw[0:2] }
func (h *Header) RawAttKeyType() []byte { return h.Raw[2:4] }
func (h *Header) RawTEEType() []byte    { return h.Raw[4:8] }
func (h *Header) Reserved() []byte      { return h.Raw[8:12] }
func (h *Header) VendorID() []byte      { return h.Raw[12:28] }
func (h *Header) UserData() []byte      { return h.Raw[28:48] }

// EnclaveReport is an SGX report body: the body of an SGX quote and the QE
// report. Raw is the 384 bytes it was read from.
type EnclaveReport struct{ Raw []byte }

func (r *EnclaveReport) CPUSVN() []byte        { return r.Raw[0:16] }
func (r *EnclaveReport) MiscSelect() []byte    { return r.Raw[16:20] }
func (r *EnclaveReport) Reserved1() []byte     { return r.Raw[20:32] }
func (r *EnclaveReport) ISVExtProdID() []byte  { return r.Raw[32:48] }
func (r *EnclaveReport) Attributes() []byte    { return r.Raw[48:64] }
func (r *EnclaveReport) MREnclave() []byte     { return r.Raw[64:96] }
func (r *EnclaveReport) Reserved2() []byte     { return r.Raw[96:128] }
func (r *EnclaveReport) MRSigner() []byte      { return r.Raw[128:160] }
func (r *EnclaveReport) Reserved3() []byte     { return r.Raw[160:192] }
func (r *EnclaveReport) ConfigID() []byte      { return r.Raw[192:256] }
func (r *EnclaveReport) RawISVProdID() []byte  { return r.Raw[256:258] }
func (r *EnclaveReport) RawISVSVN() []byte     { return r.Raw[258:260] }
func (r *EnclaveReport) ConfigSVN() []byte     { return r.Raw[260:262] }
func (r *EnclaveReport) Reserved4() []byte     { return r.Raw[262:304] }
func (r *EnclaveReport) ISVFamilyID() []byte   { return r.Raw[304:320] }
func (r *EnclaveReport) ReportData() []byte    { return r.Raw[320:384] }
func (r *EnclaveReport) ISVProdID() uint16     { return binary.LittleEndian.Uint16(r.Raw[256:258]) }
func (r *EnclaveReport) ISVSVN() uint16        { return binary.LittleEndian.Uint16(r.Raw[258:260]) }
func (r *EnclaveReport) MiscSelectU32() uint32 { return binary.LittleEndian.Uint32(r.Raw[16:20]) }

// TDReport is a TD quote body, TDX 1.0 (584 bytes) or 1.5 (648 bytes).
type TDReport struct{ Raw []byte }

func (r *TDReport) TEETCBSVN() []byte      { return r.Raw[0:16] }
func (r *TDReport) MRSEAM() []byte         { return r.Raw[16:64] }
func (r *TDReport) MRSignerSEAM() []byte   { return r.Raw[64:112] }
func (r *TDReport) SEAMAttributes() []byte { return r.Raw[112:120] }
func (r *TDReport) TDAttributes() []byte   { return r.Raw[120:128] }
func (r *TDReport) XFAM() []byte           { return r.Raw[128:136] }
func (r *TDReport) MRTD() []byte           { return r.Raw[136:184] }
func (r *TDReport) MRConfigID() []byte     { return r.Raw[184:232] }
func (r *TDReport) MROwner() []byte        { return r.Raw[232:280] }
func (r *TDReport) MROwnerConfig() []byte  { return r.Raw[280:328] }
func (r *TDReport) RTMR(i int) []byte      { return r.Raw[328+48*i : 376+48*i] }
func (r *TDReport) ReportData() []byte     { return r.Raw[520:584] }

// IsTD15 says whether the body carries the TDX 1.5 fields.
func (r *TDReport) IsTD15() bool { return len(r.Raw) == TD15BodySize }

// TEETCBSVN2 and MRServiceTD exist only in TDX 1.5 bodies; nil otherwise.
func (r *TDReport) TEETCBSVN2() []byte {
	if !r.IsTD15() {
		return nil
	}
	return r.Raw[584:600]
}

func (r *TDReport) MRServiceTD() []byte {
	if !r.IsTD15() {
		return nil
	}
	return r.Raw[600:648]
}

// Quote is a parsed SGX (v3) or TD (v4, v5) ECDSA-P256 quote. Every slice
// points into a private copy of the input, so the caller may reuse its buffer.
type Quote struct {
	Header Header
	// BodyType is BodySGX, BodyTD10 or BodyTD15; for v5 it is the body
	// descriptor's type.
	BodyType uint16
	// Exactly one of Enclave (SGX) and TD is set.
	Enclave *EnclaveReport
	TD      *TDReport

	// Signed is what the attestation key signs: the header, the v5 body
	// descriptor if any, and the body.
	Signed         []byte
	Signature      []byte // r||s, 64 bytes
	AttestationKey []byte // X||Y, 64 bytes
	QEReport       EnclaveReport
	QESignature    []byte // r||s over QEReport.Raw, by the PCK key
	QEAuthData     []byte
	// PCKChain is the PEM chain (PCK leaf, PCK CA, root CA) carried in the
	// certification data, as it appears in the quote.
	PCKChain []byte
}

// IsTDX says whether q is a TD quote.
func (q *Quote) IsTDX() bool { return q.TD != nil }

// ReportData returns the 64-byte report data of either body kind.
func (q *Quote) ReportData() []byte {
	if q.TD != nil {
		return q.TD.ReportData()
	}
	return q.Enclave.ReportData()
}

// reader walks a byte slice and remembers the first error, so that a parser
// reads field after field and checks once.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = sdk.BadEvidence("quote: truncated %s (need %d bytes at offset %d, have %d)", what, n, r.off, len(r.b)-r.off)
		return nil
	}
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s
}

func (r *reader) u16(what string) uint16 {
	if s := r.take(2, what); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if s := r.take(4, what); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

// ParseQuote parses an SGX v3 or TD v4/v5 quote with an ECDSA-P256
// attestation key and a PCK certificate chain in its certification data.
// It checks the layout only; Verifier.Verify checks the signatures. Bytes
// after the signature data are ignored: they are not signed, and attesters
// pad quotes.
func ParseQuote(raw []byte) (*Quote, error) {
	if len(raw) > MaxQuoteSize {
		return nil, sdk.BadEvidence("quote: %d bytes is more than the %d a quote may have", len(raw), MaxQuoteSize)
	}
	b := bytes.Clone(raw)
	r := &reader{b: b}
	q := &Quote{}
	hdr := r.take(HeaderSize, "header")
	if r.err != nil {
		return nil, r.err
	}
	q.Header = Header{
		Version:    binary.LittleEndian.Uint16(hdr[0:2]),
		AttKeyType: binary.LittleEndian.Uint16(hdr[2:4]),
		TEEType:    binary.LittleEndian.Uint32(hdr[4:8]),
		Raw:        hdr,
	}
	if q.Header.AttKeyType != attKeyP256 {
		return nil, sdk.Unsupported("quote: attestation key type %d is not ECDSA-256-with-P-256 (2)", q.Header.AttKeyType)
	}
	if !bytes.Equal(q.Header.VendorID(), intelQEVendorID) {
		return nil, sdk.BadEvidence("quote: QE vendor ID %x is not Intel's", q.Header.VendorID())
	}

	switch q.Header.Version {
	case 3:
		// The v3 header's bytes 4..8 are reserved attestation-key data, not
		// a TEE type; a v3 quote is always SGX.
		q.BodyType = BodySGX
		q.Enclave = &EnclaveReport{Raw: r.take(EnclaveBodySize, "SGX report body")}
	case 4:
		if q.Header.TEEType != TEETDX {
			return nil, sdk.Unsupported("quote: v4 quote with TEE type %#x (only TDX, 0x81)", q.Header.TEEType)
		}
		q.BodyType = BodyTD10
		q.TD = &TDReport{Raw: r.take(TD10BodySize, "TD report body")}
	case 5:
		if q.Header.TEEType != TEETDX {
			return nil, sdk.Unsupported("quote: v5 quote with TEE type %#x (only TDX, 0x81)", q.Header.TEEType)
		}
		q.BodyType = r.u16("body type")
		size := r.u32("body size")
		if r.err != nil {
			return nil, r.err
		}
		want := map[uint16]uint32{BodyTD10: TD10BodySize, BodyTD15: TD15BodySize}[q.BodyType]
		if want == 0 {
			return nil, sdk.Unsupported("quote: v5 body type %d (only TD 1.0 and 1.5 reports, 2 and 3)", q.BodyType)
		}
		if size != want {
			return nil, sdk.BadEvidence("quote: v5 body type %d has size %d, want %d", q.BodyType, size, want)
		}
		q.TD = &TDReport{Raw: r.take(int(size), "TD report body")}
	default:
		return nil, sdk.Unsupported("quote: version %d (only 3, 4 and 5)", q.Header.Version)
	}
	if r.err != nil {
		return nil, r.err
	}
	q.Signed = b[:r.off:r.off]

	sigLen := r.u32("signature data length")
	if r.err != nil {
		return nil, r.err
	}
	sd := &reader{b: r.take(int(min(sigLen, MaxQuoteSize)), "signature data")}
	if r.err != nil {
		return nil, r.err
	}
	q.Signature = sd.take(sigSize, "quote signature")
	q.AttestationKey = sd.take(attKeySize, "attestation key")
	if q.Header.Version == 3 {
		parseQEReportCertData(sd, q)
	} else {
		typ := sd.u16("certification data type")
		size := sd.u32("certification data size")
		if sd.err == nil && typ != certQEReportChain {
			return nil, sdk.Unsupported("quote: certification data type %d (only QE report certification data, 6)", typ)
		}
		inner := &reader{b: sd.take(int(min(size, MaxQuoteSize)), "QE report certification data")}
		if sd.err == nil {
			parseQEReportCertData(inner, q)
			if inner.err == nil && inner.off != len(inner.b) {
				inner.err = sdk.BadEvidence("quote: %d unexpected bytes after the PCK chain", len(inner.b)-inner.off)
			}
			sd.err = inner.err
		}
	}
	if sd.err != nil {
		return nil, sd.err
	}
	if sd.off != len(sd.b) {
		return nil, sdk.BadEvidence("quote: %d unexpected bytes at the end of the signature data", len(sd.b)-sd.off)
	}
	return q, nil
}

// parseQEReportCertData reads the QE report, its signature, the QE
// authentication data and the PCK chain (the layout of v3 signature data
// after the attestation key, and of v4 certification data type 6).
func parseQEReportCertData(r *reader, q *Quote) {
	q.QEReport = EnclaveReport{Raw: r.take(EnclaveBodySize, "QE report")}
	q.QESignature = r.take(sigSize, "QE report signature")
	q.QEAuthData = r.take(int(r.u16("QE authentication data size")), "QE authentication data")
	typ := r.u16("PCK certification data type")
	size := r.u32("PCK certification data size")
	if r.err != nil {
		return
	}
	if typ != certPCKChain {
		r.err = sdk.Unsupported("quote: PCK certification data type %d (only a PCK certificate chain, 5)", typ)
		return
	}
	q.PCKChain = r.take(int(min(size, MaxQuoteSize)), "PCK certificate chain")
	if r.err == nil && len(q.PCKChain) == 0 {
		r.err = sdk.BadEvidence("quote: empty PCK certificate chain")
	}
}

// String names the quote for messages.
func (q *Quote) String() string {
	kind := "SGX"
	if q.TD != nil {
		kind = fmt.Sprintf("TD (body type %d)", q.BodyType)
	}
	return fmt.Sprintf("%s quote v%d", kind, q.Header.Version)
}
