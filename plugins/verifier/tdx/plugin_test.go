package tdx

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/plugins/lib/dcap/dcaptest"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/verifier"
)

func testOptions(t testing.TB) serve.Options {
	base := dcap.DefaultConfig()
	base.Now = func() time.Time { return testNow }
	v, err := NewWithConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	return serve.Options{Name: "tdx", Version: "0.1.0", TEETypes: []string{TEE}, Verifier: v}
}

// TestConformance serves the plugin over real gRPC, as kbs-host runs it.
func TestConformance(t *testing.T) {
	e := newEnv(t, dcaptest.CollateralOptions{})
	log, rtmr := ccel(t, "CCEL_data_ovmf")
	quote := e.p.TDXQuote(dcaptest.TDXOptions{ReportData: digest, MRConfigID: initData, RTMRs: rtmr})
	plugintest.VerifierConformance(t, testOptions(t), e.config, []plugintest.VerifierCase{
		{
			Name:    "quote and event log",
			Request: verifier.Request{TEE: TEE, Evidence: evidenceJSON(quote, log), ReportData: digest, HashAlgorithm: "sha384", InitDataDigest: initData},
			Check: func(t *testing.T, c verifier.Claims) {
				want := map[string]any{
					"report_data": hex.EncodeToString(dcap.Regularize(digest, 64)),
					"init_data":   hex.EncodeToString(initData),
					"tcb_status":  "UpToDate",
				}
				for k, v := range want {
					if c[k] != v {
						t.Errorf("claim %s = %v, want %v", k, c[k], v)
					}
				}
				if logs, _ := c["uefi_event_logs"].([]any); len(logs) != 20 {
					t.Errorf("uefi_event_logs has %d events, want 20", len(logs))
				}
				body := c["quote"].(map[string]any)["body"].(map[string]any)
				if body["rtmr_2"] != hex.EncodeToString(rtmr[2]) {
					t.Errorf("quote.body.rtmr_2 = %v", body["rtmr_2"])
				}
			},
		},
		{
			Name:      "other runtime data",
			Request:   verifier.Request{TEE: TEE, Evidence: evidenceJSON(quote, log), ReportData: make([]byte, 48)},
			WantClass: sdk.ClassBadEvidence,
		},
		{
			Name:      "other init-data",
			Request:   verifier.Request{TEE: TEE, Evidence: evidenceJSON(quote, log), ReportData: digest, InitDataDigest: make([]byte, 32)},
			WantClass: sdk.ClassBadEvidence,
		},
		{
			Name:      "real quote whose collateral is not here",
			Request:   verifier.Request{TEE: TEE, Evidence: evidenceJSON(plugintest.EvidenceFile(t, "tdx/tdx_quote_4.dat"), nil), ReportData: digest},
			WantClass: sdk.ClassBadEvidence, // its root is not the test root
		},
		{
			Name:      "az-tdx-vtpm is another plugin's",
			Request:   verifier.Request{TEE: "az-tdx-vtpm", Evidence: evidenceJSON(quote, nil), ReportData: digest},
			WantClass: sdk.ClassUnsupported,
		},
	})
}

// BenchmarkVerify: a TD quote with collateral from a directory and a real
// event log, in-process and through the plugin's gRPC interface.
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b, dcaptest.CollateralOptions{})
	log, rtmr := ccel(b, "CCEL_data_grub")
	req := &verifier.Request{TEE: TEE, ReportData: digest,
		Evidence: evidenceJSON(e.p.TDXQuote(dcaptest.TDXOptions{ReportData: digest, RTMRs: rtmr}), log)}
	noLog := &verifier.Request{TEE: TEE, ReportData: digest,
		Evidence: evidenceJSON(e.p.TDXQuote(dcaptest.TDXOptions{ReportData: digest}), nil)}
	run := func(b *testing.B, v verifier.Verifier, req *verifier.Request) {
		if _, err := v.Verify(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("in-process", func(b *testing.B) { run(b, e.verifier(b, nil), noLog) })
	b.Run("in-process with event log", func(b *testing.B) { run(b, e.verifier(b, nil), req) })
	b.Run("plugin", func(b *testing.B) { run(b, plugintest.Start(b, testOptions(b), e.config).Verifier(), noLog) })
	b.Run("plugin with event log", func(b *testing.B) { run(b, plugintest.Start(b, testOptions(b), e.config).Verifier(), req) })
}
