// Package snptest makes fake but validly signed SEV-SNP evidence for tests:
// reports signed with go-sev-guest's test VCEK/VLEK keys, under a test
// ARK/ASK/ASVK chain. AMD's pinned roots reject it; a Verifier accepts it
// only after Trust. Import it from tests only: go-sev-guest's testing
// package registers command-line flags and imports package testing.
//
// For an end-to-end test:
//
//	s, _ := snptest.NewSigner(snptest.Options{})
//	evidence, _ := s.Evidence(snptest.Report{ReportData: digest})
//	// verifier side (in-process): snptest.Trust(v, s)
package snptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	sevtest "github.com/google/go-sev-guest/testing"

	"github.com/gokbs/kbs/plugins/lib/snp"
	"github.com/gokbs/kbs/plugins/lib/snp/internal/testhook"
)

// Options shape the test certificate chain.
type Options struct {
	// Generation is "Milan" (default), "Genoa" or "Turin".
	Generation string
	// Created is when the test certificates start to be valid; the zero
	// value means an hour ago. The ARK, ASK and ASVK last 25 years, the
	// VCEK and VLEK 7.
	Created time.Time
	// TCB goes into the VCEK and VLEK extensions; the zero value means
	// DefaultTCB. FMC is used on Turin only.
	TCB snp.TCB
	// ChipID is the chip the VCEK belongs to; the zero value means
	// DefaultChipID (its first 8 bytes on Turin).
	ChipID [64]byte
}

// DefaultTCB is the TCB of the real Milan test report (bl=3 tee=0 snp=8
// ucode=115), with FMC 1 for Turin.
var DefaultTCB = snp.TCB{FMC: 1, Bootloader: 3, TEE: 0, SNP: 8, Microcode: 115}

// DefaultChipID is 0x01, 0x02, ... 0x40.
var DefaultChipID = func() (id [64]byte) {
	for i := range id {
		id[i] = byte(i + 1)
	}
	return id
}()

// Signer holds a test chain and signs reports with it.
type Signer struct {
	Generation string
	TCB        snp.TCB
	ChipID     [64]byte
	amd        *sevtest.AmdSigner
}

// NewSigner builds a test ARK, ASK, ASVK, VCEK and VLEK. Do not call it
// from concurrent goroutines: go-sev-guest's chain builder shares an
// unsynchronized random source. A Signer itself is safe for concurrent use.
func NewSigner(opts Options) (*Signer, error) {
	gen := opts.Generation
	if gen == "" {
		gen = "Milan"
	}
	var productName string
	switch gen {
	case "Milan", "Genoa", "Turin":
		productName = gen + "-B0"
	default:
		return nil, fmt.Errorf("snptest: unknown generation %q", gen)
	}
	created := opts.Created
	if created.IsZero() {
		created = time.Now().Add(-time.Hour)
	}
	s := &Signer{Generation: gen, TCB: opts.TCB, ChipID: opts.ChipID}
	if s.TCB == (snp.TCB{}) {
		s.TCB = DefaultTCB
	}
	if gen != "Turin" {
		s.TCB.FMC = 0
	}
	if s.ChipID == ([64]byte{}) {
		s.ChipID = DefaultChipID
	}
	if gen == "Turin" {
		clear(s.ChipID[8:])
	}
	b := &sevtest.AmdSignerBuilder{
		Keys:             sevtest.DefaultAmdKeys(),
		ProductName:      productName,
		ArkCreationTime:  created,
		AskCreationTime:  created,
		AsvkCreationTime: created,
		VcekCreationTime: created,
		VlekCreationTime: created,
		VcekCustom:       sevtest.CertOverride{Extensions: s.extensions(productName, false)},
		VlekCustom:       sevtest.CertOverride{Extensions: s.extensions(gen, true)},
	}
	amd, err := b.TestOnlyCertChain()
	if err != nil {
		return nil, fmt.Errorf("snptest: %w", err)
	}
	s.amd = amd
	return s, nil
}

// extensions are the KDS extensions of the endorsement key certificates,
// in the form AMD issues them for the generation (Turin: structVersion 1,
// fmcSPL, 8-byte hwID).
func (s *Signer) extensions(productName string, vlek bool) []pkix.Extension {
	i := func(v int) []byte { b, _ := asn1.Marshal(v); return b }
	ia5 := func(v string) []byte { b, _ := asn1.MarshalWithParams(v, "ia5"); return b }
	turin := s.Generation == "Turin"
	structVersion := 0
	if turin {
		structVersion = 1
	}
	exts := []pkix.Extension{
		{Id: kds.OidStructVersion, Value: i(structVersion)},
		{Id: kds.OidProductName1, Value: ia5(productName)},
		{Id: kds.OidBlSpl, Value: i(int(s.TCB.Bootloader))},
		{Id: kds.OidTeeSpl, Value: i(int(s.TCB.TEE))},
		{Id: kds.OidSnpSpl, Value: i(int(s.TCB.SNP))},
		{Id: kds.OidUcodeSpl, Value: i(int(s.TCB.Microcode))},
	}
	if turin {
		exts = append(exts, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 9}, Value: i(int(s.TCB.FMC))})
	} else {
		for _, id := range []asn1.ObjectIdentifier{kds.OidSpl4, kds.OidSpl5, kds.OidSpl6, kds.OidSpl7} {
			exts = append(exts, pkix.Extension{Id: id, Value: i(0)})
		}
	}
	switch {
	case vlek:
		exts = append(exts, pkix.Extension{Id: kds.OidCspID, Value: ia5("snptest")})
	case turin:
		exts = append(exts, pkix.Extension{Id: kds.OidHwid, Value: bytes.Clone(s.ChipID[:8])})
	default:
		exts = append(exts, pkix.Extension{Id: kds.OidHwid, Value: bytes.Clone(s.ChipID[:])})
	}
	return exts
}

// Report says what goes into a report. The zero value is a version 3
// report at VMPL 0 with this signer's TCB and chip, signed by the VCEK.
type Report struct {
	Version     uint32 // default 3
	ReportData  []byte // zero-padded to 64 bytes
	HostData    []byte // zero-padded to 32 bytes
	VMPL        uint32
	Policy      uint64 // default 0x30000: SMT allowed, ABI 0.0
	Measurement []byte // default SHA-384("snptest")
	VLEK        bool   // sign with the VLEK
	// ReportedTCB overrides the TCB written into the report.
	ReportedTCB *snp.TCB
	// ChipID overrides CHIP_ID (e.g. all zero: masked).
	ChipID *[64]byte
	// Tamper runs on the raw report after signing.
	Tamper func(raw []byte)
}

// cpuid is a family/model/stepping of each generation.
var cpuid = map[string][3]byte{"Milan": {0x19, 0x01, 0x01}, "Genoa": {0x19, 0x11, 0x01}, "Turin": {0x1A, 0x02, 0x00}}

// RawReport returns a signed raw ATTESTATION_REPORT.
func (s *Signer) RawReport(o Report) ([]byte, error) {
	if o.Version == 0 {
		o.Version = 3
	}
	if o.Policy == 0 {
		o.Policy = 0x30000
	}
	if o.Measurement == nil {
		m := sha512.Sum384([]byte("snptest"))
		o.Measurement = m[:]
	}
	if len(o.ReportData) > 64 || len(o.HostData) > 32 || len(o.Measurement) > 48 {
		return nil, fmt.Errorf("snptest: report data, host data or measurement too long")
	}
	tcb := s.TCB
	if o.ReportedTCB != nil {
		tcb = *o.ReportedTCB
	}
	chip := s.ChipID
	if o.ChipID != nil {
		chip = *o.ChipID
	}
	turin := s.Generation == "Turin"
	le := binary.LittleEndian
	b := make([]byte, snp.ReportSize)
	le.PutUint32(b[0x00:], o.Version)
	le.PutUint64(b[0x08:], o.Policy)
	le.PutUint32(b[0x30:], o.VMPL)
	le.PutUint32(b[0x34:], 1) // ECDSA P-384 with SHA-384
	for _, off := range []int{0x38, 0x180, 0x1E0, 0x1F0} {
		putTCB(b[off:], tcb, turin)
	}
	le.PutUint64(b[0x40:], 1) // SMT enabled
	if o.VLEK {
		le.PutUint32(b[0x48:], uint32(snp.SignerVLEK)<<2)
	}
	copy(b[0x50:], o.ReportData)
	copy(b[0x90:], o.Measurement)
	copy(b[0xC0:], o.HostData)
	copy(b[0x140:], bytes.Repeat([]byte{0xAB}, 32)) // REPORT_ID
	if o.Version >= 3 {
		c := cpuid[s.Generation]
		copy(b[0x188:], c[:])
	}
	copy(b[0x1A0:], chip[:])
	b[0x1E8], b[0x1E9], b[0x1EA] = 21, 55, 1 // current firmware 1.55.21
	b[0x1EC], b[0x1ED], b[0x1EE] = 21, 55, 1
	key := s.amd.Keys.Vcek
	if o.VLEK {
		key = s.amd.Keys.Vlek
	}
	digest := sha512.Sum384(b[:0x2A0])
	r, sig, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		return nil, fmt.Errorf("snptest: signing: %w", err)
	}
	if err := abi.SetSignature(r, sig, b); err != nil {
		return nil, fmt.Errorf("snptest: %w", err)
	}
	if o.Tamper != nil {
		o.Tamper(b)
	}
	return b, nil
}

func putTCB(b []byte, t snp.TCB, turin bool) {
	if turin {
		b[0], b[1], b[2], b[3], b[7] = t.FMC, t.Bootloader, t.TEE, t.SNP, t.Microcode
		return
	}
	b[0], b[1], b[6], b[7] = t.Bootloader, t.TEE, t.SNP, t.Microcode
}

// Certs is the certificate table a host would attach: the VCEK (or VLEK),
// the ASK (or ASVK) and the ARK.
func (s *Signer) Certs(vlek bool) []snp.Cert {
	if vlek {
		return []snp.Cert{{Type: snp.CertVLEK, Data: s.amd.Vlek.Raw}, {Type: snp.CertASK, Data: s.amd.Asvk.Raw}, {Type: snp.CertARK, Data: s.amd.Ark.Raw}}
	}
	return []snp.Cert{{Type: snp.CertVCEK, Data: s.amd.Vcek.Raw}, {Type: snp.CertASK, Data: s.amd.Ask.Raw}, {Type: snp.CertARK, Data: s.amd.Ark.Raw}}
}

// Evidence returns the evidence JSON the guest attester would send for a
// report made as o says, with the certificate table attached.
func (s *Signer) Evidence(o Report) ([]byte, error) {
	raw, err := s.RawReport(o)
	if err != nil {
		return nil, err
	}
	return snp.EncodeEvidence(raw, s.Certs(o.VLEK))
}

// EvidenceFor is Evidence for a default report bound to digest (the
// runtime-data digest) and, if not nil, the init-data digest.
func (s *Signer) EvidenceFor(digest, initDataDigest []byte) ([]byte, error) {
	return s.Evidence(Report{ReportData: digest, HostData: initDataDigest})
}

// VCEK returns the DER of the test VCEK, e.g. to serve from a fake KDS.
func (s *Signer) VCEK() []byte { return s.amd.Vcek.Raw }

// RootsPEM returns the test ASK, ARK and ASVK as PEM, in the order of
// trustee's <gen>_ask_ark_asvk.pem.
func (s *Signer) RootsPEM() []byte {
	var buf bytes.Buffer
	for _, c := range []*x509.Certificate{s.amd.Ask, s.amd.Ark, s.amd.Asvk} {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// Trust makes v trust s's test roots for s's generation instead of AMD's.
func Trust(v *snp.Verifier, s *Signer) error {
	return testhook.TrustRoots(v, s.Generation, s.amd.Ark, s.amd.Ask, s.amd.Asvk)
}

// TrustPEM makes v trust the ARK, ASK and ASVK of a PEM bundle (as
// RootsPEM writes it) for generation instead of AMD's.
func TrustPEM(v *snp.Verifier, generation string, bundle []byte) error {
	var ark, ask, asvk *x509.Certificate
	for {
		var b *pem.Block
		b, bundle = pem.Decode(bundle)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("snptest: roots: %w", err)
		}
		switch cn := c.Subject.CommonName; {
		case strings.HasPrefix(cn, "ARK-"):
			ark = c
		case strings.HasPrefix(cn, "SEV-VLEK-"):
			asvk = c
		case strings.HasPrefix(cn, "SEV-"):
			ask = c
		}
	}
	if ark == nil || ask == nil || asvk == nil {
		return fmt.Errorf("snptest: roots: want an ARK, an ASK and an ASVK")
	}
	return testhook.TrustRoots(v, generation, ark, ask, asvk)
}
