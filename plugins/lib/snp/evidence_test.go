package snp

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	sevtestdata "github.com/google/go-sev-guest/verify/testdata"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
)

// trusteeEvidence is real evidence JSON from CoCo's attester (testdata/README.md).
func trusteeEvidence(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "trustee-e2e-evidence.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// realReports are the raw real reports: the evidence index's and
// go-sev-guest's.
func realReports(t testing.TB) map[string][]byte {
	t.Helper()
	return map[string][]byte{
		"test-report.bin":      plugintest.EvidenceFile(t, "snp/test-report.bin"),
		"test-vlek-report.bin": plugintest.EvidenceFile(t, "snp/test-vlek-report.bin"),
		"go-sev-guest":         sevtestdata.AttestationBytes,
	}
}

// TestEvidenceRoundTrip: every real raw report survives raw -> JSON -> raw
// byte for byte, which is what makes the signature verifiable.
func TestEvidenceRoundTrip(t *testing.T) {
	for name, raw := range realReports(t) {
		t.Run(name, func(t *testing.T) {
			js, err := EncodeEvidence(raw, nil)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := ParseEvidence(js)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ev.Report.Raw, raw) {
				t.Errorf("raw -> JSON -> raw changed the report")
			}
			if ev.CertChain != nil {
				t.Errorf("cert_chain = %v, want nil for null", ev.CertChain)
			}
		})
	}
}

// TestAttesterJSONShape: our encoder writes the same field names, order
// and representation as the real attester's JSON (which predates the v5
// mitigation-vector fields, so those two are left out of the comparison).
func TestAttesterJSONShape(t *testing.T) {
	orig := trusteeEvidence(t)
	ev, err := ParseEvidence(orig)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.CertChain) != 1 || ev.CertChain[0].Type != CertVCEK || len(ev.CertChain[0].Data) != 1347 {
		t.Fatalf("cert_chain = %+v, want one 1347-byte VCEK", ev.CertChain)
	}
	enc, err := EncodeEvidence(ev.Report.Raw, ev.CertChain)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"launch_mit_vector":null,`, `"current_mit_vector":null,`} {
		if !bytes.Contains(enc, []byte(k)) {
			t.Fatalf("encoding lacks %s", k)
		}
		enc = bytes.Replace(enc, []byte(k), nil, 1)
	}
	if !bytes.Equal(enc, bytes.TrimSpace(orig)) {
		t.Errorf("encoding differs from the attester's JSON:\n got %.300s\nwant %.300s", enc, orig)
	}
}

// mutate decodes the real evidence, applies f to its report object and
// re-encodes it.
func mutate(t *testing.T, f func(ev, report map[string]any)) []byte {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(trusteeEvidence(t)))
	d.UseNumber()
	var ev map[string]any
	if err := d.Decode(&ev); err != nil {
		t.Fatal(err)
	}
	f(ev, ev["attestation_report"].(map[string]any))
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func byteList(n int, v int) []any {
	l := make([]any, n)
	for i := range l {
		l[i] = v
	}
	return l
}

func TestParseEvidence(t *testing.T) {
	orig := trusteeEvidence(t)
	tests := []struct {
		name      string
		evidence  []byte
		wantClass sdk.Class // "" for success
		wantMsg   string
	}{
		{name: "real attester evidence", evidence: orig},
		{name: "extra fields ignored", evidence: mutate(t, func(ev, r map[string]any) { ev["x"] = 1; r["y"] = []any{} })},
		{name: "null cert_chain", evidence: mutate(t, func(ev, r map[string]any) { ev["cert_chain"] = nil })},
		{name: "no cert_chain", evidence: mutate(t, func(ev, r map[string]any) { delete(ev, "cert_chain") })},
		{name: "OTHER certificate", evidence: mutate(t, func(ev, r map[string]any) {
			ev["cert_chain"] = []any{map[string]any{"cert_type": map[string]any{"OTHER": "ecae0c0f-9502-43b1-afa2-0ae2e0d565b6"}, "data": []any{1}}}
		})},
		{name: "mitigation vectors ignored before version 5", evidence: mutate(t, func(ev, r map[string]any) { r["launch_mit_vector"] = 7 })},
		{name: "truncated", evidence: orig[:len(orig)/2], wantClass: sdk.ClassBadEvidence},
		{name: "oversized", evidence: append(bytes.Repeat([]byte(" "), MaxEvidenceSize), orig...), wantClass: sdk.ClassBadEvidence, wantMsg: "more than"},
		{name: "not an object", evidence: []byte(`[1,2]`), wantClass: sdk.ClassBadEvidence},
		{name: "no report", evidence: []byte(`{"cert_chain":null}`), wantClass: sdk.ClassBadEvidence, wantMsg: "attestation_report is missing"},
		{name: "missing field", evidence: mutate(t, func(ev, r map[string]any) { delete(r, "measurement") }), wantClass: sdk.ClassBadEvidence, wantMsg: "measurement is missing"},
		{name: "field name case differs", evidence: mutate(t, func(ev, r map[string]any) { r["Measurement"] = r["measurement"]; delete(r, "measurement") }), wantClass: sdk.ClassBadEvidence, wantMsg: "measurement is missing"},
		{name: "report_data too long", evidence: mutate(t, func(ev, r map[string]any) { r["report_data"] = byteList(65, 0) }), wantClass: sdk.ClassBadEvidence, wantMsg: "65 bytes, want 64"},
		{name: "measurement too short", evidence: mutate(t, func(ev, r map[string]any) { r["measurement"] = byteList(47, 0) }), wantClass: sdk.ClassBadEvidence, wantMsg: "47 bytes, want 48"},
		{name: "byte out of range", evidence: mutate(t, func(ev, r map[string]any) { r["host_data"] = byteList(32, 256) }), wantClass: sdk.ClassBadEvidence},
		{name: "negative byte", evidence: mutate(t, func(ev, r map[string]any) { r["host_data"] = byteList(32, -1) }), wantClass: sdk.ClassBadEvidence},
		{name: "base64 instead of array", evidence: mutate(t, func(ev, r map[string]any) { r["report_data"] = strings.Repeat("A", 88) }), wantClass: sdk.ClassBadEvidence, wantMsg: "want an array of bytes"},
		{name: "number as string", evidence: mutate(t, func(ev, r map[string]any) { r["vmpl"] = "0" }), wantClass: sdk.ClassBadEvidence, wantMsg: "vmpl"},
		{name: "fractional number", evidence: mutate(t, func(ev, r map[string]any) { r["guest_svn"] = json.Number("1.5") }), wantClass: sdk.ClassBadEvidence},
		{name: "u8 overflow in TCB", evidence: mutate(t, func(ev, r map[string]any) { r["reported_tcb"].(map[string]any)["snp"] = 300 }), wantClass: sdk.ClassBadEvidence, wantMsg: "reported_tcb.snp"},
		{name: "signature not an object", evidence: mutate(t, func(ev, r map[string]any) { r["signature"] = []any{} }), wantClass: sdk.ClassBadEvidence},
		{name: "signature r too short", evidence: mutate(t, func(ev, r map[string]any) { r["signature"].(map[string]any)["r"] = byteList(48, 1) }), wantClass: sdk.ClassBadEvidence},
		{name: "cert_chain not an array", evidence: mutate(t, func(ev, r map[string]any) { ev["cert_chain"] = "VCEK" }), wantClass: sdk.ClassBadEvidence},
		{name: "unknown certificate type", evidence: mutate(t, func(ev, r map[string]any) {
			ev["cert_chain"] = []any{map[string]any{"cert_type": "PEK", "data": []any{1}}}
		}), wantClass: sdk.ClassBadEvidence, wantMsg: "PEK"},
		{name: "OTHER without a GUID", evidence: mutate(t, func(ev, r map[string]any) {
			ev["cert_chain"] = []any{map[string]any{"cert_type": map[string]any{"OTHER": "x"}, "data": []any{1}}}
		}), wantClass: sdk.ClassBadEvidence},
		{name: "certificate data as string", evidence: mutate(t, func(ev, r map[string]any) {
			ev["cert_chain"] = []any{map[string]any{"cert_type": "VCEK", "data": "MIIB"}}
		}), wantClass: sdk.ClassBadEvidence},
		{name: "too many certificates", evidence: mutate(t, func(ev, r map[string]any) {
			ev["cert_chain"] = byteList(maxCerts+1, 0)
		}), wantClass: sdk.ClassBadEvidence, wantMsg: "entries"},
		{name: "reserved policy bit clear", evidence: mutate(t, func(ev, r map[string]any) { r["policy"] = 0 }), wantClass: sdk.ClassBadEvidence, wantMsg: "policy"},
		{name: "reserved key_info bits", evidence: mutate(t, func(ev, r map[string]any) { r["key_info"] = 1 << 10 }), wantClass: sdk.ClassBadEvidence},
		{name: "version 1", evidence: mutate(t, func(ev, r map[string]any) { r["version"] = 1 }), wantClass: sdk.ClassUnsupported},
		{name: "version 6", evidence: mutate(t, func(ev, r map[string]any) { r["version"] = 6 }), wantClass: sdk.ClassUnsupported},
		{name: "unknown processor", evidence: mutate(t, func(ev, r map[string]any) { r["cpuid_fam_id"] = 0x17 }), wantClass: sdk.ClassUnsupported, wantMsg: "CPUID"},
		{name: "version 3 without CPUID", evidence: mutate(t, func(ev, r map[string]any) { r["cpuid_fam_id"] = nil }), wantClass: sdk.ClassUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ParseEvidence(tc.evidence)
			if tc.wantClass == "" {
				if err != nil {
					t.Fatalf("ParseEvidence: %v", err)
				}
				if len(ev.Report.Raw) != ReportSize {
					t.Fatalf("raw report is %d bytes", len(ev.Report.Raw))
				}
				return
			}
			if !errors.Is(err, &sdk.Error{Class: tc.wantClass}) {
				t.Fatalf("ParseEvidence error = %v (class %q), want class %q", err, sdk.ClassOf(err), tc.wantClass)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tc.wantMsg)
			}
		})
	}
}

// TestParseEvidenceFields: the real evidence's fields land where the
// report layout says.
func TestParseEvidenceFields(t *testing.T) {
	ev, err := ParseEvidence(trusteeEvidence(t))
	if err != nil {
		t.Fatal(err)
	}
	r := ev.Report
	want := struct {
		Version                 uint32
		Policy                  uint64
		Gen                     Generation
		Signer                  Signer
		Reported, Launch        TCB
		Current                 Version
		PlatformInfo            uint64
		Family, Model, Stepping uint8
	}{3, 196608, Genoa, SignerVCEK, TCB{Bootloader: 10, SNP: 23, Microcode: 25}, TCB{Bootloader: 10, SNP: 23, Microcode: 25}, Version{1, 55, 40}, 37, 25, 160, 2}
	got := want
	got.Version, got.Policy, got.Gen, got.Signer, got.Reported, got.Launch, got.Current, got.PlatformInfo = r.Version, r.Policy, r.Generation, r.Signer, r.ReportedTCB, r.LaunchTCB, r.Current, r.PlatformInfo
	got.Family, got.Model, got.Stepping = r.CPUIDFamily, r.CPUIDModel, r.CPUIDStepping
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fields = %+v\nwant     %+v", got, want)
	}
}

func TestParseReportSize(t *testing.T) {
	raw := plugintest.EvidenceFile(t, "snp/test-report.bin")
	for _, n := range []int{0, ReportSize - 1, ReportSize + 1} {
		b := make([]byte, n)
		copy(b, raw)
		if _, err := ParseReport(b); !errors.Is(err, sdk.ErrBadEvidence) {
			t.Errorf("ParseReport(%d bytes) error = %v, want bad evidence", n, err)
		}
	}
}

// FuzzParseEvidence: the parser never panics, fails only with the
// evidence classes, and what it accepts re-encodes to the same report.
func FuzzParseEvidence(f *testing.F) {
	f.Add(trusteeEvidence(f))
	f.Add([]byte(`{"attestation_report":{},"cert_chain":null}`))
	for _, raw := range [][]byte{
		plugintest.EvidenceSeed(f, "snp/test-report.bin"),
		plugintest.EvidenceSeed(f, "snp/test-vlek-report.bin"),
		sevtestdata.AttestationBytes,
	} {
		if raw == nil {
			continue // evidence absent
		}
		js, err := EncodeEvidence(raw, []Cert{{Type: CertVCEK, Data: []byte{0x30, 0x82}}, {Type: CertOther, GUID: "ecae0c0f-9502-43b1-afa2-0ae2e0d565b6", Data: nil}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(js)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := ParseEvidence(data)
		if err != nil {
			if c := sdk.ClassOf(err); c != sdk.ClassBadEvidence && c != sdk.ClassUnsupported {
				t.Fatalf("error class %q: %v", c, err)
			}
			return
		}
		js, err := EncodeEvidence(ev.Report.Raw, ev.CertChain)
		if err != nil {
			t.Fatalf("EncodeEvidence of an accepted report: %v", err)
		}
		again, err := ParseEvidence(js)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !bytes.Equal(again.Report.Raw, ev.Report.Raw) {
			t.Fatalf("report changed through encode/parse")
		}
	})
}
