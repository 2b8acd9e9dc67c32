package ita_test

import (
	"crypto/sha512"
	"testing"

	"github.com/gokbs/kbs/plugins/verifier/ita"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TestConformance serves the plugin over real gRPC, as kbs-host runs it,
// against the local Trust Authority.
func TestConformance(t *testing.T) {
	d := sha512.Sum384([]byte("runtime data"))
	config := ita.FakeTrustAuthority(t)
	opts := serve.Options{Name: "ita", Version: "0.1.0", TEETypes: []string{ita.TEETDX, ita.TEESGX}, Verifier: ita.New()}
	plugintest.VerifierConformance(t, opts, config, []plugintest.VerifierCase{
		{
			Name:    "tdx",
			Request: verifier.Request{TEE: ita.TEETDX, Evidence: ita.TDXEvidence(d[:]), ReportData: d[:], HashAlgorithm: "sha384"},
			Check: func(t *testing.T, c verifier.Claims) {
				if c["tcb_status"] != "UpToDate" {
					t.Errorf("tcb_status = %v", c["tcb_status"])
				}
				body, _ := c["quote"].(map[string]any)["body"].(map[string]any)
				if len(body["mr_td"].(string)) != 96 {
					t.Errorf("quote.body.mr_td = %v", body["mr_td"])
				}
			},
		},
		{Name: "sgx", Request: verifier.Request{TEE: ita.TEESGX, Evidence: ita.SGXEvidence(d[:]), ReportData: d[:]}},
		{Name: "appraisal failure", Request: verifier.Request{TEE: ita.TEETDX, Evidence: ita.UnappraisableTDXEvidence(d[:]), ReportData: d[:]}, WantClass: sdk.ClassBadEvidence},
		{Name: "other digest", Request: verifier.Request{TEE: ita.TEETDX, Evidence: ita.TDXEvidence(d[:]), ReportData: make([]byte, 48)}, WantClass: sdk.ClassBadEvidence},
		{Name: "snp is not handled", Request: verifier.Request{TEE: "snp", Evidence: ita.TDXEvidence(d[:]), ReportData: d[:]}, WantClass: sdk.ClassUnsupported},
	})
}
