package csv

import (
	"crypto/sha512"
	"errors"
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
	if real := realSeed(f, "csv/csv_evidence.json"); real != nil {
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

// realSeed reads a file of the real evidence for a seed corpus, or returns
// nil when the evidence is absent: unlike a test, a fuzz target still has
// its generated seeds to run on, so it must not be skipped.
func realSeed(f *testing.F, rel string) (b []byte) {
	defer func() {
		if r := recover(); r != nil && r != errAbsent {
			panic(r)
		}
	}()
	return plugintest.EvidenceFile(skipProbe{f}, rel)
}

var errAbsent = errors.New("evidence absent")

// skipProbe turns plugintest's skip into a panic that realSeed recovers.
type skipProbe struct{ testing.TB }

func (skipProbe) Skip(...any)          { panic(errAbsent) }
func (skipProbe) Skipf(string, ...any) { panic(errAbsent) }
func (skipProbe) SkipNow()             { panic(errAbsent) }
