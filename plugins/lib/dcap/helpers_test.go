package dcap_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/pcs"
	tdxtesting "github.com/google/go-tdx-guest/testing"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// fixedSource serves one collateral, or an error.
type fixedSource struct {
	c   *dcap.Collateral
	err error
	req *dcap.Request // the last request, when set
}

func (f *fixedSource) Collateral(_ context.Context, r dcap.Request) (*dcap.Collateral, error) {
	if f.req != nil {
		*f.req = r
	}
	return f.c, f.err
}

func at(t time.Time) func() time.Time { return func() time.Time { return t } }

// tdxGuestFile reads a file of the go-tdx-guest module (real quotes and
// collateral ship in it), skipping the test when the module cache does not
// have it.
func tdxGuestFile(t testing.TB, rel string) []byte {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/go-tdx-guest").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Skipf("go-tdx-guest module not found: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		t.Skipf("go-tdx-guest module file: %v", err)
	}
	return b
}

// wantClass fails the test unless err has the class (or is nil for "").
func wantClass(t *testing.T, err error, class sdk.Class) {
	t.Helper()
	if class == "" {
		if err != nil {
			t.Fatalf("error = %v, want success", err)
		}
		return
	}
	if !errors.Is(err, &sdk.Error{Class: class}) {
		t.Fatalf("error = %v (class %q), want class %q", err, sdk.ClassOf(err), class)
	}
}

// golden compares v's indented JSON with testdata/<name>, rewriting it
// under -update.
func golden(t *testing.T, name string, v any) {
	t.Helper()
	plugintest.GoldenJSON(t, filepath.Join("testdata", name), v, *update)
}

// jsonEqual compares two values by their JSON encoding's meaning.
func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	norm := func(v any) any {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var out any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	x, _ := json.Marshal(norm(a))
	y, _ := json.Marshal(norm(b))
	return string(x) == string(y)
}

// tdxGuestTCBInfoChain is the URL-encoded TCB-Info-Issuer-Chain header of
// go-tdx-guest's sample PCS responses: Intel's TCB signing certificate
// (2018-05-21 .. 2025-05-21) and root.
func tdxGuestTCBInfoChain() string { return tdxtesting.TcbInfoHeader[pcs.TcbInfoIssuerChainPhrase][0] }

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
