// Package testhook lets the snptest package make a Verifier trust test
// roots without giving package snp an exported way to replace AMD's.
package testhook

import "crypto/x509"

// TrustRoots is set by package snp: it makes the *snp.Verifier v trust ark,
// ask and asvk for generation ("Milan", "Genoa", "Turin") instead of AMD's
// certificates.
var TrustRoots func(v any, generation string, ark, ask, asvk *x509.Certificate) error
