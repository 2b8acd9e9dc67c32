package plugintest

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/verifier"
)

// VerifierCase is one request with its expected outcome.
type VerifierCase struct {
	Name    string
	Request verifier.Request
	// WantClass is the expected error class, or "" for success.
	WantClass sdk.Class
	// Check, if set, inspects the claims of a successful call.
	Check func(t *testing.T, claims verifier.Claims)
}

// VerifierConformance runs the plugin's own cases, then the checks every
// verifier must pass: it describes itself, refuses TEE types it did not
// declare, and answers garbage with a bad-evidence error instead of a crash.
func VerifierConformance(t *testing.T, opts serve.Options, config []byte, cases []VerifierCase) {
	t.Helper()
	c := Start(t, opts, config)
	v := c.Verifier()
	ctx := context.Background()

	t.Run("metadata", func(t *testing.T) {
		m := c.Metadata()
		if m.Kind != sdk.KindVerifier || m.Name != opts.Name || len(m.TEETypes) == 0 {
			t.Errorf("metadata = %+v, want kind %q, name %q and TEE types", m, sdk.KindVerifier, opts.Name)
		}
	})
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			req := tc.Request
			claims, err := v.Verify(ctx, &req)
			if tc.WantClass != "" {
				if !errors.Is(err, &sdk.Error{Class: tc.WantClass}) {
					t.Fatalf("Verify error = %v (class %q), want class %q", err, sdk.ClassOf(err), tc.WantClass)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tc.Check != nil {
				tc.Check(t, claims)
			}
		})
	}
	tee := c.Metadata().TEETypes[0]
	garbage := map[string]string{
		"empty object":  `{}`,
		"array":         `[1,2,3]`,
		"string":        `"evidence"`,
		"null":          `null`,
		"wrong types":   `{"quote":12,"report_data":[],"attestation_report":"x","token":false}`,
		"deeply nested": `[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{}]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		"long strings":  `{"quote":"` + strings.Repeat("A", 1<<20) + `","report_data":"` + strings.Repeat("/", 1<<10) + `"}`,
	}
	for name, ev := range garbage {
		t.Run("garbage/"+name, func(t *testing.T) {
			_, err := v.Verify(ctx, &verifier.Request{TEE: tee, Evidence: json.RawMessage(ev), ReportData: make([]byte, 48), HashAlgorithm: "sha384"})
			if !errors.Is(err, sdk.ErrBadEvidence) && !errors.Is(err, sdk.ErrUnsupported) {
				t.Errorf("Verify(%s) error = %v (class %q), want bad_evidence or unsupported", ev, err, sdk.ClassOf(err))
			}
		})
	}
	t.Run("undeclared TEE", func(t *testing.T) {
		_, err := v.Verify(ctx, &verifier.Request{TEE: "no-such-tee", Evidence: json.RawMessage(`{}`), ReportData: make([]byte, 48)})
		if !errors.Is(err, sdk.ErrUnsupported) {
			t.Errorf("Verify(no-such-tee) error = %v (class %q), want unsupported", err, sdk.ClassOf(err))
		}
	})
}
