package aztdxvtpm

import (
	"context"
	"errors"
	"testing"

	"github.com/gokbs/kbs/plugins/lib/dcap/dcaptest"
	"github.com/gokbs/kbs/plugins/lib/vtpm"
	"github.com/gokbs/kbs/plugins/lib/vtpm/vtpmtest"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/verifier"
)

const binName = "kbs-plugin-verifier-az-tdx-vtpm"

// pluginBinary is the real plugin binary (make build's, or built once).
func pluginBinary(t testing.TB) string {
	return plugintest.Binary(t, "kbs-plugin-verifier-az-tdx-vtpm")
}

// TestProcess runs the real binary through go-plugin, as kbs-host does,
// configured with a test Intel platform's collateral and root, on
// synthetic evidence made now (the binary's clock is the real one).
func TestProcess(t *testing.T) {
	p := dcaptest.New(dcaptest.Options{})
	cfg, err := p.WriteSettings(t.TempDir(), dcaptest.CollateralOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := plugintest.StartProcess(t, pluginBinary(t), cfg)
	if m := c.Metadata(); m.Name != "az-tdx-vtpm" || len(m.TEETypes) != 1 || m.TEETypes[0] != TEE {
		t.Errorf("metadata = %+v", m)
	}
	q, err := vtpmtest.New(vtpmtest.Options{Nonce: digest, UserData: digest, InitDataDigest: initData})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := q.Evidence(vtpm.TDX, 2, make([]byte, 1024), p.TDXQuote(dcaptest.TDXOptions{ReportData: q.ReportData()}))
	if err != nil {
		t.Fatal(err)
	}
	claims, err := c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: digest, InitDataDigest: initData})
	if err != nil {
		t.Fatal(err)
	}
	if claims["tcb_status"] != "UpToDate" || claims["tpm"].(map[string]any)["pcr08"] != claims["init_data"] {
		t.Errorf("claims = %v", claims)
	}
	_, err = c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: digest[:32]})
	if !errors.Is(err, sdk.ErrBadEvidence) {
		t.Errorf("wrong report data: %v, want bad evidence", err)
	}
}
