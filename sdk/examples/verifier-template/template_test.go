package template_test

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"

	template "github.com/example/kbs-verifier-template"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/verifier"
)

// digest is a runtime-data digest as the host computes it (SHA-384).
var digest = func() []byte { d := sha512.Sum384([]byte("runtime data")); return d[:] }()

func pad64(b []byte) []byte { out := make([]byte, 64); copy(out, b); return out }

func evidenceJSON(svn any, reportData, initData []byte) []byte {
	m := map[string]any{"report_data": base64.StdEncoding.EncodeToString(pad64(reportData))}
	if svn != nil {
		m["svn"] = svn
	}
	if initData != nil {
		m["init_data"] = base64.StdEncoding.EncodeToString(pad64(initData))
	}
	b, _ := json.Marshal(m)
	return b
}

// TestConformance runs the plugin over real gRPC, as kbs-host runs it, and
// the checks every verifier must pass.
func TestConformance(t *testing.T) {
	opts := serve.Options{Name: "template", Version: "0.1.0", TEETypes: []string{template.TEE}, Verifier: template.New()}
	plugintest.VerifierConformance(t, opts, []byte(`{"min_svn":1}`), []plugintest.VerifierCase{
		{
			Name:    "bound evidence",
			Request: verifier.Request{TEE: template.TEE, Evidence: evidenceJSON(2, digest, nil), ReportData: digest, HashAlgorithm: "sha384"},
			Check: func(t *testing.T, c verifier.Claims) {
				// Numbers cross the wire as JSON numbers.
				if c["svn"] != float64(2) || c["report_data"] != hex.EncodeToString(pad64(digest)) {
					t.Errorf("claims = %v", c)
				}
			},
		},
		{Name: "svn below the minimum", Request: verifier.Request{TEE: template.TEE, Evidence: evidenceJSON(0, digest, nil), ReportData: digest}, WantClass: sdk.ClassBadEvidence},
		{Name: "other digest", Request: verifier.Request{TEE: template.TEE, Evidence: evidenceJSON(2, digest, nil), ReportData: make([]byte, 48)}, WantClass: sdk.ClassBadEvidence},
	})
}

func TestVerify(t *testing.T) {
	initData := sha512.Sum384([]byte("[data]\n"))
	tests := map[string]struct {
		evidence []byte
		initData []byte
		want     error
	}{
		"bound":                 {evidence: evidenceJSON(3, digest, nil)},
		"bound with init-data":  {evidence: evidenceJSON(3, digest, initData[:]), initData: initData[:]},
		"init-data not in it":   {evidence: evidenceJSON(3, digest, nil), initData: initData[:], want: sdk.ErrBadEvidence},
		"other init-data":       {evidence: evidenceJSON(3, digest, digest), initData: initData[:], want: sdk.ErrBadEvidence},
		"other report data":     {evidence: evidenceJSON(3, initData[:], nil), want: sdk.ErrBadEvidence},
		"svn missing":           {evidence: evidenceJSON(nil, digest, nil), want: sdk.ErrBadEvidence},
		"svn a string":          {evidence: evidenceJSON("3", digest, nil), want: sdk.ErrBadEvidence},
		"report data not b64":   {evidence: []byte(`{"svn":1,"report_data":"%%"}`), want: sdk.ErrBadEvidence},
		"report data too short": {evidence: []byte(`{"svn":1,"report_data":"AAAA"}`), want: sdk.ErrBadEvidence},
		"not JSON":              {evidence: []byte(`svn=1`), want: sdk.ErrBadEvidence},
	}
	v := template.New()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), &verifier.Request{TEE: template.TEE, Evidence: tc.evidence, ReportData: digest, InitDataDigest: tc.initData})
			if tc.want == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v (class %q), want class %q", err, sdk.ClassOf(err), sdk.ClassOf(tc.want))
			}
		})
	}
}

func TestConfigure(t *testing.T) {
	for config, wantErr := range map[string]bool{"": false, "{}": false, `{"min_svn":4}`: false, `{"min_svm":4}`: true, `{"min_svn":-1}`: true} {
		err := template.New().Configure(context.Background(), []byte(config))
		if (err != nil) != wantErr {
			t.Errorf("Configure(%s) = %v, want error %v", config, err, wantErr)
		}
		if err != nil && !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Configure(%s): class %q, want invalid_argument", config, sdk.ClassOf(err))
		}
	}
}
