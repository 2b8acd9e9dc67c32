// Package sample verifies evidence of the "sample" TEE, the software-only
// TEE that trustee's guest attester emulates for tests and demos. Its
// evidence carries no signature: the only check is that it is bound to the
// expected runtime-data digest. Never trust it in production; the default
// resource policy denies it.
package sample

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TEE is the only TEE name this verifier handles.
const TEE = "sample"

// Verifier is the sample TEE verifier. It is stateless.
type Verifier struct{}

var (
	_ verifier.Verifier = (*Verifier)(nil)
	_ sdk.Configurer    = (*Verifier)(nil)
)

// New returns a sample verifier.
func New() *Verifier { return &Verifier{} }

// Configure accepts no settings but an empty object, so that a typo in the
// operator's configuration is not silently ignored.
func (*Verifier) Configure(_ context.Context, config []byte) error {
	var none struct{}
	return sdk.DecodeConfig(config, &none)
}

// evidence is what the guest attester sends: {"svn":"1","report_data":"<b64>"}.
// Unknown fields are ignored, as trustee does.
type evidence struct {
	SVN        json.RawMessage `json:"svn"`
	ReportData *string         `json:"report_data"`
}

// Verify checks that the evidence's report_data is the std-base64 form of
// req.ReportData and returns trustee's sample claims.
func (*Verifier) Verify(ctx context.Context, req *verifier.Request) (verifier.Claims, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.TEE != TEE {
		return nil, sdk.Unsupported("sample verifier: TEE %q is not %q", req.TEE, TEE)
	}
	var ev evidence
	if err := json.Unmarshal(req.Evidence, &ev); err != nil {
		return nil, sdk.BadEvidence("sample evidence: %v", err)
	}
	svn, err := parseSVN(ev.SVN)
	if err != nil {
		return nil, err
	}
	if ev.ReportData == nil {
		return nil, sdk.BadEvidence("sample evidence: report_data is missing")
	}
	// The attester encodes with padding and canonical trailing bits, like
	// Rust's STANDARD engine, which trustee decodes with; Go would otherwise
	// also skip line breaks.
	if strings.ContainsAny(*ev.ReportData, "\r\n") {
		return nil, sdk.BadEvidence("sample evidence: report_data is not standard base64")
	}
	got, err := base64.StdEncoding.Strict().DecodeString(*ev.ReportData)
	if err != nil {
		return nil, sdk.BadEvidence("sample evidence: report_data is not standard base64: %v", err)
	}
	if subtle.ConstantTimeCompare(got, req.ReportData) != 1 {
		return nil, sdk.BadEvidence("sample evidence: report_data does not match the expected runtime-data digest")
	}

	claims := verifier.Claims{
		"svn":         svn,
		"report_data": *ev.ReportData,
		// Fixed values, as trustee's sample verifier reports them, so that
		// trustee's sample policies and reference values keep working.
		"launch_digest":    "abcde",
		"platform_version": map[string]any{"major": 1, "minor": 4},
		"debug":            false,
	}
	// The sample TEE has no init-data field to check; trustee reports the
	// digest so that the host can bind init_data_claims to the token.
	if len(req.InitDataDigest) > 0 {
		claims["init_data"] = base64.StdEncoding.EncodeToString(req.InitDataDigest)
	}
	return claims, nil
}

// parseSVN accepts svn as a string (what the attester sends) or a JSON
// number, and returns it as a string (what trustee's claims carry).
func parseSVN(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", sdk.BadEvidence("sample evidence: svn is missing")
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", sdk.BadEvidence("sample evidence: svn: %v", err)
		}
		return s, nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", sdk.BadEvidence("sample evidence: svn: %v", err)
		}
		return n.String(), nil
	}
	return "", sdk.BadEvidence("sample evidence: svn must be a string or a number, got %s", raw)
}
