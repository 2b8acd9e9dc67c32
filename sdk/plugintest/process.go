package plugintest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gokbs/kbs/sdk/pluginclient"
)

var (
	builtMu sync.Mutex
	built   = map[string]string{}
)

// Binary returns the path of the plugin binary binName (for example
// "kbs-plugin-verifier-snp"): make build's when KBS_BIN_DIR is set, else
// built once per test binary from ./cmd/<binName> of the current module.
func Binary(t testing.TB, binName string) string {
	t.Helper()
	if d := os.Getenv("KBS_BIN_DIR"); d != "" {
		return filepath.Join(d, "plugins", binName)
	}
	builtMu.Lock()
	defer builtMu.Unlock()
	if p, ok := built[binName]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "kbs-plugintest-")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, binName)
	if out, err := exec.Command("go", "build", "-o", p, "./cmd/"+binName).CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", binName, err, out)
	}
	built[binName] = p
	return p
}

// StartProcess starts the plugin binary at path as kbs-host does (go-plugin
// gRPC, AutoMTLS, checksum, no host environment), configures it, and stops
// it when the test ends.
func StartProcess(t testing.TB, path string, config []byte) *pluginclient.Client {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	c, err := pluginclient.Start(context.Background(), pluginclient.Config{Path: path, SHA256: sum[:]})
	if err != nil {
		t.Fatal(fmt.Errorf("starting %s: %w", path, err))
	}
	t.Cleanup(c.Kill)
	if err := c.Configure(context.Background(), config); err != nil {
		t.Fatalf("configuring %s: %v", path, err)
	}
	return c
}
