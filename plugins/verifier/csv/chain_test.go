package csv

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// This file builds a complete CSV chain, HRK → HSK → CEK → PEK → report,
// with keys of our own, in Hygon's binary formats and in the JSON the
// guest's attester sends. The real evidence has no HSK/CEK, so the full
// chain is only covered this way.

type signer struct {
	priv  *sm2.PrivateKey
	uid   string
	kid   []byte
	usage uint32
}

func newSigner(t testing.TB, uid string, usage uint32) *signer {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid := make([]byte, 16)
	_, _ = rand.Read(kid)
	return &signer{priv: k, uid: uid, kid: kid, usage: usage}
}

// putLE writes v little-endian into a 72-byte slot.
func putLE(slot []byte, v *big.Int) {
	be := v.FillBytes(make([]byte, coordSize))
	for i := range coordSize {
		slot[i] = be[coordSize-1-i]
	}
}

func (s *signer) sign(t testing.TB, msg []byte) (r, ss *big.Int) {
	t.Helper()
	r, ss, err := sm2.SignWithSM2(rand.Reader, &s.priv.PrivateKey, []byte(s.uid), msg)
	if err != nil {
		t.Fatal(err)
	}
	return r, ss
}

// caCertBytes makes a CA certificate for subject, signed by issuer (the
// subject itself for a root).
func caCertBytes(t testing.TB, subject, issuer *signer) []byte {
	t.Helper()
	b := make([]byte, caCertSize)
	le := binary.LittleEndian
	le.PutUint32(b[0x00:], 1)
	copy(b[0x04:], subject.kid)
	copy(b[0x14:], issuer.kid)
	le.PutUint32(b[0x24:], subject.usage)
	le.PutUint32(b[0x40:], groupSM2)
	putLE(b[0x44:], subject.priv.X)
	putLE(b[0x8C:], subject.priv.Y)
	le.PutUint16(b[0xD4:], uint16(len(subject.uid)))
	copy(b[0xD6:], subject.uid)
	r, s := issuer.sign(t, b[:caBodySize])
	putLE(b[0x240:], r)
	putLE(b[0x288:], s)
	return b
}

// csvCertBytes makes a CSV certificate for subject, signed in slot 0 by
// issuer with the issuer's usage, and in slot 1 by oca when it is set.
func csvCertBytes(t testing.TB, subject, issuer, oca *signer) []byte {
	t.Helper()
	b := make([]byte, csvCertSize)
	le := binary.LittleEndian
	le.PutUint32(b[0x00:], 1)
	b[0x04], b[0x05] = 1, 3
	le.PutUint32(b[0x08:], subject.usage)
	le.PutUint32(b[0x0C:], algoSM2SA)
	le.PutUint32(b[0x10:], groupSM2)
	putLE(b[0x14:], subject.priv.X)
	putLE(b[0x5C:], subject.priv.Y)
	le.PutUint16(b[0xA4:], uint16(len(subject.uid)))
	copy(b[0xA6:], subject.uid)
	for i, by := range []*signer{issuer, oca} {
		if by == nil {
			continue
		}
		off := csvBodySize + i*csvSigSize
		le.PutUint32(b[off:], by.usage)
		le.PutUint32(b[off+4:], algoSM2SA)
		r, s := by.sign(t, b[:csvBodySize])
		putLE(b[off+8:], r)
		putLE(b[off+8+slotSize:], s)
	}
	return b
}

// reportBytes makes a signed report of the given version whose
// report_data is reportData (padded to 64 bytes).
func reportBytes(t testing.TB, version int, pek *signer, reportData []byte, anonce uint32) (magic []byte, flags uint32, data []byte) {
	t.Helper()
	data = make([]byte, reportSize)
	le := binary.LittleEndian
	for i := range 0x20 {
		data[i] = byte(i) // user_pubkey_digest
	}
	copy(data[0x20:], "vm-id-0123456789")
	copy(data[0x30:], "vm-version-00001")
	copy(data[0x40:0x80], reportData)
	copy(data[0x80:], "mnonce-012345678")
	for i := range 0x20 {
		data[0x90+i] = 0xA0 + byte(i) // measure
	}
	le.PutUint32(data[0xB0:], 0x0104_0031) // policy: nodbg, domain, csv; API 4.1
	le.PutUint32(data[0xB4:], usagePEK)
	le.PutUint32(data[0xB8:], algoSM2SA)
	magic = make([]byte, 16)
	signedLen, sigAt := signedV1Len, 0xC0
	if version == 2 {
		copy(magic, extMagic)
		flags = 1
		le.PutUint32(data[0xBC:], 2024) // build
		le.PutUint16(data[0xC0:], 1)    // rtmr_version
		for i := range 5 {
			for j := range rtmrSize {
				data[0xD0+i*rtmrSize+j] = byte(0x10*(i+1) + j)
			}
		}
		signedLen, sigAt = signedV2Len, 0x400
	} else if anonce != 0 {
		// Version 1 hides the fields behind the firmware's nonce.
		var a [4]byte
		le.PutUint32(a[:], anonce)
		for i := range 0xB0 {
			data[i] ^= a[i%4]
		}
		for _, off := range []int{0xB0, 0xB4, 0xB8} {
			le.PutUint32(data[off:], le.Uint32(data[off:])^anonce)
		}
		le.PutUint32(data[0xBC:], anonce)
	}
	r, s := pek.sign(t, data[:signedLen])
	putLE(data[sigAt:], r)
	putLE(data[sigAt+slotSize:], s)
	return magic, flags, data
}

func ints(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

func keyJSON(b []byte) map[string]any {
	return map[string]any{"g": binary.LittleEndian.Uint32(b), "x": ints(b[4 : 4+slotSize]), "y": ints(b[4+slotSize : 4+2*slotSize])}
}

// caCertJSON is the serde form of a binary CA certificate.
func caCertJSON(b []byte) map[string]any {
	le := binary.LittleEndian
	return map[string]any{
		"body": map[string]any{
			"preamble": map[string]any{"ver": le.Uint32(b), "data": map[string]any{
				"kid": ints(b[0x04:0x14]), "sid": ints(b[0x14:0x24]), "usage": le.Uint32(b[0x24:]), "reserved": ints(b[0x28:0x40]),
			}},
			"pubkey":   keyJSON(b[0x40:]),
			"uid_size": le.Uint16(b[0xD4:]),
			"user_id":  ints(b[0xD6 : 0xD6+uidFieldSize]),
			"reserved": ints(b[0x1D4:0x240]),
		},
		"signature": map[string]any{"r": ints(b[0x240:0x288]), "s": ints(b[0x288:0x2D0])},
		"_reserved": ints(b[0x2D0:]),
	}
}

// csvCertJSON is the serde form of a binary CSV certificate.
func csvCertJSON(b []byte) map[string]any {
	le := binary.LittleEndian
	var sigs []any
	for i := range 2 {
		s := b[csvBodySize+i*csvSigSize:]
		sigs = append(sigs, map[string]any{
			"usage": le.Uint32(s), "algo": le.Uint32(s[4:]),
			"signature": map[string]any{"r": ints(s[8 : 8+slotSize]), "s": ints(s[8+slotSize : 8+2*slotSize])},
			"_reserved": ints(s[8+2*slotSize : csvSigSize]),
		})
	}
	return map[string]any{
		"body": map[string]any{"ver": le.Uint32(b), "data": map[string]any{
			"firmware":  map[string]any{"major": b[4], "minor": b[5]},
			"reserved1": le.Uint16(b[6:]),
			"pubkey":    map[string]any{"usage": le.Uint32(b[8:]), "algo": le.Uint32(b[0xC:]), "key": keyJSON(b[0x10:])},
			"uid_size":  le.Uint16(b[0xA4:]),
			"user_id":   ints(b[0xA6 : 0xA6+uidFieldSize]),
			"sid":       ints(b[0x1A4:0x1B4]),
			"reserved2": ints(b[0x1B4:csvBodySize]),
		}},
		"sigs": sigs,
	}
}

// testChain is a generated chain and what to configure to trust it.
type testChain struct {
	hrk, hsk, cek, pek, oca *signer
	hrkCert, hskCert        []byte
	cekCert, pekCert        []byte
	hrkPath                 string // the root, for hrk_path
	chip                    string
}

func newTestChain(t testing.TB) *testChain {
	t.Helper()
	c := &testChain{
		hrk:  newSigner(t, "TEST-SSD-HRK", usageHRK),
		hsk:  newSigner(t, "TEST-SSD-HSK", usageHSK),
		cek:  newSigner(t, "TEST-SSD-CEK", usageCEK),
		pek:  newSigner(t, "TEST-SSD-PEK", usagePEK),
		oca:  newSigner(t, "TEST-OCA", 0x1001),
		chip: "TST0000000001",
	}
	c.hrkCert = caCertBytes(t, c.hrk, c.hrk)
	c.hskCert = caCertBytes(t, c.hsk, c.hrk)
	c.cekCert = csvCertBytes(t, c.cek, c.hsk, nil)
	c.pekCert = csvCertBytes(t, c.pek, c.cek, c.oca)
	c.hrkPath = filepath.Join(t.TempDir(), "hrk.cert")
	if err := os.WriteFile(c.hrkPath, c.hrkCert, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *testChain) hskCEK() []byte { return append(append([]byte{}, c.hskCert...), c.cekCert...) }

// evidenceOpts shape one piece of evidence.
type evidenceOpts struct {
	version    int
	anonce     uint32
	withHSKCEK bool
	pekCert    []byte // another PEK certificate
	reportFix  func(data []byte)
	chip       string
}

// evidence returns the evidence JSON for a report bound to reportData.
func (c *testChain) evidence(t testing.TB, reportData []byte, o evidenceOpts) []byte {
	t.Helper()
	if o.version == 0 {
		o.version = 1
	}
	magic, flags, data := reportBytes(t, o.version, c.pek, reportData, o.anonce)
	if o.reportFix != nil {
		o.reportFix(data)
	}
	pek := c.pekCert
	if o.pekCert != nil {
		pek = o.pekCert
	}
	chain := map[string]any{"pek": csvCertJSON(pek)}
	if o.withHSKCEK {
		chain["hsk_cek"] = map[string]any{"hsk": caCertJSON(c.hskCert), "cek": csvCertJSON(c.cekCert)}
	}
	chip := c.chip
	if o.chip != "" {
		chip = o.chip
	}
	sn := make([]byte, 64)
	copy(sn, chip)
	ev := map[string]any{
		"attestation_report": map[string]any{"magic": ints(magic), "flags": flags, "data": ints(data)},
		"cert_chain":         chain,
		"serial_number":      ints(sn),
		"cc_eventlog":        nil,
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
