package ear

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gokbs/kbs/sdk/token"
)

// benchRequest is what the host asks for after a sample handshake: the
// verifier's claims, the runtime data with the guest's P-256 key, and the
// policy's identifiers.
func benchRequest() *token.IssueRequest {
	return &token.IssueRequest{Submods: map[string]token.Appraisal{
		"cpu0": {
			Status:      "affirming",
			TrustVector: map[string]int{"instance-identity": 2, "configuration": 2, "executables": 3, "file-system": 0, "hardware": 2, "runtime-opaque": 0, "sourced-data": 0, "storage-opaque": 0},
			PolicyID:    "default_cpu",
			AnnotatedEvidence: map[string]any{
				"sample":      map[string]any{"svn": "1", "launch_digest": "abcde", "report_data": strings.Repeat("ab", 48), "init_data": ""},
				"report_data": strings.Repeat("cd", 48),
				"runtime_data_claims": map[string]any{
					"nonce":      "yiYHzvqWq6Wd6w8drHTkUEUqoHNlAQ6C+h3LJI8Gc9k=",
					"tee-pubkey": map[string]any{"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": strings.Repeat("x", 43), "y": strings.Repeat("y", 43)},
				},
			},
			Extensions: map[string]any{"ear.trustee.identifiers": map[string]any{"tee": "sample"}},
		},
	}}
}

// BenchmarkIssue is one token issue as the plugin serves it: the request
// decoded from the host's JSON, then signed.
func BenchmarkIssue(b *testing.B) {
	i := New()
	if err := i.Configure(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	body, err := json.Marshal(benchRequest())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var req token.IssueRequest
		if err := json.Unmarshal(body, &req); err != nil {
			b.Fatal(err)
		}
		if _, err := i.Issue(context.Background(), &req); err != nil {
			b.Fatal(err)
		}
	}
}
