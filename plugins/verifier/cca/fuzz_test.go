package cca

import (
	"crypto/elliptic"
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
	if real := plugintest.EvidenceSeed(f, "cca/cca-example-token.cbor"); real != nil {
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
