package csv_test

import (
	"crypto/sha512"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/gokbs/kbs/plugins/verifier/csv"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TestConformance serves the plugin over real gRPC, as kbs-host runs it,
// with a generated chain (the real evidence has no HSK/CEK).
func TestConformance(t *testing.T) {
	chain := csv.NewChain(t)
	d := sha512.Sum384([]byte("runtime data"))
	ev := chain.Evidence(t, d[:])
	config, _ := json.Marshal(map[string]any{"hrk_path": chain.HRKPath, "offline": true, "cert_dir": t.TempDir()})
	opts := serve.Options{Name: "csv", Version: "0.1.0", TEETypes: []string{csv.TEE}, Verifier: csv.New()}
	cases := []plugintest.VerifierCase{
		{
			Name:    "full chain",
			Request: verifier.Request{TEE: csv.TEE, Evidence: ev, ReportData: d[:], HashAlgorithm: "sha384"},
			Check: func(t *testing.T, c verifier.Claims) {
				if c["version"] != "1" || c["serial_number"] != chain.Chip {
					t.Errorf("claims = %v", c)
				}
				if p, ok := c["policy"].(map[string]any); !ok || p["nodbg"] != float64(1) {
					t.Errorf("policy = %#v, want nodbg 1", c["policy"])
				}
			},
		},
		{Name: "other digest", Request: verifier.Request{TEE: csv.TEE, Evidence: ev, ReportData: make([]byte, 48)}, WantClass: sdk.ClassBadEvidence},
		{Name: "hygondcu is not handled", Request: verifier.Request{TEE: "hygondcu", Evidence: ev, ReportData: d[:]}, WantClass: sdk.ClassUnsupported},
	}
	// The real evidence crosses the wire too; without its HSK/CEK the
	// plugin can only say so.
	if real := realEvidence(t); real != nil {
		cases = append(cases, plugintest.VerifierCase{
			Name:      "real evidence without HSK/CEK offline",
			Request:   verifier.Request{TEE: csv.TEE, Evidence: real, ReportData: make([]byte, 48)},
			WantClass: sdk.ClassUnavailable,
		})
	}
	plugintest.VerifierConformance(t, opts, config, cases)
}

func realEvidence(t *testing.T) []byte {
	dir := ""
	t.Run("evidence", func(t *testing.T) { dir = plugintest.EvidenceDir(t) })
	if dir == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "csv", "csv_evidence.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
