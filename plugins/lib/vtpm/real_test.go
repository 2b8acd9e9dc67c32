package vtpm

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
)

// The values of the evidence index (../shared/evidence/INDEX.md).
const (
	challengeHex = "6368616c6c656e6765" // "challenge"
	v2Nonce      = "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef"
	snpPCR0      = "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"
	snpV2PCR0    = "84275b2f4312cd4fc6cbe6b152ad3c3683e513d9f1e23c34fca160c8cca7a6a7"
	tdxPCR0      = "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273"
)

type realCase struct {
	file    string
	kind    Kind
	version int
	nonce   string
	pcr0    string
}

var realCases = []realCase{
	{"az-snp-vtpm/evidence-v0.json", SNP, 0, challengeHex, snpPCR0},
	{"az-snp-vtpm/evidence-v1.json", SNP, 1, challengeHex, snpPCR0},
	{"az-snp-vtpm/evidence-v2.json", SNP, 2, v2Nonce, snpV2PCR0},
	{"az-tdx-vtpm/evidence-v0.json", TDX, 0, challengeHex, tdxPCR0},
	{"az-tdx-vtpm/evidence-v1.json", TDX, 1, challengeHex, tdxPCR0},
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hwReportData reads REPORT_DATA of the hardware report without verifying
// it: from the SNP report in the HCL report, or from the TD quote's body.
func hwReportData(t testing.TB, ev *Evidence) []byte {
	t.Helper()
	if ev.Kind == SNP {
		return ev.HCL.HWReport[0x50:0x90]
	}
	const tdQuoteReportData = 48 + 520 // v4 header, then the TD report body
	return ev.TDQuote[tdQuoteReportData : tdQuoteReportData+64]
}

// TestRealEvidence runs every vTPM step on the real Azure evidence.
func TestRealEvidence(t *testing.T) {
	for _, tc := range realCases {
		t.Run(tc.file, func(t *testing.T) {
			ev, err := ParseEvidence(plugintest.EvidenceFile(t, tc.file), tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Version != tc.version || len(ev.Quote.PCRs) != 24 {
				t.Fatalf("version %d with %d PCRs, want %d with 24", ev.Version, len(ev.Quote.PCRs), tc.version)
			}
			nonce := unhex(t, tc.nonce)
			att, err := ev.VerifyQuote(nonce)
			if err != nil {
				t.Fatal(err)
			}
			if err := ev.HCL.CheckBinding(hwReportData(t, ev)); err != nil {
				t.Fatal(err)
			}
			if err := ev.CheckUserData(nonce); err != nil {
				t.Fatal(err)
			}
			c := att.Claims()
			if c["report_data"] != tc.nonce || c["tpm"].(map[string]any)["pcr00"] != tc.pcr0 || len(c["tpm"].(map[string]any)) != 24 {
				t.Errorf("claims = %v", c)
			}
			if c["init_data"] != hex.EncodeToString(att.PCR(8)) {
				t.Errorf("init_data = %v, want PCR8", c["init_data"])
			}
			// The real guests were started without init-data: PCR8 is zero.
			if err := att.CheckInitData(make([]byte, 32)); !errors.Is(err, sdk.ErrBadEvidence) {
				t.Errorf("CheckInitData(zero digest) = %v, want bad evidence", err)
			}
		})
	}
}

// TestRealComponents checks the loose files of the index: the HCL reports
// and the v1 quotes that go with them.
func TestRealComponents(t *testing.T) {
	for _, dir := range []string{"az-snp-vtpm", "az-tdx-vtpm"} {
		t.Run(dir, func(t *testing.T) {
			h, err := ParseHCLReport(plugintest.EvidenceFile(t, dir+"/hcl-report.bin"))
			if err != nil {
				t.Fatal(err)
			}
			var q struct {
				Signature, Message string
				PCRs               []string `json:"pcrs"`
			}
			if err := json.Unmarshal(plugintest.EvidenceFile(t, dir+"/tpm-quote-v1.json"), &q); err != nil {
				t.Fatal(err)
			}
			ev := &Evidence{Version: 1, HCL: h, Quote: Quote{Signature: unhex(t, q.Signature), Message: unhex(t, q.Message)}}
			for _, p := range q.PCRs {
				ev.Quote.PCRs = append(ev.Quote.PCRs, unhex(t, p))
			}
			if _, err := ev.VerifyQuote([]byte("challenge")); err != nil {
				t.Fatal(err)
			}
			if dir == "az-snp-vtpm" {
				if err := h.CheckBinding(h.HWReport[0x50:0x90]); err != nil {
					t.Fatal(err)
				}
				// trustee's test_verify_report_data_failure: one byte of the
				// variable data changed.
				bad := append([]byte(nil), h.Raw...)
				bad[0x06e0]++
				h2, err := ParseHCLReport(bad)
				if err != nil {
					t.Fatal(err)
				}
				if err := h2.CheckBinding(h.HWReport[0x50:0x90]); !errors.Is(err, sdk.ErrBadEvidence) {
					t.Errorf("changed variable data: %v, want bad evidence", err)
				}
			} else {
				td := plugintest.EvidenceFile(t, dir+"/td-quote.bin")
				if err := h.CheckBinding(td[568:632]); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func realV1(t testing.TB) []byte {
	return plugintest.EvidenceFile(t, "az-snp-vtpm/evidence-v1.json")
}

// mutate decodes the real v1 SNP evidence, applies f, and encodes it.
func mutate(t testing.TB, f func(ev *Evidence)) *Evidence {
	t.Helper()
	ev, err := ParseEvidence(realV1(t), SNP)
	if err != nil {
		t.Fatal(err)
	}
	ev.Quote.Signature = append([]byte(nil), ev.Quote.Signature...)
	ev.Quote.Message = append([]byte(nil), ev.Quote.Message...)
	for i := range ev.Quote.PCRs {
		ev.Quote.PCRs[i] = append([]byte(nil), ev.Quote.PCRs[i]...)
	}
	f(ev)
	b, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseEvidence(b, SNP)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRealNegative: each change to the real evidence fails the step that
// guards it.
func TestRealNegative(t *testing.T) {
	nonce := []byte("challenge")
	otherHCL := func(t testing.TB) *HCLReport {
		h, err := ParseHCLReport(plugintest.EvidenceFile(t, "az-snp-vtpm/hcl-report.bin"))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	tests := []struct {
		name   string
		ev     func(t testing.TB) *Evidence
		nonce  []byte
		wantIn string
	}{
		{"wrong nonce", func(t testing.TB) *Evidence { return mutate(t, func(*Evidence) {}) }, []byte("egnellahc"), "nonce"},
		{"nonce zero-padded to 48 bytes", func(t testing.TB) *Evidence { return mutate(t, func(*Evidence) {}) }, append([]byte("challenge"), make([]byte, 39)...), "nonce"},
		{"no nonce expected", func(t testing.TB) *Evidence { return mutate(t, func(*Evidence) {}) }, nil, "nonce"},
		{"a PCR changed", func(t testing.TB) *Evidence { return mutate(t, func(ev *Evidence) { ev.Quote.PCRs[11][0] ^= 1 }) }, nonce, "PCR digest"},
		{"a PCR missing", func(t testing.TB) *Evidence {
			return mutate(t, func(ev *Evidence) { ev.Quote.PCRs = ev.Quote.PCRs[:23] })
		}, nonce, "23 PCR values for 24"},
		{"PCRs swapped", func(t testing.TB) *Evidence {
			return mutate(t, func(ev *Evidence) { ev.Quote.PCRs[0], ev.Quote.PCRs[1] = ev.Quote.PCRs[1], ev.Quote.PCRs[0] })
		}, nonce, "PCR digest"},
		{"tampered quote signature", func(t testing.TB) *Evidence { return mutate(t, func(ev *Evidence) { ev.Quote.Signature[0] ^= 1 }) }, nonce, "signature"},
		{"tampered quote message", func(t testing.TB) *Evidence { return mutate(t, func(ev *Evidence) { ev.Quote.Message[20] ^= 1 }) }, nonce, "signature"},
		{"swapped HCL report", func(t testing.TB) *Evidence { return mutate(t, func(ev *Evidence) { ev.HCL = otherHCL(t) }) }, nonce, "signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.ev(t).VerifyQuote(tc.nonce)
			if !errors.Is(err, sdk.ErrBadEvidence) || !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("VerifyQuote = %v, want bad evidence about %q", err, tc.wantIn)
			}
		})
	}
	t.Run("v2 user-data", func(t *testing.T) {
		ev, err := ParseEvidence(plugintest.EvidenceFile(t, "az-snp-vtpm/evidence-v2.json"), SNP)
		if err != nil {
			t.Fatal(err)
		}
		// trustee's test_verify_user_data
		for _, rd := range [][]byte{unhex(t, "123abc"), nil, unhex(t, v2Nonce+"01")} {
			if err := ev.CheckUserData(rd); !errors.Is(err, sdk.ErrBadEvidence) {
				t.Errorf("CheckUserData(%x) = %v, want bad evidence", rd, err)
			}
		}
		// version 1 evidence has no user-data binding (its user-data is zero)
		ev1 := mutate(t, func(*Evidence) {})
		if err := ev1.CheckUserData(nonce); err != nil {
			t.Errorf("v1 CheckUserData = %v, want nil", err)
		}
		ev1.Version = 2
		if err := ev1.CheckUserData(nonce); !errors.Is(err, sdk.ErrBadEvidence) {
			t.Errorf("v1 evidence read as v2: CheckUserData = %v, want bad evidence", err)
		}
	})
}
