package dcap_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/testing/testdata"
	"github.com/google/go-tdx-guest/verify"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/plugins/lib/dcap/dcaptest"
	"github.com/gokbs/kbs/sdk/plugintest"
)

// goTDXGuest verifies a v4 TD quote with Google's go-tdx-guest (quote,
// PCK chain, QE report, attestation key; no collateral). An explicit root
// pool also keeps it from logging "Using embedded Intel certificate".
func goTDXGuest(raw []byte, root *x509.Certificate, now time.Time) error {
	q, err := abi.QuoteToProto(raw)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return verify.TdxQuote(q, &verify.Options{TrustedRoots: pool,
		Now: &verify.TimeSet{PckCertChain: now, TcbInfo: now, QeIdentity: now, PckCrl: now, RootCaCrl: now}})
}

// TestAgreesWithGoTDXGuest: on every v4 TD quote here, and on copies with
// one byte changed, this verifier and go-tdx-guest accept and reject alike.
func TestAgreesWithGoTDXGuest(t *testing.T) {
	type input struct {
		raw  []byte
		root *x509.Certificate
		now  time.Time
	}
	inputs := map[string]input{
		"tdx_quote_4":  {plugintest.EvidenceFile(t, "tdx/tdx_quote_4.dat"), dcap.IntelRoot(), realNow},
		"tdx_quote_6":  {plugintest.EvidenceFile(t, "tdx/tdx_quote_6.dat"), dcap.IntelRoot(), realNow},
		"az_td_quote":  {plugintest.EvidenceFile(t, "az-tdx-vtpm/td-quote.bin"), dcap.IntelRoot(), realNow},
		"gotdx_spr_e4": {testdata.RawQuote, dcap.IntelRoot(), realNow},
		"synthetic":    {platform.TDXQuote(dcaptest.TDXOptions{ReportData: []byte("x")}), platform.Root, testNow},
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			mine := dcap.New(dcap.Options{Roots: []*x509.Certificate{in.root}, Now: at(in.now)})
			check := func(raw []byte, what string) bool {
				_, errMine := mine.Verify(context.Background(), raw)
				errTheirs := goTDXGuest(raw, in.root, in.now)
				if (errMine == nil) != (errTheirs == nil) {
					t.Errorf("%s: this verifier says %v, go-tdx-guest says %v", what, errMine, errTheirs)
					return false
				}
				return errMine == nil
			}
			if !check(in.raw, "unchanged") {
				t.Fatal("the unchanged quote does not verify")
			}
			// Every 29th byte, so that each region of the quote is hit.
			step := 29
			if testing.Short() {
				step = 211
			}
			for i := 0; i < len(in.raw); i += step {
				check(flip(in.raw, i), "byte "+itoa(i)+" flipped")
			}
			check(in.raw[:len(in.raw)/2], "half")
			check(in.raw[:dcap.HeaderSize+dcap.TD10BodySize], "unsigned")
		})
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
