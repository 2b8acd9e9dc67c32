package sample_test

import (
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/gokbs/kbs/plugins/verifier/sample"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TestConformance serves the plugin over real gRPC, as kbs-host runs it.
func TestConformance(t *testing.T) {
	d := sha512.Sum384([]byte("runtime data"))
	digest := d[:]
	ev := json.RawMessage(`{"svn":"1","report_data":"` + base64.StdEncoding.EncodeToString(digest) + `"}`)
	opts := serve.Options{Name: "sample", Version: "0.1.0", TEETypes: []string{sample.TEE}, Verifier: sample.New()}
	plugintest.VerifierConformance(t, opts, []byte(`{}`), []plugintest.VerifierCase{
		{
			Name:    "bound evidence",
			Request: verifier.Request{TEE: "sample", Evidence: ev, ReportData: digest, HashAlgorithm: "sha384", InitDataDigest: []byte{1, 2, 3}},
			Check: func(t *testing.T, c verifier.Claims) {
				want := map[string]any{
					"svn": "1", "report_data": base64.StdEncoding.EncodeToString(digest), "launch_digest": "abcde",
					"debug": false, "init_data": "AQID",
				}
				for k, v := range want {
					if c[k] != v {
						t.Errorf("claim %s = %#v, want %#v", k, c[k], v)
					}
				}
				pv, _ := c["platform_version"].(map[string]any)
				if len(pv) != 2 || pv["major"] != float64(1) || pv["minor"] != float64(4) {
					t.Errorf("platform_version = %#v, want {major:1, minor:4}", c["platform_version"])
				}
			},
		},
		{
			Name:      "other digest",
			Request:   verifier.Request{TEE: "sample", Evidence: ev, ReportData: make([]byte, 48)},
			WantClass: sdk.ClassBadEvidence,
		},
		{
			Name:      "sampledevice is not handled",
			Request:   verifier.Request{TEE: "sampledevice", Evidence: ev, ReportData: digest},
			WantClass: sdk.ClassUnsupported,
		},
	})
}
