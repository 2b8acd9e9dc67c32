package snp

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
			binPath = filepath.Join(d, "plugins", "kbs-plugin-verifier-snp")
			return
		}
		dir, err := os.MkdirTemp("", "kbs-snp-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "kbs-plugin-verifier-snp")
		if out, err := exec.Command("go", "build", "-o", binPath, "./cmd/kbs-plugin-verifier-snp").CombinedOutput(); err != nil {
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

// TestProcess runs the real binary through go-plugin, as kbs-host does.
func TestProcess(t *testing.T) {
	c := startProcess(t, `{"kds_disabled":true}`)
	if m := c.Metadata(); m.Name != "snp" || len(m.TEETypes) != 1 || m.TEETypes[0] != TEE {
		t.Errorf("metadata = %+v", m)
	}
	ev, rd := realEvidence(t)
	claims, err := c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: rd})
	if err != nil {
		t.Fatal(err)
	}
	if claims["reported_tcb_snp"] != float64(23) || claims["policy_smt_allowed"] != true {
		t.Errorf("claims = %v", claims)
	}
	_, err = c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: rd[:32]})
	if !errors.Is(err, sdk.ErrBadEvidence) {
		t.Errorf("wrong report data: %v, want bad evidence", err)
	}
}

// BenchmarkVerifyProcess is one verification through the plugin process.
func BenchmarkVerifyProcess(b *testing.B) {
	c := startProcess(b, `{"kds_disabled":true}`)
	ev, rd := realEvidence(b)
	req := &verifier.Request{TEE: TEE, Evidence: ev, ReportData: rd, HashAlgorithm: "sha384"}
	for b.Loop() {
		if _, err := c.Verifier().Verify(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
