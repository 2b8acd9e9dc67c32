package ita

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/verifier"
)

// FuzzQuote feeds the evidence parser, seeded with the real TDX and SGX
// quotes and generated ones.
func FuzzQuote(f *testing.F) {
	f.Add(TEETDX, quoteEvidence(tdxQuote(fit(digest, 64), nil, true)))
	f.Add(TEESGX, quoteEvidence(sgxQuote(fit(digest, 64), nil, true)))
	for tee, rel := range map[string]string{TEETDX: "tdx/tdx_quote_4.dat", TEESGX: "sgx/occlum_quote.dat"} {
		if q := plugintest.EvidenceSeed(f, rel); q != nil {
			f.Add(tee, quoteEvidence(q))
		}
	}
	f.Fuzz(func(t *testing.T, tee string, raw []byte) {
		q, err := quote(tee, raw)
		if err != nil {
			return
		}
		if _, err := base64.StdEncoding.DecodeString(q); err != nil {
			t.Fatalf("accepted a quote that is not base64: %v", err)
		}
	})
}

// FuzzMapClaims feeds the claims mapping with token payloads.
func FuzzMapClaims(f *testing.F) {
	for _, q := range [][]byte{tdxQuote(fit(digest, 64), fit(initData, 48), true), sgxQuote(fit(digest, 64), nil, true)} {
		tee, claims := parseQuote(q)
		claims["attester_type"] = tee
		b, _ := json.Marshal(claims)
		f.Add(tee, b)
		nested, _ := json.Marshal(map[string]any{tee: claims})
		f.Add(tee, nested)
	}
	f.Fuzz(func(t *testing.T, tee string, payload []byte) {
		var all map[string]any
		if json.Unmarshal(payload, &all) != nil {
			return
		}
		for _, init := range [][]byte{nil, initData} {
			_, _ = mapClaims(&verifier.Request{TEE: tee, ReportData: digest, InitDataDigest: init}, all, false)
		}
	})
}
