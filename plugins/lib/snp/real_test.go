package snp_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sevtestdata "github.com/google/go-sev-guest/verify/testdata"

	"github.com/gokbs/kbs/plugins/lib/snp"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// realNow is a time when every real certificate was valid (the VLEK
// expired 2025-12-10). Trustee ignores certificate dates; we check them,
// so tests pin the time.
var realNow = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

func newVerifier(t testing.TB, o snp.Options) *snp.Verifier {
	t.Helper()
	if o.Now == nil {
		o.Now = fixed(realNow)
	}
	if o.KDSBaseURL == "" {
		o.KDSDisabled = true // the machine has no network; never try
	}
	v, err := snp.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func flip(off int) func([]byte) { return func(b []byte) { b[off] ^= 0x01 } }

func reportData(raw []byte) []byte { return bytes.Clone(raw[0x50:0x90]) }

func checkGolden(t *testing.T, name string, claims map[string]any) {
	t.Helper()
	plugintest.GoldenJSON(t, filepath.Join("testdata", name+".claims.golden.json"), claims, *update)
}

func wantErr(t *testing.T, err error, class sdk.Class, msg string) {
	t.Helper()
	if class == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, &sdk.Error{Class: class}) {
		t.Fatalf("error = %v (class %q), want class %q", err, sdk.ClassOf(err), class)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not mention %q", err, msg)
	}
}

// TestRealEvidence verifies the real reports of the evidence index and
// go-sev-guest as INDEX.md says, through the evidence JSON the attester
// would send for them.
func TestRealEvidence(t *testing.T) {
	report := plugintest.EvidenceFile(t, "snp/test-report.bin")
	vcek := plugintest.EvidenceFile(t, "snp/test-vcek.der")
	vlekReport := plugintest.EvidenceFile(t, "snp/test-vlek-report.bin")
	vlek := plugintest.EvidenceFile(t, "snp/test-vlek.der")
	v2 := snp.Options{MinReportVersion: 2}

	tests := []struct {
		name    string
		raw     []byte
		certs   []snp.Cert
		opts    snp.Options
		tamper  func([]byte)
		digest  []byte // nil: the report's own REPORT_DATA
		class   sdk.Class
		msg     string
		golden  string
		wantGen snp.Generation
	}{
		{name: "Milan v2 VCEK", raw: report, certs: vcekChain(vcek), opts: v2, golden: "milan-v2-vcek", wantGen: snp.Milan},
		{name: "Milan v2 VCEK with the ASK and ARK", raw: report, certs: append(vcekChain(vcek), askArk(t, snp.Milan)...), opts: v2, wantGen: snp.Milan},
		{name: "Milan v2 rejected by the default minimum version", raw: report, certs: vcekChain(vcek), class: sdk.ClassUnsupported, msg: "version 2"},
		{name: "Milan v2 byte 42 flipped", raw: report, certs: vcekChain(vcek), opts: v2, tamper: flip(42), class: sdk.ClassBadEvidence, msg: "signature"},
		{name: "Milan v2 byte 384 flipped", raw: report, certs: vcekChain(vcek), opts: v2, tamper: flip(384), class: sdk.ClassBadEvidence, msg: "reported TCB"},
		{name: "Milan v2 wrong report data", raw: report, certs: vcekChain(vcek), opts: v2, digest: []byte("other"), class: sdk.ClassBadEvidence, msg: "REPORT_DATA"},
		{name: "Milan v2 VCEK presented as VLEK", raw: report, certs: []snp.Cert{{Type: snp.CertVLEK, Data: vcek}}, opts: v2, class: sdk.ClassBadEvidence, msg: "VCEK"},
		{name: "Milan v2 foreign ARK in the chain", raw: report, certs: append(vcekChain(vcek), snp.Cert{Type: snp.CertARK, Data: askArk(t, snp.Genoa)[1].Data}), opts: v2, class: sdk.ClassBadEvidence, msg: "ARK"},
		{name: "Milan v2 after the VCEK expired", raw: report, certs: vcekChain(vcek), opts: snp.Options{MinReportVersion: 2, Now: fixed(time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC))}, class: sdk.ClassBadEvidence, msg: "expired"},
		{name: "Milan v3 VLEK at VMPL 1", raw: vlekReport, certs: []snp.Cert{{Type: snp.CertVLEK, Data: vlek}}, opts: snp.Options{VMPL: 1}, golden: "milan-v3-vlek-vmpl1", wantGen: snp.Milan},
		{name: "Milan v3 VLEK rejected at the default VMPL 0", raw: vlekReport, certs: []snp.Cert{{Type: snp.CertVLEK, Data: vlek}}, class: sdk.ClassBadEvidence, msg: "VMPL is 1, want 0"},
		{name: "Milan v3 VLEK without its certificate", raw: vlekReport, opts: snp.Options{VMPL: 1}, class: sdk.ClassBadEvidence, msg: "no VLEK"},
		{name: "Milan v3 VLEK-signed with a VCEK", raw: vlekReport, certs: vcekChain(vcek), opts: snp.Options{VMPL: 1}, class: sdk.ClassBadEvidence, msg: "VLEK-signed"},
		{name: "Milan v3 VLEK byte 42 flipped", raw: vlekReport, certs: []snp.Cert{{Type: snp.CertVLEK, Data: vlek}}, opts: snp.Options{VMPL: 1}, tamper: flip(42), class: sdk.ClassBadEvidence, msg: "signature"},
		{name: "Milan v3 VLEK byte 384 flipped", raw: vlekReport, certs: []snp.Cert{{Type: snp.CertVLEK, Data: vlek}}, opts: snp.Options{VMPL: 1}, tamper: flip(384), class: sdk.ClassBadEvidence, msg: "reported TCB"},
		{name: "Milan v3 VLEK expired", raw: vlekReport, certs: []snp.Cert{{Type: snp.CertVLEK, Data: vlek}}, opts: snp.Options{VMPL: 1, Now: fixed(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}, class: sdk.ClassBadEvidence, msg: "expired"},
		{name: "go-sev-guest Milan v2", raw: sevtestdata.AttestationBytes, certs: vcekChain(sevtestdata.VcekBytes), opts: v2, golden: "go-sev-guest-milan-v2", wantGen: snp.Milan},
		{name: "go-sev-guest with the other chip's VCEK", raw: sevtestdata.AttestationBytes, certs: vcekChain(vcek), opts: v2, class: sdk.ClassBadEvidence, msg: "TCB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := bytes.Clone(tc.raw)
			if tc.tamper != nil {
				tc.tamper(raw)
			}
			ev, err := snp.EncodeEvidence(raw, tc.certs)
			if err != nil {
				t.Fatal(err)
			}
			digest := tc.digest
			if digest == nil {
				digest = reportData(tc.raw)
			}
			r, err := newVerifier(t, tc.opts).VerifyEvidence(context.Background(), ev, snp.Expected{ReportData: digest})
			wantErr(t, err, tc.class, tc.msg)
			if err != nil {
				return
			}
			if r.Generation != tc.wantGen {
				t.Errorf("generation %v, want %v", r.Generation, tc.wantGen)
			}
			if tc.golden != "" {
				checkGolden(t, tc.golden, snp.Claims(r))
			}
		})
	}
}

// TestRealAttesterEvidence verifies the real attester JSON (Genoa, v3, VCEK
// in cert_chain) with the default options at the pinned time and now.
func TestRealAttesterEvidence(t *testing.T) {
	ev, err := os.ReadFile(filepath.Join("testdata", "trustee-e2e-evidence.json"))
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := hex.DecodeString("7e7320889600c7ac133aea7b896c51f41026002982292a7369559796999c1bf929eef3ff23c46e858f0b1982f9a92b17c51b578d958cde6b0c92978f150cf9b0")
	for _, now := range []time.Time{realNow, time.Now()} {
		r, err := newVerifier(t, snp.Options{Now: fixed(now)}).VerifyEvidence(context.Background(), ev, snp.Expected{ReportData: digest, InitDataDigest: make([]byte, 32)})
		if err != nil {
			t.Fatalf("at %v: %v", now, err)
		}
		if r.Generation != snp.Genoa {
			t.Errorf("generation %v, want Genoa", r.Generation)
		}
		checkGolden(t, "genoa-v3-attester", snp.Claims(r))
	}
	_, err = newVerifier(t, snp.Options{}).VerifyEvidence(context.Background(), ev, snp.Expected{ReportData: digest[:48]})
	wantErr(t, err, sdk.ClassBadEvidence, "REPORT_DATA")
	_, err = newVerifier(t, snp.Options{}).VerifyEvidence(context.Background(), ev, snp.Expected{ReportData: digest, InitDataDigest: []byte{1}})
	wantErr(t, err, sdk.ClassBadEvidence, "HOST_DATA")
}

// TestRealOfflineStore verifies real reports whose evidence carries no
// certificate, with the VCEK from an offline store in trustee's layout, and
// never touches the network.
func TestRealOfflineStore(t *testing.T) {
	ev, err := snp.ParseEvidence(mustRead(t, filepath.Join("testdata", "trustee-e2e-evidence.json")))
	if err != nil {
		t.Fatal(err)
	}
	genoa, vcek := ev.Report.Raw, ev.CertChain[0].Data
	hwid := hex.EncodeToString(ev.Report.ChipID[:])
	tests := []struct {
		name  string
		file  string // under <dir>/vcek/<hwid>/; "" for none
		opts  snp.Options
		class sdk.Class
		msg   string
	}{
		{name: "TCB-named file", file: "bl10_tee00_snp23_ucode25_vcek.der"},
		{name: "fallback vcek.der", file: "vcek.der"},
		{name: "other TCB's file only", file: "bl09_tee00_snp23_ucode25_vcek.der", class: sdk.ClassUnavailable, msg: "KDS is disabled"},
		{name: "no store, KDS disabled", class: sdk.ClassUnavailable, msg: "KDS is disabled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.file != "" {
				p := filepath.Join(dir, "vcek", hwid, tc.file)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, vcek, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := newVerifier(t, snp.Options{VCEKDir: dir}).VerifyReport(context.Background(), genoa, nil)
			wantErr(t, err, tc.class, tc.msg)
		})
	}

	// A version 2 report names no generation: the store still serves it,
	// but KDS cannot.
	t.Run("v2 report from the store", func(t *testing.T) {
		raw := sevtestdata.AttestationBytes
		dir := t.TempDir()
		p := filepath.Join(dir, "vcek", hex.EncodeToString(raw[0x1A0:0x1E0]), "vcek.der")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, sevtestdata.VcekBytes, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := newVerifier(t, snp.Options{MinReportVersion: 2, VCEKDir: dir}).VerifyReport(context.Background(), raw, nil); err != nil {
			t.Fatal(err)
		}
		v, err := snp.New(snp.Options{MinReportVersion: 2, KDSBaseURL: "http://127.0.0.1:9", Now: fixed(realNow)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.VerifyReport(context.Background(), raw, nil)
		wantErr(t, err, sdk.ClassUnsupported, "generation")
	})
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func vcekChain(der []byte) []snp.Cert { return []snp.Cert{{Type: snp.CertVCEK, Data: der}} }

// askArk returns AMD's ASK and ARK of a generation, as the host would attach them.
func askArk(t *testing.T, g snp.Generation) []snp.Cert {
	t.Helper()
	name := map[snp.Generation]string{snp.Milan: "milan", snp.Genoa: "genoa", snp.Turin: "turin"}[g]
	certs, err := snp.CertsFromPEM(plugintest.EvidenceFile(t, "snp/"+name+"_ask_ark_asvk.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 3 || certs[0].Type != snp.CertASK || certs[1].Type != snp.CertARK || certs[2].Type != snp.CertASK {
		t.Fatalf("CertsFromPEM = %v types", certs)
	}
	return certs[:2]
}
