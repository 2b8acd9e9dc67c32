package dcaptest_test

import (
	"context"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/plugins/lib/dcap/dcaptest"
)

// A TD quote over a runtime-data digest, verified the way the tdx plugin
// does with {"collateral_dir": dir, "root_ca_file": dir+"/root.pem"}.
func Example() {
	p := dcaptest.New(dcaptest.Options{}) // certificates valid around now
	dir, err := os.MkdirTemp("", "dcap")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if err := p.WriteCollateralDir(dir, dcaptest.CollateralOptions{}); err != nil {
		panic(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), p.RootPEM(), 0o644); err != nil {
		panic(err)
	}

	digest := sha512.Sum384([]byte(`{"additional-evidence":"","nonce":"…","tee-pubkey":{…}}`))
	quote := p.TDXQuote(dcaptest.TDXOptions{ReportData: digest[:]})

	v := dcap.New(dcap.Options{Roots: []*x509.Certificate{p.Root}, CheckRevocations: true, Collateral: &dcap.Store{Dir: dir}})
	res, err := v.Verify(context.Background(), quote)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.TCB.Status, fmt.Sprintf("%x", res.Quote.ReportData()[:4]) == fmt.Sprintf("%x", digest[:4]))
	// Output: UpToDate true
}
