package vtpm

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
)

// edit decodes a JSON object, applies f to its members and encodes it.
func edit(t testing.TB, doc []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseEvidence(t *testing.T) {
	v1 := realV1(t)
	v0 := plugintest.EvidenceFile(t, "az-snp-vtpm/evidence-v0.json")
	tdx1 := plugintest.EvidenceFile(t, "az-tdx-vtpm/evidence-v1.json")
	tdx0 := plugintest.EvidenceFile(t, "az-tdx-vtpm/evidence-v0.json")
	quote := func(m map[string]any) map[string]any { return m["tpm_quote"].(map[string]any) }
	tests := []struct {
		name string
		doc  []byte
		kind Kind
		// wantClass is "" for success.
		wantClass sdk.Class
		wantIn    string
	}{
		{"v1 SNP", v1, SNP, "", ""},
		{"v0 SNP", v0, SNP, "", ""},
		{"v1 TDX", tdx1, TDX, "", ""},
		{"v0 TDX", tdx0, TDX, "", ""},
		{"v1 unpadded base64", edit(t, v1, func(m map[string]any) { m["vcek"] = strings.TrimRight(m["vcek"].(string), "=") }), SNP, "", ""},
		{"v1 upper-case hex", edit(t, v1, func(m map[string]any) { quote(m)["message"] = strings.ToUpper(quote(m)["message"].(string)) }), SNP, "", ""},
		{"unknown member ignored", edit(t, v1, func(m map[string]any) { m["extra"] = 1 }), SNP, "", ""},

		{"SNP evidence as TDX", v1, TDX, sdk.ClassBadEvidence, "td_quote is missing"},
		{"TDX evidence as SNP", tdx1, SNP, sdk.ClassBadEvidence, "vcek is missing"},
		{"TDX HCL report in SNP evidence", edit(t, v1, func(m map[string]any) {
			var tm map[string]any
			_ = json.Unmarshal(tdx1, &tm)
			m["hcl_report"] = tm["hcl_report"]
		}), SNP, sdk.ClassBadEvidence, "carries a TDX report"},
		{"version 3", edit(t, v1, func(m map[string]any) { m["version"] = 3 }), SNP, sdk.ClassUnsupported, "version 3"},
		{"version as string", edit(t, v1, func(m map[string]any) { m["version"] = "1" }), SNP, sdk.ClassUnsupported, "version"},
		{"version 0 written out", edit(t, v0, func(m map[string]any) { m["version"] = 0 }), SNP, sdk.ClassUnsupported, "version 0"},
		{"v0 document with version 1", edit(t, v0, func(m map[string]any) { m["version"] = 1 }), SNP, sdk.ClassBadEvidence, "tpm_quote is missing"},
		{"repeated member", bytes.Replace(v1, []byte(`{`), []byte(`{"version":1,`), 1), SNP, sdk.ClassBadEvidence, "twice"},
		{"case-folded name", bytes.Replace(v1, []byte(`"vcek"`), []byte(`"VCEK"`), 1), SNP, sdk.ClassBadEvidence, "vcek is missing"},
		{"hex signature with a space", edit(t, v1, func(m map[string]any) { quote(m)["signature"] = " " + quote(m)["signature"].(string) }), SNP, sdk.ClassBadEvidence, "not hex"},
		{"short PCR", edit(t, v1, func(m map[string]any) { quote(m)["pcrs"].([]any)[3] = "00" }), SNP, sdk.ClassBadEvidence, "pcrs[3]: 1 bytes, want 32"},
		{"25 PCRs", edit(t, v1, func(m map[string]any) { quote(m)["pcrs"] = append(quote(m)["pcrs"].([]any), strings.Repeat("00", 32)) }), SNP, sdk.ClassBadEvidence, "25 elements"},
		{"PCRs null", edit(t, v1, func(m map[string]any) { quote(m)["pcrs"] = nil }), SNP, sdk.ClassBadEvidence, "not a JSON array"},
		{"standard base64", edit(t, v1, func(m map[string]any) {
			raw, _ := base64.URLEncoding.DecodeString(m["hcl_report"].(string))
			m["hcl_report"] = base64.StdEncoding.EncodeToString(raw)
		}), SNP, sdk.ClassBadEvidence, "URL-safe base64"},
		{"empty vcek", edit(t, v1, func(m map[string]any) { m["vcek"] = "" }), SNP, sdk.ClassBadEvidence, "empty"},
		{"v0 byte 256", edit(t, v0, func(m map[string]any) { m["report"].([]any)[5] = 256 }), SNP, sdk.ClassBadEvidence, "not a byte"},
		{"v0 byte -1", edit(t, v0, func(m map[string]any) { m["quote"].(map[string]any)["message"].([]any)[0] = -1 }), SNP, sdk.ClassBadEvidence, "not an array of bytes"},
		{"v0 byte 1.5", edit(t, v0, func(m map[string]any) { m["report"].([]any)[0] = 1.5 }), SNP, sdk.ClassBadEvidence, "not an array of bytes"},
		{"v0 leading zero", bytes.Replace(v0, []byte("255,"), []byte("0255,"), 1), SNP, sdk.ClassBadEvidence, ""},
		{"v0 report as string", edit(t, v0, func(m map[string]any) { m["report"] = "SENMQQ" }), SNP, sdk.ClassBadEvidence, "not an array of bytes"},
		{"v0 vcek as bytes", edit(t, v0, func(m map[string]any) { m["vcek"] = []int{1} }), SNP, sdk.ClassBadEvidence, "not a string"},
		{"HCL report cut", edit(t, v0, func(m map[string]any) { m["report"] = m["report"].([]any)[:1000] }), SNP, sdk.ClassBadEvidence, "want at least"},
		{"not JSON", []byte(`{"version":`), SNP, sdk.ClassBadEvidence, ""},
		{"trailing data", append(append([]byte(nil), v1...), []byte(` {}`)...), SNP, sdk.ClassBadEvidence, "after the JSON object"},
		{"too large", append(append([]byte(nil), v1...), bytes.Repeat([]byte(" "), MaxEvidenceSize)...), SNP, sdk.ClassBadEvidence, "more than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ParseEvidence(tc.doc, tc.kind)
			if tc.wantClass == "" {
				if err != nil {
					t.Fatal(err)
				}
				if ev.Kind != tc.kind || ev.HCL == nil || len(ev.Quote.PCRs) != 24 {
					t.Errorf("parsed %+v", ev)
				}
				return
			}
			if !errors.Is(err, &sdk.Error{Class: tc.wantClass}) || !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("ParseEvidence = %v (class %q), want %q containing %q", err, sdk.ClassOf(err), tc.wantClass, tc.wantIn)
			}
		})
	}
}

// TestMarshalRoundTrip: every real document, parsed and written again in
// each version, parses to the same evidence.
func TestMarshalRoundTrip(t *testing.T) {
	for _, tc := range realCases {
		orig, err := ParseEvidence(plugintest.EvidenceFile(t, tc.file), tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		for v := range 3 {
			ev := *orig
			ev.Version = v
			if tc.kind == SNP && (v == 0) != orig.VCEKIsPEM() {
				continue // the VCEK is PEM in v0 and DER after
			}
			b, err := ev.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseEvidence(b, tc.kind)
			if err != nil {
				t.Fatalf("%s as v%d: %v", tc.file, v, err)
			}
			if got.Version != v || !bytes.Equal(got.HCL.Raw, orig.HCL.Raw) || !bytes.Equal(got.Quote.Message, orig.Quote.Message) ||
				!bytes.Equal(got.Quote.Signature, orig.Quote.Signature) || !bytes.Equal(got.VCEK, orig.VCEK) || !bytes.Equal(got.TDQuote, orig.TDQuote) ||
				len(got.Quote.PCRs) != 24 || !bytes.Equal(got.Quote.PCRs[23], orig.Quote.PCRs[23]) {
				t.Errorf("%s as v%d does not round-trip", tc.file, v)
			}
		}
	}
}

func TestParseHCLReport(t *testing.T) {
	real := plugintest.EvidenceFile(t, "az-snp-vtpm/hcl-report.bin")
	with := func(off int, b ...byte) []byte {
		c := append([]byte(nil), real...)
		copy(c[off:], b)
		return c
	}
	tests := []struct {
		name      string
		raw       []byte
		wantClass sdk.Class
		wantIn    string
	}{
		{"real", real, "", ""},
		{"signature", with(0, 'X'), sdk.ClassBadEvidence, "signature"},
		{"report type 3", with(igvmOffset+8, 3), sdk.ClassBadEvidence, "report type 3"},
		{"SHA-384", with(igvmOffset+12, 2), sdk.ClassUnsupported, "hash type 2"},
		{"variable data beyond the end", with(igvmOffset+16, 0xff, 0xff, 0xff, 0xff), sdk.ClassBadEvidence, "do not fit"},
		{"short", real[:varDataOffset-1], sdk.ClassBadEvidence, "want at least"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseHCLReport(tc.raw)
			if tc.wantClass == "" {
				if err != nil {
					t.Fatal(err)
				}
				if h.Type != ReportTypeSNP || len(h.HWReport) != 1184 || len(h.VarData) != 1110 {
					t.Errorf("type %v, %d-byte report, %d bytes of variable data", h.Type, len(h.HWReport), len(h.VarData))
				}
				return
			}
			if !errors.Is(err, &sdk.Error{Class: tc.wantClass}) || !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("ParseHCLReport = %v, want %q containing %q", err, tc.wantClass, tc.wantIn)
			}
		})
	}
}

func TestAKPub(t *testing.T) {
	h, err := ParseHCLReport(plugintest.EvidenceFile(t, "az-snp-vtpm/hcl-report.bin"))
	if err != nil {
		t.Fatal(err)
	}
	ak, err := h.AKPub()
	if err != nil || ak.N.BitLen() != 2048 || ak.E != 65537 {
		t.Fatalf("AKPub = %v, %v", ak, err)
	}
	vd := func(s string) *HCLReport { return &HCLReport{VarData: []byte(s)} }
	n := base64.RawURLEncoding.EncodeToString(ak.N.Bytes())
	tests := []struct {
		name      string
		h         *HCLReport
		wantClass sdk.Class
	}{
		// trustee's test_verify_akpub_failure zeroes a byte of "HCLAkPub".
		{"key id changed", vd(`{"keys":[{"kid":"HCLAkPu\u0000","kty":"RSA","e":"AQAB","n":"` + n + `"}]}`), sdk.ClassBadEvidence},
		{"EC key", vd(`{"keys":[{"kid":"HCLAkPub","kty":"EC","crv":"P-256"}]}`), sdk.ClassUnsupported},
		{"1024 bits", vd(`{"keys":[{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"` + n[:171] + `"}]}`), sdk.ClassBadEvidence},
		{"exponent 1", vd(`{"keys":[{"kid":"HCLAkPub","kty":"RSA","e":"AQ","n":"` + n + `"}]}`), sdk.ClassBadEvidence},
		{"padded modulus", vd(`{"keys":[{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"` + n + `=="}]}`), sdk.ClassBadEvidence},
		{"not JSON", vd(`keys`), sdk.ClassBadEvidence},
		{"no keys", vd(`{}`), sdk.ClassBadEvidence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.h.AKPub(); !errors.Is(err, &sdk.Error{Class: tc.wantClass}) {
				t.Errorf("AKPub = %v, want %q", err, tc.wantClass)
			}
		})
	}
}

func TestParseAttest(t *testing.T) {
	ev, err := ParseEvidence(realV1(t), SNP)
	if err != nil {
		t.Fatal(err)
	}
	msg := ev.Quote.Message
	a, err := ParseAttest(msg)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Nonce) != "challenge" || len(a.Selected) != 24 || a.Selected[23] != 23 {
		t.Errorf("attest = %+v", a)
	}
	with := func(off int, b ...byte) []byte {
		c := append([]byte(nil), msg...)
		copy(c[off:], b)
		return c
	}
	selOff := len(msg) - 34 - 10 // TPML_PCR_SELECTION, then the 2+32-byte digest
	tests := map[string][]byte{
		"magic":             with(0, 0),
		"certify, no quote": with(4, 0x80, 0x17),
		"trailing byte":     append(append([]byte(nil), msg...), 0),
		"cut":               msg[:len(msg)-1],
		"SHA-1 bank":        with(selOff+4, 0x00, 0x04),
		"no PCR selected":   with(selOff+7, 0, 0, 0),
		"PCR 24 selected":   append(append(append([]byte(nil), msg[:selOff+6]...), 4, 0xff, 0xff, 0xff, 0x01), msg[selOff+10:]...),
		"empty":             nil,
	}
	for name, m := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseAttest(m)
			if !errors.Is(err, sdk.ErrBadEvidence) {
				t.Errorf("ParseAttest = %v, want bad evidence", err)
			}
			if name == "PCR 24 selected" && !strings.Contains(err.Error(), "beyond PCR23") {
				t.Errorf("ParseAttest = %v, want PCR selection error", err)
			}
		})
	}
}
