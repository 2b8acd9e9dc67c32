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
	dir, why := findEvidence()
	if dir == "" {
		t.Skip(why)
	}
	return dir
}

// findEvidence returns the evidence directory, or "" and why not.
func findEvidence() (dir, why string) {
	if d := os.Getenv(EvidenceEnv); d != "" {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d, ""
		}
		return "", "real evidence not found: " + EvidenceEnv + "=" + d + " is not a directory"
	}
	cwd, err := os.Getwd()
	if err != nil {
		return "", "real evidence not found: " + err.Error()
	}
	for d := cwd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			ev := filepath.Join(d, "..", "shared", "evidence")
			if fi, err := os.Stat(ev); err == nil && fi.IsDir() {
				return ev, ""
			}
			return "", "real evidence not found at " + ev + "; set " + EvidenceEnv + " to the evidence directory"
		}
		if filepath.Dir(d) == d {
			return "", "real evidence not found: no go.work above the working directory; set " + EvidenceEnv
		}
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

// EvidenceSeed reads one file of the real evidence for a fuzz target's
// seed corpus, or returns nil when the evidence is absent: unlike a test, a
// fuzz target still has its own seeds to run, so it is not skipped.
func EvidenceSeed(f *testing.F, rel string) []byte {
	f.Helper()
	dir, why := findEvidence()
	if dir == "" {
		f.Log(why)
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		f.Fatalf("reading evidence %s: %v", rel, err)
	}
	return b
}
