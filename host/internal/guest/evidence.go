package guest

import (
	"encoding/base64"
	"encoding/json"
)

// SampleEvidence is evidence for the "sample" TEE bound to a runtime-data
// digest: the sample verifier checks that report_data decodes (standard
// base64) to exactly the digest.
type SampleEvidence struct {
	SVN        string `json:"svn"`
	ReportData string `json:"report_data"`
}

// NewSampleEvidence returns {"svn":"1","report_data":"<std b64 of digest>"}.
func NewSampleEvidence(digest []byte) SampleEvidence {
	return SampleEvidence{SVN: "1", ReportData: base64.StdEncoding.EncodeToString(digest)}
}

// JSON returns the evidence as primary_evidence JSON.
func (e SampleEvidence) JSON() json.RawMessage {
	b, _ := json.Marshal(e) // two strings: cannot fail
	return b
}
