package aztdxvtpm

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gokbs/kbs/plugins/lib/dcap/dcaptest"
	"github.com/gokbs/kbs/plugins/lib/vtpm"
	"github.com/gokbs/kbs/plugins/lib/vtpm/vtpmtest"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/pluginclient"
	"github.com/gokbs/kbs/sdk/verifier"
)

const binName = "kbs-plugin-verifier-az-tdx-vtpm"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// pluginBinary is the real plugin binary: make build's (KBS_BIN_DIR), or
// built once for this test run.
func pluginBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if d := os.Getenv("KBS_BIN_DIR"); d != "" {
			binPath = filepath.Join(d, "plugins", binName)
			return
		}
		dir, err := os.MkdirTemp("", "kbs-az-tdx-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, binName)
		if out, err := exec.Command("go", "build", "-o", binPath, "./cmd/"+binName).CombinedOutput(); err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("building the plugin: %v", buildErr)
	}
	return binPath
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
	path := pluginBinary(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	c, err := pluginclient.Start(context.Background(), pluginclient.Config{Path: path, SHA256: sum[:]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	if err := c.Configure(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
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
