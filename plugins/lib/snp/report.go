package snp

import (
	"encoding/binary"
	"fmt"

	"github.com/google/go-sev-guest/abi"

	"github.com/gokbs/kbs/sdk"
)

// ReportSize is the size of an SEV-SNP ATTESTATION_REPORT in its ABI form.
const ReportSize = abi.ReportSize

// signedSize is how many leading report bytes the signature covers.
const signedSize = 0x2A0

// Report versions the library can parse. Version 2 lacks the CPUID fields
// that say which processor generation signed it.
const (
	MinParsableVersion = 2
	MaxParsableVersion = 5
)

// Generation is the AMD EPYC processor generation that produced a report.
type Generation int

const (
	// GenerationUnknown: a version 2 report, until its endorsement key
	// certificate names the product.
	GenerationUnknown Generation = iota
	Milan
	Genoa
	Turin
)

func (g Generation) String() string {
	switch g {
	case Milan:
		return "Milan"
	case Genoa:
		return "Genoa"
	case Turin:
		return "Turin"
	}
	return "unknown"
}

// generationFromCPUID maps CPUID family and model (the combined extended
// values the report carries) to a generation.
func generationFromCPUID(family, model uint8) (Generation, bool) {
	switch family {
	case 0x19:
		switch {
		case model <= 0x0F:
			return Milan, true
		case model >= 0x10 && model <= 0x1F, model >= 0xA0 && model <= 0xAF:
			return Genoa, true
		}
	case 0x1A:
		if model <= 0x11 {
			return Turin, true
		}
	}
	return GenerationUnknown, false
}

func parseGeneration(name string) (Generation, bool) {
	switch name {
	case "Milan":
		return Milan, true
	case "Genoa":
		return Genoa, true
	case "Turin":
		return Turin, true
	}
	return GenerationUnknown, false
}

// Signer is the key that signed a report (KEY_INFO.SIGNING_KEY).
type Signer uint8

const (
	SignerVCEK Signer = 0
	SignerVLEK Signer = 1
	SignerNone Signer = 7
)

func (s Signer) String() string {
	switch s {
	case SignerVCEK:
		return "VCEK"
	case SignerVLEK:
		return "VLEK"
	case SignerNone:
		return "none"
	}
	return fmt.Sprintf("reserved(%d)", uint8(s))
}

// TCB is a TCB_VERSION. FMC exists on Turin only; it is 0 elsewhere.
type TCB struct {
	FMC, Bootloader, TEE, SNP, Microcode uint8
}

// decodeTCB reads the 8-byte TCB_VERSION. Turin moved the fields to make
// room for the FMC SPL; the reserved bytes are not kept, as the sev crate
// does not keep them either.
func decodeTCB(b []byte, turin bool) TCB {
	if turin {
		return TCB{FMC: b[0], Bootloader: b[1], TEE: b[2], SNP: b[3], Microcode: b[7]}
	}
	return TCB{Bootloader: b[0], TEE: b[1], SNP: b[6], Microcode: b[7]}
}

func (t TCB) encode(b []byte, turin bool) {
	clear(b[:8])
	if turin {
		b[0], b[1], b[2], b[3], b[7] = t.FMC, t.Bootloader, t.TEE, t.SNP, t.Microcode
		return
	}
	b[0], b[1], b[6], b[7] = t.Bootloader, t.TEE, t.SNP, t.Microcode
}

// Version is a firmware version (CURRENT_* / COMMITTED_* fields).
type Version struct {
	Major, Minor, Build uint8
}

// Report is a parsed SEV-SNP attestation report. Raw holds (a copy of) the
// exact ABI bytes, whose first 0x2A0 bytes the signature covers.
type Report struct {
	Raw []byte

	Version         uint32
	GuestSVN        uint32
	Policy          uint64
	FamilyID        [16]byte
	ImageID         [16]byte
	VMPL            uint32
	SigAlgo         uint32
	CurrentTCB      TCB
	PlatformInfo    uint64
	KeyInfo         uint32
	ReportData      [64]byte
	Measurement     [48]byte
	HostData        [32]byte
	IDKeyDigest     [48]byte
	AuthorKeyDigest [48]byte
	ReportID        [32]byte
	ReportIDMA      [32]byte
	ReportedTCB     TCB
	// CPUID family, model and stepping: version 3 and later only.
	CPUIDFamily, CPUIDModel, CPUIDStepping uint8
	ChipID                                 [64]byte
	CommittedTCB                           TCB
	Current, Committed                     Version
	LaunchTCB                              TCB
	// Mitigation vectors: version 5 and later only.
	LaunchMitVector, CurrentMitVector uint64
	// Signature R and S, little-endian, zero-padded to 72 bytes.
	SignatureR, SignatureS [72]byte

	// Generation comes from the CPUID fields (version 3 and later) or, for
	// version 2, from the endorsement key certificate once verified.
	Generation Generation
	// Signer is the key the report says signed it.
	Signer Signer

	// turinLayout says how the TCB fields are laid out, which the sev crate
	// decides from the generation, or for version 2 from the shape of
	// CHIP_ID (Turin uses only its first 8 bytes).
	turinLayout bool
}

// chipIDTurinLike is the sev crate's rule for version 2 reports: a non-zero
// CHIP_ID whose bytes past the first 8 are all zero is Turin's.
func chipIDTurinLike(id []byte) bool {
	return !allZero(id[:8]) && allZero(id[8:])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ParseReport parses a raw ATTESTATION_REPORT. It checks the structure
// (size, version, reserved bytes, policy and key-info encodings) but not the
// signature. Errors are sdk.BadEvidence, or sdk.Unsupported for a version
// or processor the library does not know.
func ParseReport(raw []byte) (*Report, error) {
	if len(raw) != ReportSize {
		return nil, sdk.BadEvidence("snp report: %d bytes, want %d", len(raw), ReportSize)
	}
	le := binary.LittleEndian
	r := &Report{Raw: append([]byte(nil), raw...), Version: le.Uint32(raw[0x00:])}
	raw = r.Raw
	if r.Version < MinParsableVersion || r.Version > MaxParsableVersion {
		return nil, sdk.Unsupported("snp report: version %d is not supported (%d to %d)", r.Version, MinParsableVersion, MaxParsableVersion)
	}
	// go-sev-guest checks every must-be-zero range and the policy and
	// key-info encodings.
	if _, err := abi.ReportToProto(raw); err != nil {
		return nil, sdk.BadEvidence("snp report: %v", err)
	}
	r.GuestSVN = le.Uint32(raw[0x04:])
	r.Policy = le.Uint64(raw[0x08:])
	copy(r.FamilyID[:], raw[0x10:])
	copy(r.ImageID[:], raw[0x20:])
	r.VMPL = le.Uint32(raw[0x30:])
	r.SigAlgo = le.Uint32(raw[0x34:])
	r.PlatformInfo = le.Uint64(raw[0x40:])
	r.KeyInfo = le.Uint32(raw[0x48:])
	r.Signer = Signer((r.KeyInfo >> 2) & 7)
	copy(r.ReportData[:], raw[0x50:])
	copy(r.Measurement[:], raw[0x90:])
	copy(r.HostData[:], raw[0xC0:])
	copy(r.IDKeyDigest[:], raw[0xE0:])
	copy(r.AuthorKeyDigest[:], raw[0x110:])
	copy(r.ReportID[:], raw[0x140:])
	copy(r.ReportIDMA[:], raw[0x160:])
	copy(r.ChipID[:], raw[0x1A0:])
	if r.Version >= 3 {
		r.CPUIDFamily, r.CPUIDModel, r.CPUIDStepping = raw[0x188], raw[0x189], raw[0x18A]
		g, ok := generationFromCPUID(r.CPUIDFamily, r.CPUIDModel)
		if !ok {
			return nil, sdk.Unsupported("snp report: CPUID family 0x%02x model 0x%02x is not a known SEV-SNP processor", r.CPUIDFamily, r.CPUIDModel)
		}
		r.Generation = g
		r.turinLayout = g == Turin
	} else {
		r.turinLayout = chipIDTurinLike(r.ChipID[:])
	}
	r.CurrentTCB = decodeTCB(raw[0x38:], r.turinLayout)
	r.ReportedTCB = decodeTCB(raw[0x180:], r.turinLayout)
	r.CommittedTCB = decodeTCB(raw[0x1E0:], r.turinLayout)
	r.Current = Version{Build: raw[0x1E8], Minor: raw[0x1E9], Major: raw[0x1EA]}
	r.Committed = Version{Build: raw[0x1EC], Minor: raw[0x1ED], Major: raw[0x1EE]}
	r.LaunchTCB = decodeTCB(raw[0x1F0:], r.turinLayout)
	if r.Version >= 5 {
		r.LaunchMitVector = le.Uint64(raw[0x1F8:])
		r.CurrentMitVector = le.Uint64(raw[0x200:])
	}
	copy(r.SignatureR[:], raw[0x2A0:])
	copy(r.SignatureS[:], raw[0x2E8:])
	return r, nil
}

// marshal writes r's fields into a new ABI report the way the sev crate
// does (AttestationReport::write_bytes): the version selects which optional
// fields exist and the processor generation selects the TCB layout.
// Everything else is zero.
func (r *Report) marshal() ([]byte, error) {
	if r.Version < MinParsableVersion || r.Version > MaxParsableVersion {
		return nil, sdk.Unsupported("snp report: version %d is not supported (%d to %d)", r.Version, MinParsableVersion, MaxParsableVersion)
	}
	turin := chipIDTurinLike(r.ChipID[:])
	if r.Version >= 3 {
		g, ok := generationFromCPUID(r.CPUIDFamily, r.CPUIDModel)
		if !ok {
			return nil, sdk.Unsupported("snp report: CPUID family 0x%02x model 0x%02x is not a known SEV-SNP processor", r.CPUIDFamily, r.CPUIDModel)
		}
		turin = g == Turin
	}
	le := binary.LittleEndian
	b := make([]byte, ReportSize)
	le.PutUint32(b[0x00:], r.Version)
	le.PutUint32(b[0x04:], r.GuestSVN)
	le.PutUint64(b[0x08:], r.Policy)
	copy(b[0x10:], r.FamilyID[:])
	copy(b[0x20:], r.ImageID[:])
	le.PutUint32(b[0x30:], r.VMPL)
	le.PutUint32(b[0x34:], r.SigAlgo)
	r.CurrentTCB.encode(b[0x38:], turin)
	le.PutUint64(b[0x40:], r.PlatformInfo)
	le.PutUint32(b[0x48:], r.KeyInfo)
	copy(b[0x50:], r.ReportData[:])
	copy(b[0x90:], r.Measurement[:])
	copy(b[0xC0:], r.HostData[:])
	copy(b[0xE0:], r.IDKeyDigest[:])
	copy(b[0x110:], r.AuthorKeyDigest[:])
	copy(b[0x140:], r.ReportID[:])
	copy(b[0x160:], r.ReportIDMA[:])
	r.ReportedTCB.encode(b[0x180:], turin)
	if r.Version >= 3 {
		b[0x188], b[0x189], b[0x18A] = r.CPUIDFamily, r.CPUIDModel, r.CPUIDStepping
	}
	copy(b[0x1A0:], r.ChipID[:])
	r.CommittedTCB.encode(b[0x1E0:], turin)
	b[0x1E8], b[0x1E9], b[0x1EA] = r.Current.Build, r.Current.Minor, r.Current.Major
	b[0x1EC], b[0x1ED], b[0x1EE] = r.Committed.Build, r.Committed.Minor, r.Committed.Major
	r.LaunchTCB.encode(b[0x1F0:], turin)
	if r.Version >= 5 {
		le.PutUint64(b[0x1F8:], r.LaunchMitVector)
		le.PutUint64(b[0x200:], r.CurrentMitVector)
	}
	copy(b[0x2A0:], r.SignatureR[:])
	copy(b[0x2E8:], r.SignatureS[:])
	return b, nil
}
