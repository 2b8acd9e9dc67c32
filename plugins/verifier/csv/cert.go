package csv

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/emmansun/gmsm/sm2"
)

// Key usages and algorithms of Hygon's certificate formats.
const (
	usageHRK uint32 = 0x0000
	usageHSK uint32 = 0x0013
	usagePEK uint32 = 0x1002
	usageCEK uint32 = 0x1004

	algoSM2SA uint32 = 0x0004
	groupSM2  uint32 = 3

	// Certificates and signatures keep every integer little-endian in
	// 72-byte slots, of which SM2-256 uses the first 32 bytes.
	slotSize  = 72
	coordSize = 32
)

// Sizes of the binary certificate formats.
const (
	caCertSize   = 832 // HRK and HSK
	caBodySize   = 0x240
	csvCertSize  = 2084 // CEK, PEK
	csvBodySize  = 0x414
	csvSigSize   = 520
	hskCEKSize   = caCertSize + csvCertSize
	uidFieldSize = 254
)

// pubKey is an SM2 public key with the identity that signatures made with
// it are bound to (SM2's Z value hashes the signer's user ID).
type pubKey struct {
	key   *ecdsa.PublicKey
	usage uint32
	uid   []byte
}

// sig is one SM2 signature as a certificate or report stores it.
type sig struct {
	usage, algo uint32
	r, s        *big.Int
}

func (k *pubKey) verify(msg []byte, sg sig) bool {
	return sm2.VerifyWithSM2(k.key, k.uid, msg, sg.r, sg.s)
}

// leInt reads a little-endian integer of coordSize bytes from a slot.
func leInt(slot []byte) *big.Int {
	b := make([]byte, coordSize)
	for i := range coordSize {
		b[coordSize-1-i] = slot[i]
	}
	return new(big.Int).SetBytes(b)
}

// parseKey builds an SM2 public key from a group id and two coordinate
// slots, refusing points that are not on the curve.
func parseKey(group uint32, x, y []byte) (*ecdsa.PublicKey, error) {
	if group != groupSM2 {
		return nil, fmt.Errorf("key group %d is not SM2-256", group)
	}
	if !allZero(x[coordSize:slotSize]) || !allZero(y[coordSize:slotSize]) {
		return nil, errors.New("key coordinate wider than 256 bits")
	}
	pub := &ecdsa.PublicKey{Curve: sm2.P256(), X: leInt(x), Y: leInt(y)}
	if !pub.Curve.IsOnCurve(pub.X, pub.Y) {
		return nil, errors.New("key is not a point of the SM2 curve")
	}
	return pub, nil
}

func parseUID(size uint16, field []byte) ([]byte, error) {
	if int(size) > len(field) {
		return nil, fmt.Errorf("user id size %d exceeds its field", size)
	}
	return field[:size], nil
}

func parseSig(b []byte) sig {
	return sig{
		usage: binary.LittleEndian.Uint32(b[0:]),
		algo:  binary.LittleEndian.Uint32(b[4:]),
		r:     leInt(b[8 : 8+slotSize]),
		s:     leInt(b[8+slotSize : 8+2*slotSize]),
	}
}

// caCert is an HRK or HSK certificate in Hygon's binary CA format.
type caCert struct {
	raw []byte // caCertSize bytes
	kid []byte
	sid []byte
	pub pubKey
}

func parseCACert(b []byte) (*caCert, error) {
	if len(b) != caCertSize {
		return nil, fmt.Errorf("CA certificate is %d bytes, want %d", len(b), caCertSize)
	}
	key, err := parseKey(binary.LittleEndian.Uint32(b[0x40:]), b[0x44:0x44+slotSize], b[0x8C:0x8C+slotSize])
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	uid, err := parseUID(binary.LittleEndian.Uint16(b[0xD4:]), b[0xD6:0xD6+uidFieldSize])
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	return &caCert{
		raw: b, kid: b[0x04:0x14], sid: b[0x14:0x24],
		pub: pubKey{key: key, usage: binary.LittleEndian.Uint32(b[0x24:]), uid: uid},
	}, nil
}

// signature returns the CA certificate's signature; a CA certificate is
// always signed by the HRK.
func (c *caCert) signature() sig {
	return sig{usage: usageHRK, r: leInt(c.raw[0x240:]), s: leInt(c.raw[0x288:])}
}

// verifiedBy checks that issuer (the HRK) signed c.
func (c *caCert) verifiedBy(issuer *caCert) error {
	sg := c.signature()
	if issuer.pub.usage != sg.usage || !bytes.Equal(c.sid, issuer.kid) {
		return errors.New("not issued by this key")
	}
	if !issuer.pub.verify(c.raw[:caBodySize], sg) {
		return errors.New("bad signature")
	}
	return nil
}

// csvCert is a CEK or PEK certificate in Hygon's binary CSV format.
type csvCert struct {
	raw  []byte // csvCertSize bytes
	algo uint32
	pub  pubKey
	sigs [2]sig
}

func parseCSVCert(b []byte) (*csvCert, error) {
	if len(b) != csvCertSize {
		return nil, fmt.Errorf("CSV certificate is %d bytes, want %d", len(b), csvCertSize)
	}
	key, err := parseKey(binary.LittleEndian.Uint32(b[0x10:]), b[0x14:0x14+slotSize], b[0x5C:0x5C+slotSize])
	if err != nil {
		return nil, fmt.Errorf("CSV certificate: %w", err)
	}
	uid, err := parseUID(binary.LittleEndian.Uint16(b[0xA4:]), b[0xA6:0xA6+uidFieldSize])
	if err != nil {
		return nil, fmt.Errorf("CSV certificate: %w", err)
	}
	return &csvCert{
		raw:  b,
		algo: binary.LittleEndian.Uint32(b[0x0C:]),
		pub:  pubKey{key: key, usage: binary.LittleEndian.Uint32(b[0x08:]), uid: uid},
		sigs: [2]sig{parseSig(b[csvBodySize:]), parseSig(b[csvBodySize+csvSigSize:])},
	}, nil
}

// verifiedBy checks that one of c's two signature slots was made by the
// issuer's key for the issuer's usage (a CSV certificate may carry a
// second signature, by the owner's OCA, which is not part of the chain).
func (c *csvCert) verifiedBy(issuer pubKey, issuerAlgo uint32) error {
	for _, sg := range c.sigs {
		if sg.usage != issuer.usage || sg.algo != issuerAlgo {
			continue
		}
		if issuer.verify(c.raw[:csvBodySize], sg) {
			return nil
		}
	}
	return errors.New("no valid signature by the issuer")
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// byteArray decodes the integer arrays that serde writes for Rust byte
// arrays, and checks their length.
func byteArray(raw json.RawMessage, n int, what string) ([]byte, error) {
	if len(raw) == 0 {
		return make([]byte, n), nil // serde always writes the field; absent means zero
	}
	var b []byte
	if raw[0] != '[' {
		return nil, fmt.Errorf("%s is not an array of bytes", what)
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	if len(b) != n {
		return nil, fmt.Errorf("%s has %d bytes, want %d", what, len(b), n)
	}
	return b, nil
}

// JSON forms of the certificates, as the guest's attester serializes
// csv-rs types with serde. They are turned back into the binary formats,
// which the signatures cover.
type (
	jsonECCKey struct {
		G uint32          `json:"g"`
		X json.RawMessage `json:"x"`
		Y json.RawMessage `json:"y"`
	}
	jsonSignature struct {
		R json.RawMessage `json:"r"`
		S json.RawMessage `json:"s"`
	}
	jsonCSVCert struct {
		Body struct {
			Ver  uint32 `json:"ver"`
			Data struct {
				Firmware struct {
					Major uint8 `json:"major"`
					Minor uint8 `json:"minor"`
				} `json:"firmware"`
				Reserved1 uint16 `json:"reserved1"`
				PubKey    struct {
					Usage uint32     `json:"usage"`
					Algo  uint32     `json:"algo"`
					Key   jsonECCKey `json:"key"`
				} `json:"pubkey"`
				UIDSize   uint16          `json:"uid_size"`
				UserID    json.RawMessage `json:"user_id"`
				SID       json.RawMessage `json:"sid"`
				Reserved2 json.RawMessage `json:"reserved2"`
			} `json:"data"`
		} `json:"body"`
		Sigs []struct {
			Usage     uint32          `json:"usage"`
			Algo      uint32          `json:"algo"`
			Signature jsonSignature   `json:"signature"`
			Reserved  json.RawMessage `json:"_reserved"`
		} `json:"sigs"`
	}
	jsonCACert struct {
		Body struct {
			Preamble struct {
				Ver  uint32 `json:"ver"`
				Data struct {
					KID      json.RawMessage `json:"kid"`
					SID      json.RawMessage `json:"sid"`
					Usage    uint32          `json:"usage"`
					Reserved json.RawMessage `json:"reserved"`
				} `json:"data"`
			} `json:"preamble"`
			PubKey   jsonECCKey      `json:"pubkey"`
			UIDSize  uint16          `json:"uid_size"`
			UserID   json.RawMessage `json:"user_id"`
			Reserved json.RawMessage `json:"reserved"`
		} `json:"body"`
		Signature jsonSignature   `json:"signature"`
		Reserved  json.RawMessage `json:"_reserved"`
	}
)

// writer appends little-endian fields and collects the first error.
type writer struct {
	b   []byte
	err error
}

func (w *writer) u8(v uint8)   { w.b = append(w.b, v) }
func (w *writer) u16(v uint16) { w.b = binary.LittleEndian.AppendUint16(w.b, v) }
func (w *writer) u32(v uint32) { w.b = binary.LittleEndian.AppendUint32(w.b, v) }
func (w *writer) bytes(raw json.RawMessage, n int, what string) {
	if w.err != nil {
		return
	}
	b, err := byteArray(raw, n, what)
	if err != nil {
		w.err = err
		return
	}
	w.b = append(w.b, b...)
}

func (w *writer) key(k jsonECCKey, what string) {
	w.u32(k.G)
	w.bytes(k.X, slotSize, what+".x")
	w.bytes(k.Y, slotSize, what+".y")
}

func (w *writer) signature(s jsonSignature, what string) {
	w.bytes(s.R, slotSize, what+".r")
	w.bytes(s.S, slotSize, what+".s")
}

// csvCertFromJSON rebuilds the binary CSV certificate from its JSON form.
func csvCertFromJSON(raw json.RawMessage, what string) ([]byte, error) {
	var j jsonCSVCert
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	if len(j.Sigs) != 2 {
		return nil, fmt.Errorf("%s has %d signature slots, want 2", what, len(j.Sigs))
	}
	d := &j.Body.Data
	w := &writer{b: make([]byte, 0, csvCertSize)}
	w.u32(j.Body.Ver)
	w.u8(d.Firmware.Major)
	w.u8(d.Firmware.Minor)
	w.u16(d.Reserved1)
	w.u32(d.PubKey.Usage)
	w.u32(d.PubKey.Algo)
	w.key(d.PubKey.Key, what+".pubkey")
	w.u16(d.UIDSize)
	w.bytes(d.UserID, uidFieldSize, what+".user_id")
	w.bytes(d.SID, 16, what+".sid")
	w.bytes(d.Reserved2, 608, what+".reserved2")
	for i, s := range j.Sigs {
		w.u32(s.Usage)
		w.u32(s.Algo)
		w.signature(s.Signature, fmt.Sprintf("%s.sigs[%d]", what, i))
		w.bytes(s.Reserved, 368, fmt.Sprintf("%s.sigs[%d]._reserved", what, i))
	}
	if w.err != nil {
		return nil, w.err
	}
	return w.b, nil
}

// caCertFromJSON rebuilds the binary CA certificate from its JSON form.
func caCertFromJSON(raw json.RawMessage, what string) ([]byte, error) {
	var j jsonCACert
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	p := &j.Body.Preamble
	w := &writer{b: make([]byte, 0, caCertSize)}
	w.u32(p.Ver)
	w.bytes(p.Data.KID, 16, what+".kid")
	w.bytes(p.Data.SID, 16, what+".sid")
	w.u32(p.Data.Usage)
	w.bytes(p.Data.Reserved, 24, what+".reserved")
	w.key(j.Body.PubKey, what+".pubkey")
	w.u16(j.Body.UIDSize)
	w.bytes(j.Body.UserID, uidFieldSize, what+".user_id")
	w.bytes(j.Body.Reserved, 108, what+".body.reserved")
	w.signature(j.Signature, what+".signature")
	w.bytes(j.Reserved, 112, what+"._reserved")
	if w.err != nil {
		return nil, w.err
	}
	return w.b, nil
}
