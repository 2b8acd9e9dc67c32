// Package token is the plugin kind that issues attestation tokens from
// appraised claims and publishes the keys that verify them.
package token

import (
	"context"
	"encoding/json"
	"fmt"
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

// UnmarshalJSON is the inverse of MarshalJSON. It reads the object once:
// the members it knows are decoded from their raw bytes, the others become
// Extensions (a token issuer decodes the host's request on every attest).
func (a *Appraisal) UnmarshalJSON(b []byte) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	var p Appraisal
	for k, raw := range all {
		var err error
		switch k {
		case "ear.status":
			err = json.Unmarshal(raw, &p.Status)
		case "ear.trustworthiness-vector":
			err = json.Unmarshal(raw, &p.TrustVector)
		case "ear.appraisal-policy-id":
			err = json.Unmarshal(raw, &p.PolicyID)
		case "ear.veraison.annotated-evidence":
			err = json.Unmarshal(raw, &p.AnnotatedEvidence)
		default:
			var v any
			if err = json.Unmarshal(raw, &v); err == nil {
				if p.Extensions == nil {
					p.Extensions = make(map[string]any, len(all))
				}
				p.Extensions[k] = v
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	*a = p
	return nil
}
