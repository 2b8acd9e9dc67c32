package vtpm

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"

	"github.com/gokbs/kbs/sdk"
)

// The HCL report (Azure's paravisor, "HCL" attestation report): a 32-byte
// header, the hardware report in a 1184-byte area, then the IGVM request
// data whose variable data (JSON) the hardware report's REPORT_DATA binds
// by its SHA-256. Little-endian throughout.
const (
	hclHeaderSize   = 32
	hwAreaSize      = 1184 // the larger of an SNP report (1184) and a TDREPORT (1024)
	igvmOffset      = hclHeaderSize + hwAreaSize
	igvmHeaderSize  = 20
	varDataOffset   = igvmOffset + igvmHeaderSize
	snpReportSize   = 1184
	tdReportSize    = 1024
	hashTypeSHA256  = 1
	akKeyID         = "HCLAkPub"
	minAKModulusBit = 2048
)

// hclMagic is "HCLA" as the header's first little-endian u32.
var hclMagic = []byte("HCLA")

// ReportType is the IGVM report type of the hardware report.
type ReportType uint32

const (
	ReportTypeSNP ReportType = 2
	ReportTypeTDX ReportType = 4
)

func (t ReportType) String() string {
	switch t {
	case ReportTypeSNP:
		return "SNP"
	case ReportTypeTDX:
		return "TDX"
	}
	return fmt.Sprintf("type-%d", uint32(t))
}

// HCLReport is a parsed HCL report. Only the variable data is bound to the
// hardware report (through REPORT_DATA); the header fields are not signed
// by anything and are used only to find the parts.
type HCLReport struct {
	Raw  []byte
	Type ReportType
	// HWReport is the SNP ATTESTATION_REPORT (1184 bytes) or the TDREPORT
	// (1024 bytes).
	HWReport []byte
	// VarData is the variable data: JSON with the vTPM's keys ("keys",
	// JWKs; "HCLAkPub" is the attestation key), "vm-configuration" and
	// "user-data" (hex).
	VarData []byte
}

// ParseHCLReport parses an HCL report: the "HCLA" signature, an SNP or TDX
// report type, SHA-256 as the report-data hash, and variable data that
// fits. Errors are sdk.BadEvidence, or sdk.Unsupported for other hash
// types.
func ParseHCLReport(raw []byte) (*HCLReport, error) {
	if len(raw) < varDataOffset {
		return nil, sdk.BadEvidence("HCL report: %d bytes, want at least %d", len(raw), varDataOffset)
	}
	if subtle.ConstantTimeCompare(raw[:4], hclMagic) != 1 {
		return nil, sdk.BadEvidence("HCL report: signature %q is not %q", raw[:4], hclMagic)
	}
	le := binary.LittleEndian
	h := &HCLReport{Raw: raw, Type: ReportType(le.Uint32(raw[igvmOffset+8:]))}
	switch h.Type {
	case ReportTypeSNP:
		h.HWReport = raw[hclHeaderSize : hclHeaderSize+snpReportSize]
	case ReportTypeTDX:
		h.HWReport = raw[hclHeaderSize : hclHeaderSize+tdReportSize]
	default:
		return nil, sdk.BadEvidence("HCL report: report type %d is neither SNP (2) nor TDX (4)", uint32(h.Type))
	}
	if ht := le.Uint32(raw[igvmOffset+12:]); ht != hashTypeSHA256 {
		return nil, sdk.Unsupported("HCL report: report-data hash type %d is not SHA-256 (1)", ht)
	}
	n := uint64(le.Uint32(raw[igvmOffset+16:]))
	if n > uint64(len(raw)-varDataOffset) {
		return nil, sdk.BadEvidence("HCL report: %d bytes of variable data do not fit in %d", n, len(raw)-varDataOffset)
	}
	h.VarData = raw[varDataOffset : varDataOffset+int(n)]
	return h, nil
}

// VarDataDigest is SHA-256 of the variable data.
func (h *HCLReport) VarDataDigest() [32]byte { return sha256.Sum256(h.VarData) }

// CheckBinding checks that the hardware report's REPORT_DATA starts with
// SHA-256 of the variable data, which is how the hardware vouches for the
// attestation key. The other 32 bytes are not looked at, as in trustee.
func (h *HCLReport) CheckBinding(hwReportData []byte) error {
	d := h.VarDataDigest()
	if len(hwReportData) < len(d) || subtle.ConstantTimeCompare(d[:], hwReportData[:len(d)]) != 1 {
		return sdk.BadEvidence("HCL report: SHA-256 of the variable data does not match the %v report's REPORT_DATA", h.Type)
	}
	return nil
}

// varData is the part of the variable data read here.
type varData struct {
	Keys []struct {
		KeyID string `json:"kid"`
		Type  string `json:"kty"`
		N     string `json:"n"`
		E     string `json:"e"`
	} `json:"keys"`
	UserData *string `json:"user-data"`
}

func (h *HCLReport) varData() (*varData, error) {
	var vd varData
	if err := json.Unmarshal(h.VarData, &vd); err != nil {
		return nil, sdk.BadEvidence("HCL variable data: %v", err)
	}
	return &vd, nil
}

// AKPub returns the vTPM's attestation key: the RSA JWK "HCLAkPub" of the
// variable data, at least 2048 bits.
func (h *HCLReport) AKPub() (*rsa.PublicKey, error) {
	vd, err := h.varData()
	if err != nil {
		return nil, err
	}
	for _, k := range vd.Keys {
		if k.KeyID != akKeyID {
			continue
		}
		if k.Type != "RSA" {
			return nil, sdk.Unsupported("HCL variable data: the attestation key is %q, not RSA", k.Type)
		}
		n, err1 := base64.RawURLEncoding.Strict().DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.Strict().DecodeString(k.E)
		if err1 != nil || err2 != nil || len(n) == 0 || n[0] == 0 || len(e) == 0 || len(e) > 4 || e[0] == 0 {
			return nil, sdk.BadEvidence("HCL variable data: the attestation key is not a valid RSA JWK")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n)}
		for _, b := range e {
			pub.E = pub.E<<8 | int(b)
		}
		if pub.N.BitLen() < minAKModulusBit || pub.E < 3 || pub.E&1 == 0 {
			return nil, sdk.BadEvidence("HCL variable data: the attestation key (%d bits, exponent %d) is too weak", pub.N.BitLen(), pub.E)
		}
		return pub, nil
	}
	return nil, sdk.BadEvidence("HCL variable data: no %s key", akKeyID)
}

// UserData returns the variable data's "user-data", hex-decoded.
func (h *HCLReport) UserData() ([]byte, error) {
	vd, err := h.varData()
	if err != nil {
		return nil, err
	}
	if vd.UserData == nil {
		return nil, sdk.BadEvidence("HCL variable data: no user-data")
	}
	b, err := hex.DecodeString(*vd.UserData)
	if err != nil {
		return nil, sdk.BadEvidence("HCL variable data: user-data is not hex")
	}
	return b, nil
}

// BuildHCLReport makes an HCL report around a hardware report and
// variable data, laid out as Azure's paravisor does (for tests and tools;
// it is not signed by anything, the hardware report binds it).
func BuildHCLReport(t ReportType, hwReport, varData []byte) []byte {
	b := make([]byte, varDataOffset+len(varData))
	le := binary.LittleEndian
	copy(b, hclMagic)
	le.PutUint32(b[4:], 1)                                            // header version
	le.PutUint32(b[8:], uint32(len(b)))                               // report size
	le.PutUint32(b[12:], 2)                                           // request type: key release
	copy(b[hclHeaderSize:igvmOffset], hwReport)                       // the hardware report area
	le.PutUint32(b[igvmOffset:], uint32(igvmHeaderSize+len(varData))) // data size
	le.PutUint32(b[igvmOffset+4:], 1)                                 // version
	le.PutUint32(b[igvmOffset+8:], uint32(t))
	le.PutUint32(b[igvmOffset+12:], hashTypeSHA256)
	le.PutUint32(b[igvmOffset+16:], uint32(len(varData)))
	copy(b[varDataOffset:], varData)
	return b
}
