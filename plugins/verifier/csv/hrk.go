package csv

import (
	"encoding/binary"
	"encoding/hex"
)

// Hygon's root key (HRK), pinned. It is the "HYGON-SSD-HRK" certificate
// that Hygon publishes and trustee embeds (hrk.cert, SHA-256
// 296efa97580464aca0ab5eefe42199ee05862182508d1629f29cf4dc175b10cd); only
// the values needed to verify what it signs are kept here. A test checks
// them against the real certificate when the evidence directory is present.
const (
	hrkKID = "3ae86a9701355cce333a589de21583d7"
	hrkX   = "2df6c2921df2f52a501fcd85e73509c8753a5609db02d7f34cf1a4624de162be" // little-endian
	hrkY   = "46b91eb4684d74384788beb9100c644a38954e16978b4f581570bb573a12ab3b" // little-endian
	hrkUID = "HYGON-SSD-HRK"
)

// builtinHRK rebuilds the HRK as a CA certificate (without its
// self-signature, which the pinning makes moot).
func builtinHRK() *caCert {
	b := make([]byte, caCertSize)
	le := binary.LittleEndian
	le.PutUint32(b[0x00:], 1)
	kid, _ := hex.DecodeString(hrkKID)
	copy(b[0x04:], kid)
	copy(b[0x14:], kid)
	le.PutUint32(b[0x24:], usageHRK)
	le.PutUint32(b[0x40:], groupSM2)
	x, _ := hex.DecodeString(hrkX)
	y, _ := hex.DecodeString(hrkY)
	copy(b[0x44:], x)
	copy(b[0x8C:], y)
	le.PutUint16(b[0xD4:], uint16(len(hrkUID)))
	copy(b[0xD6:], hrkUID)
	c, err := parseCACert(b)
	if err != nil {
		panic("csv: the pinned HRK does not parse: " + err.Error())
	}
	return c
}
