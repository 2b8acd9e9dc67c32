package azsnpvtpm

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/pluginclient"
	"github.com/gokbs/kbs/sdk/verifier"
)

const binName = "kbs-plugin-verifier-az-snp-vtpm"

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
		dir, err := os.MkdirTemp("", "kbs-az-snp-bin-")
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

func startProcess(t testing.TB, config string) *pluginclient.Client {
	t.Helper()
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
	if err := c.Configure(context.Background(), []byte(config)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProcess runs the real binary through go-plugin, as kbs-host does,
// with the real v2 evidence (at the current time: its VCEK is valid until
// 2032).
func TestProcess(t *testing.T) {
	ev := evidence(t, "evidence-v2.json")
	c := startProcess(t, `{}`)
	if m := c.Metadata(); m.Name != "az-snp-vtpm" || len(m.TEETypes) != 1 || m.TEETypes[0] != TEE {
		t.Errorf("metadata = %+v", m)
	}
	rd := unhex(t, v2Nonce)
	claims, err := c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: rd})
	if err != nil {
		t.Fatal(err)
	}
	if claims["report_data"] != v2Nonce || claims["tpm"].(map[string]any)["pcr00"] != v2PCR0 {
		t.Errorf("claims = %v", claims)
	}
	_, err = c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: rd[:32]})
	if !errors.Is(err, sdk.ErrBadEvidence) {
		t.Errorf("wrong report data: %v, want bad evidence", err)
	}
}

// BenchmarkVerifyProcess is one verification through the plugin process.
func BenchmarkVerifyProcess(b *testing.B) {
	c := startProcess(b, `{}`)
	r := &verifier.Request{TEE: TEE, Evidence: evidence(b, "evidence-v1.json"), ReportData: []byte("challenge"), HashAlgorithm: "sha384"}
	for b.Loop() {
		if _, err := c.Verifier().Verify(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
}
