//go:build !kbs_snp_test_roots

package azsnpvtpm

import libsnp "github.com/gokbs/kbs/plugins/lib/snp"

// testSettings is empty in a release build: no setting can replace AMD's
// roots.
type testSettings struct{}

func (testSettings) apply(*libsnp.Verifier) error { return nil }

// testRootsEnabled says whether this build accepts test_roots_pem.
const testRootsEnabled = false
