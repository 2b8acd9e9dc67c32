//go:build kbs_snp_test_roots

package snp

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/gokbs/kbs/plugins/lib/snp/snptest"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TestTestRootsSetting (go test -tags kbs_snp_test_roots): a test build
// trusts the roots given in its settings, as an end-to-end test configures
// the real plugin binary.
func TestTestRootsSetting(t *testing.T) {
	cfg, err := json.Marshal(map[string]any{"test_roots_pem": map[string]string{"Genoa": string(testSigner.RootsPEM())}})
	if err != nil {
		t.Fatal(err)
	}
	c := plugintest.Start(t, opts(New()), cfg)
	if _, err := c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: mustEvidence(t, snptest.Report{ReportData: digest}), ReportData: digest}); err != nil {
		t.Fatal(err)
	}
}
