package csv

import (
	"crypto/sha512"
	"testing"

	"github.com/gokbs/kbs/sdk/plugintest"
)

// FuzzParseEvidence feeds the evidence parser, and the signature check
// behind it, with mutations of real and generated evidence.
func FuzzParseEvidence(f *testing.F) {
	c := newTestChain(f)
	d := sha512.Sum384([]byte("fuzz"))
	f.Add(c.evidence(f, d[:], evidenceOpts{withHSKCEK: true}))
	f.Add(c.evidence(f, d[:], evidenceOpts{version: 2}))
	if real := plugintest.EvidenceSeed(f, "csv/csv_evidence.json"); real != nil {
		f.Add(real)
	}
	f.Add([]byte(`{"attestation_report":{"magic":[],"flags":1,"data":[]},"cert_chain":{"pek":{}},"serial_number":[65]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := parseEvidence(raw)
		if err != nil {
			return
		}
		_ = verifyReport(p.pek, p.report)
		_ = p.report.claims(p.chip)
		if p.hsk != nil {
			_ = verifyHSKCEK(builtinHRK(), p.hsk, p.cek)
		}
	})
}
