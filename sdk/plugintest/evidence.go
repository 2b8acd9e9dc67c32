package plugintest

import (
	"os"
	"path/filepath"
	"testing"
)

// EvidenceEnv names the directory of real hardware evidence when it is not
// at the default place.
const EvidenceEnv = "KBS_EVIDENCE_DIR"

// EvidenceDir returns the directory of real hardware evidence: $KBS_EVIDENCE_DIR,
// or else ../shared/evidence beside the repository (found by walking up from
// the working directory to go.work). It skips the test, saying what is
// missing, when neither exists: a plain clone has no evidence.
func EvidenceDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(EvidenceEnv); d != "" {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
		t.Skipf("real evidence not found: %s=%s is not a directory", EvidenceEnv, d)
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Skipf("real evidence not found: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			ev := filepath.Join(dir, "..", "shared", "evidence")
			if fi, err := os.Stat(ev); err == nil && fi.IsDir() {
				return ev
			}
			t.Skipf("real evidence not found at %s; set %s to the evidence directory", ev, EvidenceEnv)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skipf("real evidence not found: no go.work above the working directory; set %s", EvidenceEnv)
		}
		dir = parent
	}
}

// EvidenceFile reads one file of the real evidence, skipping the test when
// the evidence is absent.
func EvidenceFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(EvidenceDir(t), rel))
	if err != nil {
		t.Fatalf("reading evidence %s: %v", rel, err)
	}
	return b
}
