//go:build kbs_snp_test_roots

package azsnpvtpm

import (
	libsnp "github.com/gokbs/kbs/plugins/lib/snp"
	"github.com/gokbs/kbs/plugins/lib/snp/snptest"
)

// testSettings, in a build with the kbs_snp_test_roots tag only (as the
// snp plugin), lets an end-to-end test make the plugin trust snptest's
// roots:
//
//	{"test_roots_pem": {"Milan": "<snptest Signer.RootsPEM()>"}}
//
// Never ship such a binary.
type testSettings struct {
	TestRootsPEM map[string]string `json:"test_roots_pem"`
}

func (t testSettings) apply(v *libsnp.Verifier) error {
	for gen, bundle := range t.TestRootsPEM {
		if err := snptest.TrustPEM(v, gen, []byte(bundle)); err != nil {
			return err
		}
	}
	return nil
}

// testRootsEnabled says whether this build accepts test_roots_pem.
const testRootsEnabled = true
