package cca_test

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/gokbs/kbs/plugins/verifier/cca"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TestConformance serves the plugin over real gRPC, as kbs-host runs it,
// with a token minted with our own keys.
func TestConformance(t *testing.T) {
	d := sha512.Sum384([]byte("runtime data"))
	init := sha512.Sum512_256([]byte("[data]\n"))
	ev, config := cca.Minted(t, d[:], init[:])
	opts := serve.Options{Name: "cca", Version: "0.1.0", TEETypes: []string{cca.TEE}, Verifier: cca.New()}
	plugintest.VerifierConformance(t, opts, config, []plugintest.VerifierCase{
		{
			Name:    "minted token",
			Request: verifier.Request{TEE: cca.TEE, Evidence: ev, ReportData: d[:], HashAlgorithm: "sha384", InitDataDigest: init[:]},
			Check: func(t *testing.T, c verifier.Claims) {
				padded := make([]byte, 64)
				copy(padded, d[:])
				if c["report_data"] != hex.EncodeToString(padded) {
					t.Errorf("report_data = %v", c["report_data"])
				}
				p, _ := c["platform"].(map[string]any)
				// Numbers cross the wire as JSON numbers.
				if p["cca-platform-lifecycle"] != float64(0x3003) {
					t.Errorf("lifecycle = %#v", p["cca-platform-lifecycle"])
				}
			},
		},
		{Name: "other digest", Request: verifier.Request{TEE: cca.TEE, Evidence: ev, ReportData: make([]byte, 48)}, WantClass: sdk.ClassBadEvidence},
		{Name: "other init-data", Request: verifier.Request{TEE: cca.TEE, Evidence: ev, ReportData: d[:], InitDataDigest: d[:]}, WantClass: sdk.ClassBadEvidence},
		{Name: "snp is not handled", Request: verifier.Request{TEE: "snp", Evidence: ev, ReportData: d[:]}, WantClass: sdk.ClassUnsupported},
	})
}

// TestConformanceExample runs the example token through the wire with the
// example stores.
func TestConformanceExample(t *testing.T) {
	dir := plugintest.EvidenceDir(t)
	tok, err := os.ReadFile(filepath.Join(dir, "cca", "cca-example-token.cbor"))
	if err != nil {
		t.Fatal(err)
	}
	ints := make([]int, len(tok))
	for i, c := range tok {
		ints[i] = int(c)
	}
	// trustee's attester sends the evidence object inside a JSON string.
	inner, _ := json.Marshal(map[string]any{"token": ints})
	ev, _ := json.Marshal(string(inner))
	challenge, _ := hex.DecodeString("57e979ae2618de0c1ab73144c440d741cf9236dc9d52ed190053382a4d190252f9f0370403c35dcb155fb4362d73c66d5b0494bf939315d3dc52b8cdc8b85a96")
	config, _ := json.Marshal(cca.Config{TAStore: filepath.Join(dir, "cca", "tastore.json"), RVStore: filepath.Join(dir, "cca", "rvstore.json")})
	opts := serve.Options{Name: "cca", Version: "0.1.0", TEETypes: []string{cca.TEE}, Verifier: cca.New()}
	plugintest.VerifierConformance(t, opts, config, []plugintest.VerifierCase{
		{Name: "example token", Request: verifier.Request{TEE: cca.TEE, Evidence: ev, ReportData: challenge, HashAlgorithm: "sha512"}},
	})
}
