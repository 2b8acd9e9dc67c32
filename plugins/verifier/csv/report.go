package csv

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

const (
	reportSize   = 4096
	teeInfoV1Len = 0x150
	teeInfoV2Len = 0x490
	// The signature covers the TEE info up to these offsets.
	signedV1Len = 0xB4
	signedV2Len = 0x400
	rtmrSize    = 32
)

// extMagic marks an extended (version 2 capable) attestation report.
var extMagic = []byte("ATTESTATION_EXT\x00")

// report is a parsed CSV attestation report. Version 1 reports hide their
// fields by XOR with the firmware's anonce; the fields here are restored.
type report struct {
	version uint32
	data    []byte // the whole 4096-byte report as signed
	anonce  uint32

	userPubkeyDigest, vmID, vmVersion, reportData, mnonce, measure []byte

	policy, sigUsage, sigAlgo uint32
	sig                       sig

	// Version 2 only.
	build       uint32
	rtmrVersion uint16
	reserved0   []byte
	rtmr        [5][]byte
	reserved1   []byte
}

// parseReport parses the report wrapper: magic and flags select the
// layout, data is the report padded to 4096 bytes.
func parseReport(magic []byte, flags uint32, data []byte) (*report, error) {
	if len(data) != reportSize {
		return nil, fmt.Errorf("attestation report is %d bytes, want %d", len(data), reportSize)
	}
	var version uint32
	switch {
	case allZero(magic):
		version = 1
	case bytes.Equal(magic, extMagic) && flags == 0:
		version = 1
	case bytes.Equal(magic, extMagic) && flags == 1:
		version = 2
	default:
		return nil, fmt.Errorf("unknown attestation report format (magic %x, flags %d)", magic, flags)
	}
	r := &report{version: version, data: data}
	le := binary.LittleEndian
	if version == 1 {
		r.anonce = le.Uint32(data[0xBC:])
	}
	unmask := func(b []byte) []byte {
		out := append([]byte(nil), b...)
		if r.anonce != 0 {
			var a [4]byte
			le.PutUint32(a[:], r.anonce)
			for i := range out {
				out[i] ^= a[i%4]
			}
		}
		return out
	}
	r.userPubkeyDigest = unmask(data[0x00:0x20])
	r.vmID = unmask(data[0x20:0x30])
	r.vmVersion = unmask(data[0x30:0x40])
	r.reportData = unmask(data[0x40:0x80])
	r.mnonce = unmask(data[0x80:0x90])
	r.measure = unmask(data[0x90:0xB0])
	r.policy = le.Uint32(data[0xB0:]) ^ r.anonce
	r.sigUsage = le.Uint32(data[0xB4:]) ^ r.anonce
	r.sigAlgo = le.Uint32(data[0xB8:]) ^ r.anonce
	sigAt := 0xC0
	if version == 2 {
		r.build = le.Uint32(data[0xBC:])
		r.rtmrVersion = le.Uint16(data[0xC0:])
		r.reserved0 = data[0xC2:0xD0]
		for i := range r.rtmr {
			off := 0xD0 + i*rtmrSize
			r.rtmr[i] = data[off : off+rtmrSize]
		}
		r.reserved1 = data[0x170:0x400]
		sigAt = 0x400
	}
	r.sig = sig{usage: usagePEK, r: leInt(data[sigAt:]), s: leInt(data[sigAt+slotSize:])}
	return r, nil
}

// signed returns the bytes that the PEK signed.
func (r *report) signed() []byte {
	if r.version == 1 {
		return r.data[:signedV1Len]
	}
	return r.data[:signedV2Len]
}

func bit(v uint32, lo, hi uint) uint32 { return (v >> lo) & (1<<(hi-lo+1) - 1) }

// claims returns trustee's claims for the report.
func (r *report) claims(serial string) map[string]any {
	p := r.policy
	c := map[string]any{
		"version": fmt.Sprint(r.version),
		"policy": map[string]any{
			"nodbg": bit(p, 0, 0), "noks": bit(p, 1, 1), "es": bit(p, 2, 2), "nosend": bit(p, 3, 3),
			"domain": bit(p, 4, 4), "csv": bit(p, 5, 5), "csv3": bit(p, 6, 6), "asid_reuse": bit(p, 7, 7),
			"hsk_version": bit(p, 8, 11), "cek_version": bit(p, 12, 15),
			"api_major": bit(p, 16, 23), "api_minor": bit(p, 24, 31),
		},
		"user_pubkey_digest": hex.EncodeToString(r.userPubkeyDigest),
		"vm_id":              hex.EncodeToString(r.vmID),
		"vm_version":         hex.EncodeToString(r.vmVersion),
		"report_data":        hex.EncodeToString(r.reportData),
		"mnonce":             hex.EncodeToString(r.mnonce),
		"measure":            hex.EncodeToString(r.measure),
		"sig_usage":          hex.EncodeToString(binary.LittleEndian.AppendUint32(nil, r.sigUsage)),
		"sig_algo":           hex.EncodeToString(binary.LittleEndian.AppendUint32(nil, r.sigAlgo)),
		"serial_number":      serial,
	}
	if r.version == 1 {
		c["anonce"] = hex.EncodeToString(binary.LittleEndian.AppendUint32(nil, r.anonce))
		return c
	}
	c["build"] = r.build
	c["rtmr_version"] = r.rtmrVersion
	c["reserved0"] = hex.EncodeToString(r.reserved0)
	for i, m := range r.rtmr {
		c[fmt.Sprintf("rtmr%d", i)] = hex.EncodeToString(m)
	}
	c["reserved1"] = hex.EncodeToString(r.reserved1)
	return c
}
