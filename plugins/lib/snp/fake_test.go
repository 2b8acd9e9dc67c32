package snp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"testing"
	"time"

	"github.com/gokbs/kbs/plugins/lib/snp"
	"github.com/gokbs/kbs/plugins/lib/snp/snptest"
	"github.com/gokbs/kbs/sdk"
)

// fakeCreated is when the test chains start; fakeNow is a day later.
var (
	fakeCreated = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	fakeNow     = fakeCreated.Add(24 * time.Hour)
)

// signers are built once: go-sev-guest's test chain builder shares an
// unsynchronized random source.
var signers = map[string]*snptest.Signer{}

func signer(t testing.TB, gen string) *snptest.Signer {
	t.Helper()
	if s := signers[gen]; s != nil {
		return s
	}
	s, err := snptest.NewSigner(snptest.Options{Generation: gen, Created: fakeCreated})
	if err != nil {
		t.Fatal(err)
	}
	signers[gen] = s
	return s
}

// runtimeDigest is a real runtime-data digest: SHA-384 of the canonical
// runtime data the KBS protocol hashes.
var runtimeDigest = func() []byte {
	d := sha512.Sum384([]byte(`{"additional-evidence":"","nonce":"9Bx8QhRMiA4kU0TL0d3Y3A==","tee-pubkey":{"alg":"ES256","crv":"P-256","kty":"EC","x":"x","y":"y"}}`))
	return d[:]
}()

// TestFakeEvidence covers, with reports validly signed by go-sev-guest's
// test keys, what the real files cannot: every generation and signer, and
// each way a report can be wrong.
func TestFakeEvidence(t *testing.T) {
	initData := sha256.Sum256([]byte("algorithm = \"sha256\"\nversion = \"0.1.0\"\n"))
	initData384 := sha512.Sum384([]byte("algorithm = \"sha384\"\nversion = \"0.1.0\"\n"))
	otherTCB := snptest.DefaultTCB
	otherTCB.SNP++
	otherFMC := snptest.DefaultTCB
	otherFMC.FMC++
	var masked, otherChip [64]byte
	otherChip = snptest.DefaultChipID
	otherChip[63] ^= 0xff

	tests := []struct {
		name      string
		gen       string // default Milan
		report    snptest.Report
		certs     func(s *snptest.Signer) []snp.Cert // default: s.Certs(report.VLEK)
		untrusted bool                               // do not trust the test roots
		opts      snp.Options
		want      snp.Expected // default: ReportData runtimeDigest
		class     sdk.Class
		msg       string
	}{
		{name: "Milan v3 VCEK"},
		{name: "Milan v5 VCEK", report: snptest.Report{Version: 5}},
		{name: "Genoa v3 VCEK", gen: "Genoa"},
		{name: "Genoa v5 VLEK", gen: "Genoa", report: snptest.Report{Version: 5, VLEK: true}},
		{name: "Turin v3 VCEK", gen: "Turin"},
		{name: "Turin v5 VCEK", gen: "Turin", report: snptest.Report{Version: 5}},
		{name: "Turin v5 VLEK", gen: "Turin", report: snptest.Report{Version: 5, VLEK: true}},
		{name: "Milan VLEK", report: snptest.Report{VLEK: true}},
		{name: "Milan v2 with a lowered minimum", report: snptest.Report{Version: 2}, opts: snp.Options{MinReportVersion: 2}},
		{name: "VCEK only, no ASK or ARK", certs: func(s *snptest.Signer) []snp.Cert { return s.Certs(false)[:1] }},
		{name: "init-data sha256", report: snptest.Report{HostData: initData[:]}, want: snp.Expected{ReportData: runtimeDigest, InitDataDigest: initData[:]}},
		{name: "init-data sha384 truncated to HOST_DATA", report: snptest.Report{HostData: initData384[:32]}, want: snp.Expected{ReportData: runtimeDigest, InitDataDigest: initData384[:]}},
		{name: "masked CHIP_ID", report: snptest.Report{ChipID: &masked}},
		{name: "VMPL 2 configured", report: snptest.Report{VMPL: 2}, opts: snp.Options{VMPL: 2}},

		{name: "flipped byte in the signed body", report: snptest.Report{Tamper: flipAt(0x95)}, class: sdk.ClassBadEvidence, msg: "signature"},
		{name: "flipped signature byte", report: snptest.Report{Tamper: flipAt(0x2A0)}, class: sdk.ClassBadEvidence, msg: "signature"},
		{name: "Turin flipped byte", gen: "Turin", report: snptest.Report{Version: 5, Tamper: flipAt(0x20)}, class: sdk.ClassBadEvidence, msg: "signature"},
		{name: "wrong report data", want: snp.Expected{ReportData: make([]byte, 48)}, class: sdk.ClassBadEvidence, msg: "REPORT_DATA"},
		{name: "report data not padded with zeros", report: snptest.Report{ReportData: append(append([]byte{}, runtimeDigest...), 1)}, class: sdk.ClassBadEvidence, msg: "REPORT_DATA"},
		{name: "wrong init-data", report: snptest.Report{HostData: initData[:]}, want: snp.Expected{ReportData: runtimeDigest, InitDataDigest: initData384[:]}, class: sdk.ClassBadEvidence, msg: "HOST_DATA"},
		{name: "chain to an untrusted root", untrusted: true, class: sdk.ClassBadEvidence, msg: "does not chain to AMD's Milan ARK"},
		{name: "VLEK chain to an untrusted root", report: snptest.Report{VLEK: true}, untrusted: true, class: sdk.ClassBadEvidence, msg: "does not chain"},
		{name: "ARK in the chain is not the trusted one", certs: func(s *snptest.Signer) []snp.Cert {
			return append(s.Certs(false)[:2], snp.Cert{Type: snp.CertARK, Data: selfSigned(t, "ARK-Milan")})
		}, class: sdk.ClassBadEvidence, msg: "ARK"},
		{name: "Genoa report with a Milan VCEK", gen: "Genoa", certs: func(*snptest.Signer) []snp.Cert { return signer(t, "Milan").Certs(false) }, class: sdk.ClassBadEvidence, msg: "does not chain to AMD's Genoa ARK"},
		{name: "TCB mismatch", report: snptest.Report{ReportedTCB: &otherTCB}, class: sdk.ClassBadEvidence, msg: "reported TCB"},
		{name: "Turin FMC mismatch", gen: "Turin", report: snptest.Report{ReportedTCB: &otherFMC}, class: sdk.ClassBadEvidence, msg: "fmc="},
		{name: "VMPL 1", report: snptest.Report{VMPL: 1}, class: sdk.ClassBadEvidence, msg: "VMPL is 1, want 0"},
		{name: "VMPL 0 when 1 is configured", opts: snp.Options{VMPL: 1}, class: sdk.ClassBadEvidence, msg: "VMPL is 0, want 1"},
		{name: "CHIP_ID of another chip", report: snptest.Report{ChipID: &otherChip}, class: sdk.ClassBadEvidence, msg: "CHIP_ID"},
		{name: "VLEK-signed without the VLEK", report: snptest.Report{VLEK: true}, certs: func(s *snptest.Signer) []snp.Cert { return s.Certs(false) }, class: sdk.ClassBadEvidence, msg: "VLEK-signed"},
		{name: "VCEK-signed with only the VLEK", certs: func(s *snptest.Signer) []snp.Cert { return s.Certs(true) }, class: sdk.ClassBadEvidence, msg: "VCEK-signed"},
		{name: "VLEK certificate in the VCEK slot", certs: func(s *snptest.Signer) []snp.Cert {
			return []snp.Cert{{Type: snp.CertVCEK, Data: s.Certs(true)[0].Data}}
		}, class: sdk.ClassBadEvidence, msg: `want "SEV-VCEK"`},
		{name: "VCEK certificate garbled", certs: func(s *snptest.Signer) []snp.Cert {
			return []snp.Cert{{Type: snp.CertVCEK, Data: []byte{0x30, 0x03, 1, 2, 3}}}
		}, class: sdk.ClassBadEvidence, msg: "VCEK certificate"},
		{name: "ASK garbled", certs: func(s *snptest.Signer) []snp.Cert {
			return append(s.Certs(false)[:1], snp.Cert{Type: snp.CertASK, Data: []byte{1}})
		}, class: sdk.ClassBadEvidence, msg: "ASK"},
		{name: "VCEK expired", opts: snp.Options{Now: fixed(fakeCreated.Add(8 * 365 * 24 * time.Hour))}, class: sdk.ClassBadEvidence, msg: "expired"},
		{name: "chain not yet valid", opts: snp.Options{Now: fixed(fakeCreated.Add(-time.Hour))}, class: sdk.ClassBadEvidence, msg: "not yet valid"},
		{name: "unsigned report", report: snptest.Report{Tamper: func(b []byte) { binary.LittleEndian.PutUint32(b[0x48:], 7<<2) }}, class: sdk.ClassBadEvidence, msg: "not signed"},
		{name: "version 2 below the default minimum", report: snptest.Report{Version: 2}, class: sdk.ClassUnsupported, msg: "older than the minimum 3"},
		{name: "version 3 below a minimum of 5", opts: snp.Options{MinReportVersion: 5}, class: sdk.ClassUnsupported, msg: "older"},
		{name: "version 6", report: snptest.Report{Tamper: func(b []byte) { b[0] = 6 }}, class: sdk.ClassUnsupported, msg: "version 6"},
		{name: "unknown processor", report: snptest.Report{Tamper: func(b []byte) { b[0x188] = 0x17 }}, class: sdk.ClassUnsupported, msg: "CPUID"},
		{name: "other signature algorithm", report: snptest.Report{Tamper: func(b []byte) { b[0x34] = 2 }}, class: sdk.ClassUnsupported, msg: "signature algorithm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gen := tc.gen
			if gen == "" {
				gen = "Milan"
			}
			s := signer(t, gen)
			rep := tc.report
			if rep.ReportData == nil {
				rep.ReportData = runtimeDigest
			}
			raw, err := s.RawReport(rep)
			if err != nil {
				t.Fatal(err)
			}
			certs := s.Certs(rep.VLEK)
			if tc.certs != nil {
				certs = tc.certs(s)
			}
			ev, err := snp.EncodeEvidence(raw, certs)
			if err != nil {
				// The tampered versions and processors do not encode; the
				// verifier must reject their raw form the same way.
				_, verr := newFakeVerifier(t, s, tc.opts, tc.untrusted).VerifyReport(context.Background(), raw, certs)
				wantErr(t, verr, tc.class, tc.msg)
				wantErr(t, err, tc.class, tc.msg)
				return
			}
			want := tc.want
			if want.ReportData == nil {
				want.ReportData = runtimeDigest
			}
			r, err := newFakeVerifier(t, s, tc.opts, tc.untrusted).VerifyEvidence(context.Background(), ev, want)
			wantErr(t, err, tc.class, tc.msg)
			if err == nil && r.Generation.String() != gen {
				t.Errorf("generation %v, want %s", r.Generation, gen)
			}
		})
	}
}

// selfSigned returns a self-signed certificate with a fresh key: the
// test chains of every generation share go-sev-guest's one ARK key.
func selfSigned(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: fakeCreated, NotAfter: fakeCreated.AddDate(25, 0, 0), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func flipAt(off int) func([]byte) { return func(b []byte) { b[off] ^= 0x80 } }

func newFakeVerifier(t testing.TB, s *snptest.Signer, o snp.Options, untrusted bool) *snp.Verifier {
	t.Helper()
	if o.Now == nil {
		o.Now = fixed(fakeNow)
	}
	v := newVerifier(t, o)
	if !untrusted {
		if err := snptest.Trust(v, s); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// TestFakeGolden pins the claims of the fake reports of each generation.
func TestFakeGolden(t *testing.T) {
	for _, gen := range []string{"Milan", "Genoa", "Turin"} {
		t.Run(gen, func(t *testing.T) {
			s := signer(t, gen)
			hostData := sha256.Sum256([]byte("init-data"))
			ev, err := s.Evidence(snptest.Report{Version: 5, ReportData: runtimeDigest, HostData: hostData[:], Policy: 0x1b0000 | 0x0104})
			if err != nil {
				t.Fatal(err)
			}
			r, err := newFakeVerifier(t, s, snp.Options{}, false).VerifyEvidence(context.Background(), ev, snp.Expected{ReportData: runtimeDigest, InitDataDigest: hostData[:]})
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, "fake-"+gen+"-v5", snp.Claims(r))
		})
	}
}

// TestTrustPEM: the PEM form of the test roots (what a test build of the
// plugin is configured with) works like Trust.
func TestTrustPEM(t *testing.T) {
	s := signer(t, "Turin")
	ev, err := s.EvidenceFor(runtimeDigest, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, snp.Options{Now: fixed(fakeNow)})
	if err := snptest.TrustPEM(v, "Turin", s.RootsPEM()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyEvidence(context.Background(), ev, snp.Expected{ReportData: runtimeDigest}); err != nil {
		t.Fatal(err)
	}
	if err := snptest.TrustPEM(v, "Turin", s.RootsPEM()[:100]); err == nil {
		t.Error("TrustPEM accepted a broken bundle")
	}
}
