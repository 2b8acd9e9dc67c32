// Package token is the plugin kind that issues attestation tokens from
// appraised claims and publishes the keys that verify them.
package token

import (
	"context"
	"encoding/json"
	"time"
)

// Appraisal is the host's verdict on one piece of evidence: one EAR
// submodule ("cpu0", "gpu0", ...).
type Appraisal struct {
	// Status is the EAR status: "affirming", "warning", "contraindicated"
	// or "none".
	Status string `json:"ear.status"`
	// TrustVector holds the AR4SI trustworthiness claims.
	TrustVector map[string]int `json:"ear.trustworthiness-vector"`
	// PolicyID names the appraisal policy that produced the verdict.
	PolicyID string `json:"ear.appraisal-policy-id"`
	// AnnotatedEvidence holds the verifier's claims under the TEE name plus
	// report_data, runtime_data_claims, init_data and init_data_claims.
	AnnotatedEvidence map[string]any `json:"ear.veraison.annotated-evidence"`
	// Extensions are further submodule claims set by the policy (for
	// example "ear.trustee.identifiers").
	Extensions map[string]any `json:"-"`
}

// IssueRequest asks for one token.
type IssueRequest struct {
	// Submods maps submodule names to their appraisals.
	Submods map[string]Appraisal `json:"submods"`
}

// Issued is a signed token.
type Issued struct {
	Token     string
	ExpiresAt time.Time
}

// Issuer signs attestation tokens. It owns its signing key; the key never
// leaves the plugin.
type Issuer interface {
	Issue(ctx context.Context, req *IssueRequest) (*Issued, error)
	// JWKS returns the JSON Web Key Set of the public keys whose tokens the
	// host should accept (the current key, and a previous one while tokens
	// signed with it have not expired).
	JWKS(ctx context.Context) (json.RawMessage, error)
}

// MarshalJSON inlines Extensions next to the EAR claims, as EAR requires.
func (a Appraisal) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(a.Extensions)+4)
	for k, v := range a.Extensions {
		m[k] = v
	}
	m["ear.status"] = a.Status
	m["ear.trustworthiness-vector"] = a.TrustVector
	if a.PolicyID != "" {
		m["ear.appraisal-policy-id"] = a.PolicyID
	}
	if a.AnnotatedEvidence != nil {
		m["ear.veraison.annotated-evidence"] = a.AnnotatedEvidence
	}
	return json.Marshal(m)
}

// UnmarshalJSON is the inverse of MarshalJSON.
func (a *Appraisal) UnmarshalJSON(b []byte) error {
	type plain Appraisal
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for _, k := range []string{"ear.status", "ear.trustworthiness-vector", "ear.appraisal-policy-id", "ear.veraison.annotated-evidence"} {
		delete(all, k)
	}
	if len(all) > 0 {
		p.Extensions = make(map[string]any, len(all))
		for k, raw := range all {
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
			p.Extensions[k] = v
		}
	}
	*a = Appraisal(p)
	return nil
}
