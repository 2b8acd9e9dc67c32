package dcap_test

import (
	"context"
	"crypto/x509"
	"testing"

	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/plugins/lib/dcap/dcaptest"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
)

// FuzzQuote feeds quote parsing and verification (without collateral)
// arbitrary bytes, seeded with the real quotes and synthetic ones. It
// must never panic, and every error must be classified.
func FuzzQuote(f *testing.F) {
	for _, rel := range []string{"tdx/tdx_quote_4.dat", "tdx/tdx_quote_5.dat", "tdx/tdx_quote_6.dat", "sgx/occlum_quote.dat", "az-tdx-vtpm/td-quote.bin"} {
		if b := plugintest.EvidenceSeed(f, rel); b != nil {
			f.Add(b)
		}
	}
	f.Add(testdata.RawQuote)
	f.Add(platform.TDXQuote(dcaptest.TDXOptions{}))
	f.Add(platform.TDXQuote(dcaptest.TDXOptions{Version: 5}))
	f.Add(platform.SGXQuote(dcaptest.SGXOptions{}))
	v := dcap.New(dcap.Options{Roots: []*x509.Certificate{platform.Root, dcap.IntelRoot()}, Now: at(testNow)})
	f.Fuzz(func(t *testing.T, raw []byte) {
		res, err := v.Verify(context.Background(), raw)
		if err != nil {
			if c := sdk.ClassOf(err); c != sdk.ClassBadEvidence && c != sdk.ClassUnsupported {
				t.Fatalf("error of class %q: %v", c, err)
			}
			return
		}
		if res.Quote.IsTDX() {
			dcap.TDXClaims(res.Quote, res.Platform)
		} else {
			dcap.SGXClaims(res.Quote, res.Platform)
		}
		res.SupplementalClaims()
	})
}

// FuzzCollateral feeds the collateral parsers arbitrary PCS bodies.
func FuzzCollateral(f *testing.F) {
	for _, rel := range []string{"tdx/tcbInfo.json", "tdx/enclaveIdentity.json"} {
		if b := plugintest.EvidenceSeed(f, rel); b != nil {
			f.Add(b)
		}
	}
	f.Add(testdata.TcbInfoBody)
	c := platform.Collateral(true, dcaptest.CollateralOptions{})
	f.Add(c.TCBInfo)
	f.Add(c.QEIdentity)
	q, err := dcap.ParseQuote(platform.TDXQuote(dcaptest.TDXOptions{}))
	if err != nil {
		f.Fatal(err)
	}
	chain, _ := dcap.ParsePCKChain(q.PCKChain)
	p, _ := dcap.ParsePlatformInfo(chain.Leaf, chain.CA())
	goodTI, _, _, _ := dcap.ParseTCBInfo(c.TCBInfo)
	goodQE, _, _, _ := dcap.ParseEnclaveIdentity(c.QEIdentity)
	f.Fuzz(func(t *testing.T, body []byte) {
		if ti, _, _, err := dcap.ParseTCBInfo(body); err == nil {
			dcap.MatchTCB(q, p, ti, goodQE)
		}
		if qe, _, _, err := dcap.ParseEnclaveIdentity(body); err == nil {
			dcap.MatchTCB(q, p, goodTI, qe)
		}
	})
}
