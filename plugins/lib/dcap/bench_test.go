package dcap_test

import (
	"context"
	"crypto/x509"
	"testing"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/plugins/lib/dcap/dcaptest"
	"github.com/gokbs/kbs/sdk/plugintest"
)

func benchVerify(b *testing.B, v *dcap.Verifier, raw []byte) {
	b.Helper()
	if _, err := v.Verify(context.Background(), raw); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify: a real quote without collateral (PCK chain and the three
// signatures), and synthetic quotes with collateral and CRLs.
func BenchmarkVerify(b *testing.B) {
	b.Run("real TD quote, no collateral", func(b *testing.B) {
		benchVerify(b, dcap.New(dcap.Options{Now: at(realNow)}), plugintest.EvidenceFile(b, "tdx/tdx_quote_4.dat"))
	})
	b.Run("real SGX quote, no collateral", func(b *testing.B) {
		benchVerify(b, dcap.New(dcap.Options{Now: at(realNow)}), plugintest.EvidenceFile(b, "sgx/occlum_quote.dat"))
	})
	b.Run("TD quote with collateral", func(b *testing.B) {
		benchVerify(b, testVerifier(platform, true, dcaptest.CollateralOptions{}), platform.TDXQuote(dcaptest.TDXOptions{}))
	})
	b.Run("SGX quote with collateral", func(b *testing.B) {
		benchVerify(b, testVerifier(platform, false, dcaptest.CollateralOptions{}), platform.SGXQuote(dcaptest.SGXOptions{}))
	})
	b.Run("TD quote, collateral from a directory", func(b *testing.B) {
		dir := b.TempDir()
		if err := platform.WriteCollateralDir(dir, dcaptest.CollateralOptions{}); err != nil {
			b.Fatal(err)
		}
		v := dcap.New(dcap.Options{Roots: []*x509.Certificate{platform.Root}, CheckRevocations: true,
			Collateral: &dcap.Store{Dir: dir}, Now: at(testNow)})
		benchVerify(b, v, platform.TDXQuote(dcaptest.TDXOptions{}))
	})
}

func BenchmarkParseQuote(b *testing.B) {
	raw := plugintest.EvidenceFile(b, "tdx/tdx_quote_4.dat")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dcap.ParseQuote(raw); err != nil {
			b.Fatal(err)
		}
	}
}
