package ita

import "testing"

// FakeTrustAuthority starts the local Trust Authority and returns the
// plugin settings for it.
func FakeTrustAuthority(t testing.TB) []byte { return newFakeITA(t).settingsFor(t, nil) }

// TDXEvidence is evidence with an appraisable TDX quote bound to reportData.
func TDXEvidence(reportData []byte) []byte {
	return quoteEvidence(tdxQuote(fit(reportData, 64), nil, true))
}

// SGXEvidence is evidence with an appraisable SGX quote bound to reportData.
func SGXEvidence(reportData []byte) []byte {
	return quoteEvidence(sgxQuote(fit(reportData, 64), nil, true))
}

// UnappraisableTDXEvidence is a TDX quote the Trust Authority refuses.
func UnappraisableTDXEvidence(reportData []byte) []byte {
	return quoteEvidence(tdxQuote(fit(reportData, 64), nil, false))
}
