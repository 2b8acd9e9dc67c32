// Package verifier is the plugin kind that appraises TEE evidence.
//
// A verifier computes only: evidence and expectations in, claims out. It
// holds no state between calls and no secrets.
package verifier

import (
	"context"
	"encoding/json"
)

// Request is one piece of evidence to verify.
type Request struct {
	// TEE is the canonical TEE name ("snp", "tdx", "az-snp-vtpm", "sample", ...).
	TEE string
	// Evidence is the TEE's primary evidence exactly as the guest sent it.
	Evidence json.RawMessage
	// ReportData is the expected runtime-data digest (the hash of the
	// canonical runtime data: nonce, TEE public key, additional evidence).
	// The verifier checks that the evidence is bound to it, in the way its
	// TEE binds report data (padded into REPORT_DATA, as the TPM nonce, ...).
	ReportData []byte
	// HashAlgorithm names the hash that produced ReportData: "sha384" unless
	// the challenge negotiated another one.
	HashAlgorithm string
	// InitDataDigest is the digest of the guest's init-data, or nil when the
	// guest sent none. When set, the verifier checks the TEE's init-data
	// field (HOST_DATA, MRCONFIGID, PCR8, ...) against it.
	InitDataDigest []byte
}

// Claims is the verifier's output: a JSON object with trustee's claim names,
// so that policies written for trustee keep working. By convention the
// verifier also sets "report_data" and, when init-data was checked,
// "init_data"; the host moves those out of the TEE's claims into the token.
type Claims map[string]any

// Verifier verifies evidence for the TEE types it declares in its
// descriptor.
//
// Errors: sdk.BadEvidence when the evidence is malformed, forged or not bound
// to the expected report data; sdk.Unsupported for an evidence format it does
// not know; sdk.Unavailable when collateral could not be fetched.
type Verifier interface {
	Verify(ctx context.Context, req *Request) (Claims, error)
}
