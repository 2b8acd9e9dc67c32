package protocol

import "encoding/json"

// Version is the KBS protocol version this broker speaks. trustee requires
// an exact match and so do we: 0.4.0 is the first version with init-data,
// and older clients bind the runtime data differently.
const Version = "0.4.0"

// AcceptedVersions is reported in the error for any other version.
var AcceptedVersions = []string{Version}

// Request is the body of POST /kbs/v0/auth (kbs-types' Request).
type Request struct {
	Version     string          `json:"version"`
	TEE         string          `json:"tee"`
	ExtraParams json.RawMessage `json:"extra-params"`
}

// Challenge is the answer to auth.
type Challenge struct {
	Nonce string `json:"nonce"`
	// ExtraParams is "" for every TEE we support: the guest then hashes
	// its runtime data with its default, SHA-384.
	ExtraParams any `json:"extra-params"`
}

// Attestation is the body of POST /kbs/v0/attest.
type Attestation struct {
	InitData    *InitData    `json:"init-data,omitempty"`
	RuntimeData *RuntimeData `json:"runtime-data"`
	TEEEvidence *TEEEvidence `json:"tee-evidence"`
}

// InitData is the guest's init-data document.
type InitData struct {
	Format string `json:"format"`
	Body   string `json:"body"`
}

// RuntimeData binds the evidence to this session and to the TEE key.
type RuntimeData struct {
	Nonce     string          `json:"nonce"`
	TEEPubKey json.RawMessage `json:"tee-pubkey"`
}

// TEEEvidence is the composite evidence of protocol 0.3.0 and later.
type TEEEvidence struct {
	Primary json.RawMessage `json:"primary_evidence"`
	// Additional is a JSON *string* holding {"<tee>": evidence, ...} or "".
	Additional string `json:"additional_evidence"`
}

// AttestationResponse is the answer to attest.
type AttestationResponse struct {
	Token string `json:"token"`
}
