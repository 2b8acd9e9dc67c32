//go:build kbs_snp_test_roots

package azsnpvtpm

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/gokbs/kbs/plugins/lib/snp/snptest"
	"github.com/gokbs/kbs/plugins/lib/vtpm/vtpmtest"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TestTestRootsSetting (go test -tags kbs_snp_test_roots): a test build
// trusts the roots given in its settings, as an end-to-end test configures
// the real plugin binary; simulated evidence then verifies.
func TestTestRootsSetting(t *testing.T) {
	s := testSigner(t)
	cfg, err := json.Marshal(map[string]any{"test_roots_pem": map[string]string{"Milan": string(s.RootsPEM())}})
	if err != nil {
		t.Fatal(err)
	}
	c := plugintest.Start(t, opts(New()), cfg)
	ev := simulated(t, 2, vtpmtest.Options{Nonce: digest, UserData: digest}, snptest.Report{})
	if _, err := c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: digest}); err != nil {
		t.Fatal(err)
	}
}
