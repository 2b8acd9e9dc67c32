package plugintest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/token"
)

// SampleIssueRequest is a typical request: one CPU submodule of sample
// evidence.
func SampleIssueRequest() *token.IssueRequest {
	return &token.IssueRequest{Submods: map[string]token.Appraisal{
		"cpu0": {
			Status:      "affirming",
			TrustVector: map[string]int{"executables": 3, "hardware": 2, "configuration": 2},
			PolicyID:    "default_cpu",
			AnnotatedEvidence: map[string]any{
				"sample":              map[string]any{"svn": "1", "launch_digest": "abcde"},
				"report_data":         "00",
				"runtime_data_claims": map[string]any{"nonce": "n", "tee-pubkey": map[string]any{"kty": "EC"}},
			},
		},
	}}
}

// TokenConformance checks a token issuer: a token comes back, verifies with
// a key from the issuer's JWKS, has a future expiry, and carries the
// submodules it was asked to sign.
func TokenConformance(t *testing.T, opts serve.Options, config []byte) {
	t.Helper()
	c := Start(t, opts, config)
	ti := c.TokenIssuer()
	ctx := context.Background()

	if m := c.Metadata(); m.Kind != sdk.KindToken || m.Name != opts.Name {
		t.Errorf("metadata = %+v, want kind %q and name %q", m, sdk.KindToken, opts.Name)
	}
	issued, err := ti.Issue(ctx, SampleIssueRequest())
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if !issued.ExpiresAt.After(time.Now()) {
		t.Errorf("ExpiresAt = %v, want in the future", issued.ExpiresAt)
	}
	rawJWKS, err := ti.JWKS(ctx)
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(rawJWKS, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("JWKS %s: %v (keys %d)", rawJWKS, err, len(set.Keys))
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("JWKS contains a private key (kid %q)", k.KeyID)
		}
	}
	jws, err := jose.ParseSigned(issued.Token, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.PS256, jose.EdDSA})
	if err != nil {
		t.Fatalf("token does not parse as a JWS: %v", err)
	}
	var payload []byte
	for _, k := range set.Keys {
		if payload, err = jws.Verify(k); err == nil {
			break
		}
	}
	if payload == nil {
		t.Fatalf("token does not verify with any key of the JWKS: %v", err)
	}
	var claims struct {
		Exp     int64                      `json:"exp"`
		Submods map[string]json.RawMessage `json:"submods"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatalf("claims: %v", err)
	}
	if claims.Exp != issued.ExpiresAt.Unix() {
		t.Errorf("exp = %d, want ExpiresAt %d", claims.Exp, issued.ExpiresAt.Unix())
	}
	if _, ok := claims.Submods["cpu0"]; !ok {
		t.Errorf("token claims have no submods.cpu0: %s", payload)
	}
}
