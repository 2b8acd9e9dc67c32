package cca

import (
	"crypto/elliptic"
	"errors"
	"testing"

	"github.com/gokbs/kbs/sdk/plugintest"
)

// FuzzParseToken feeds the CBOR/COSE parser, and the appraisal behind it,
// with mutations of the real example token and of minted ones.
func FuzzParseToken(f *testing.F) {
	cpak := fixedKey(f, elliptic.P384(), "cpak")
	rak := fixedKey(f, elliptic.P384(), "rak")
	for _, cmw := range []bool{false, true} {
		f.Add(minter{cpak: cpak, rak: rak, cmw: cmw}.mint(f, defaultPlatform(), defaultRealm(digest, initData)))
	}
	if real := realSeed(f, "cca/cca-example-token.cbor"); real != nil {
		f.Add(real)
	}
	s := &stores{anchors: map[string]trustAnchor{}, refs: map[string][]refValue{}}
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := parseToken(b)
		if err != nil {
			return
		}
		_ = s.appraise(tok)
		_ = tok.claims()
	})
}

// FuzzTokenBytes feeds the evidence JSON decoder.
func FuzzTokenBytes(f *testing.F) {
	f.Add([]byte(`{"token":[217,1,143,160]}`))
	f.Add([]byte(`"{\"token\":[1,2]}"`))
	f.Add([]byte(`{"token":"2QGPoA=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = tokenBytes(b)
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
