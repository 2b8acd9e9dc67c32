package dcap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/gokbs/kbs/sdk"
)

// Options configure a Verifier.
type Options struct {
	// Roots are the trusted root CAs of PCK chains and TCB signing chains.
	// Nil means the pinned Intel SGX Root CA.
	Roots []*x509.Certificate
	// Collateral is where TCB info, QE identity and CRLs come from. Nil
	// skips the collateral checks: the quote, its signatures and its PCK
	// chain are verified, and Result.TCB is nil. Only tests and tools
	// want that; a verifier plugin always has a source.
	Collateral Source
	// CheckRevocations checks the PCK chain and the TCB signing
	// certificate against Intel's CRLs.
	CheckRevocations bool
	// AcceptExpiredCollateral lets verification succeed with collateral
	// past its nextUpdate (the collateral_expiration_status claim is then
	// "1"), so that policy decides. Otherwise expired collateral is an
	// Unavailable error.
	AcceptExpiredCollateral bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier verifies DCAP ECDSA quotes. It is safe for concurrent use.
type Verifier struct {
	opts    Options
	roots   *x509.CertPool
	trusted []*x509.Certificate

	mu      sync.Mutex
	checked map[*Collateral]*checked
	// chains caches verified PCK chains by their PEM: every quote of a
	// platform carries the same chain, and parsing and verifying it is
	// most of the cost of a verification.
	chains map[string]*knownChain
}

type knownChain struct {
	chain    *PCKChain
	platform *PlatformInfo
}

// maxCached bounds the caches of verified chains and collateral.
const maxCached = 4096

// New returns a Verifier.
func New(opts Options) *Verifier {
	v := &Verifier{opts: opts, trusted: opts.Roots, checked: map[*Collateral]*checked{}, chains: map[string]*knownChain{}}
	if len(v.trusted) == 0 {
		v.trusted = []*x509.Certificate{IntelRoot()}
	}
	v.roots = x509.NewCertPool()
	for _, r := range v.trusted {
		v.roots.AddCert(r)
	}
	return v
}

func (v *Verifier) now() time.Time {
	if v.opts.Now != nil {
		return v.opts.Now()
	}
	return time.Now()
}

// Result is a verified quote and what verification learnt about it. Chain
// and Platform are shared by every result of the same platform: read them,
// do not change them.
type Result struct {
	Quote    *Quote
	Chain    *PCKChain
	Platform *PlatformInfo
	// TCB is nil when the Verifier has no collateral source.
	TCB *TCBResult
}

// TCBResult is the verdict of the collateral: the TCB status and the
// dates trustee reports as claims.
type TCBResult struct {
	TCBMatch
	EvaluationDataNumber int
	EarliestIssue        time.Time
	LatestIssue          time.Time
	EarliestExpiration   time.Time
	// CollateralExpired is QVL's collateral_expiration_status: some
	// collateral or certificate expired before the time of verification.
	CollateralExpired bool
	// PCKCRLNumber and RootCRLNumber are the CRL numbers, nil when
	// revocation was not checked.
	PCKCRLNumber, RootCRLNumber *int64
}

// Verify parses and verifies a quote:
//   - the PCK chain in the quote chains to a trusted root at the current
//     time, with Intel's names and ECDSA P-256 keys;
//   - the QE report is signed by the PCK key, and its report data is
//     SHA-256(attestation key || QE authentication data), binding the
//     attestation key to the QE;
//   - the quote (header and body) is signed by the attestation key;
//   - with a collateral source: Intel's signatures on the TCB info, QE
//     identity and CRLs, the revocation of the PCK chain, the QE identity,
//     the TDX module identity, and the TCB levels, whose status becomes
//     Result.TCB rather than an error (a revoked TCB is an error).
//
// Errors are sdk classes: BadEvidence for a quote that is malformed,
// forged, revoked or not covered by the collateral; Unsupported for quote
// formats it does not handle; Unavailable when collateral is missing or
// (unless accepted) expired.
func (v *Verifier) Verify(ctx context.Context, raw []byte) (*Result, error) {
	q, err := ParseQuote(raw)
	if err != nil {
		return nil, err
	}
	return v.VerifyQuote(ctx, q)
}

// VerifyQuote is Verify for a parsed quote.
func (v *Verifier) VerifyQuote(ctx context.Context, q *Quote) (*Result, error) {
	now := v.now()
	chain, platform, err := v.pckChain(q.PCKChain, now)
	if err != nil {
		return nil, err
	}
	if err := verifySignatures(q, chain); err != nil {
		return nil, err
	}
	res := &Result{Quote: q, Chain: chain, Platform: platform}
	if v.opts.Collateral == nil {
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req := Request{TDX: q.IsTDX(), FMSPC: hexUpper(platform.FMSPC), CA: chain.CA(), CRLs: v.opts.CheckRevocations}
	raw, err := v.opts.Collateral.Collateral(ctx, req)
	if err != nil {
		if sdk.ClassOf(err) == sdk.ClassInternal {
			err = sdk.Unavailable("DCAP collateral: %w", err)
		}
		return nil, err
	}
	col, err := v.check(raw, req)
	if err != nil {
		return nil, err
	}
	if res.TCB, err = v.evaluate(q, chain, platform, col, now); err != nil {
		return nil, err
	}
	return res, nil
}

// pckChain parses and verifies a quote's PCK chain, or finds it verified
// before; then only the validity period of its certificates depends on
// the time, and is checked again.
func (v *Verifier) pckChain(pemChain []byte, now time.Time) (*PCKChain, *PlatformInfo, error) {
	v.mu.Lock()
	k := v.chains[string(pemChain)]
	v.mu.Unlock()
	if k != nil {
		for _, c := range []*x509.Certificate{k.chain.Leaf, k.chain.Intermediate, k.chain.Root} {
			if now.Before(c.NotBefore) || now.After(c.NotAfter) {
				return nil, nil, sdk.BadEvidence("PCK chain: %q is not valid at %s (valid %s to %s)", c.Subject.CommonName,
					now.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
			}
		}
		return k.chain, k.platform, nil
	}
	chain, err := ParsePCKChain(pemChain)
	if err != nil {
		return nil, nil, err
	}
	if err := chain.verify(v.roots, v.trusted, now); err != nil {
		return nil, nil, err
	}
	platform, err := ParsePlatformInfo(chain.Leaf, chain.CA())
	if err != nil {
		return nil, nil, err
	}
	v.mu.Lock()
	if len(v.chains) >= maxCached {
		clear(v.chains)
	}
	v.chains[string(pemChain)] = &knownChain{chain: chain, platform: platform}
	v.mu.Unlock()
	return chain, platform, nil
}

// verifySignatures checks the QE report signature, the attestation key
// binding and the quote signature.
func verifySignatures(q *Quote, chain *PCKChain) error {
	pck, err := p256Key(chain.Leaf)
	if err != nil {
		return sdk.BadEvidence("PCK certificate: %v", err)
	}
	if !verifyP256(pck, q.QEReport.Raw, q.QESignature) {
		return sdk.BadEvidence("quote: the QE report is not signed by the PCK key")
	}
	h := sha256.New()
	h.Write(q.AttestationKey)
	h.Write(q.QEAuthData)
	want := append(h.Sum(nil), make([]byte, 32)...)
	if !bytes.Equal(q.QEReport.ReportData(), want) {
		return sdk.BadEvidence("quote: the QE report data does not bind the attestation key")
	}
	ak, err := rawP256Key(q.AttestationKey)
	if err != nil {
		return sdk.BadEvidence("quote: attestation key: %v", err)
	}
	if !verifyP256(ak, q.Signed, q.Signature) {
		return sdk.BadEvidence("quote: the signature does not verify with the attestation key")
	}
	return nil
}

// check returns the verified form of raw, reusing an earlier check of the
// same *Collateral.
func (v *Verifier) check(raw *Collateral, req Request) (*checked, error) {
	v.mu.Lock()
	c := v.checked[raw]
	v.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := checkCollateral(raw, req, v.roots, v.trusted)
	if err != nil {
		return nil, sdk.Unavailable("DCAP collateral for FMSPC %s: %v", req.FMSPC, err)
	}
	v.mu.Lock()
	// Sources hand out a new *Collateral only when it changed; bound the
	// map anyway.
	if len(v.checked) >= maxCached {
		clear(v.checked)
	}
	v.checked[raw] = c
	v.mu.Unlock()
	return c, nil
}

// evaluate checks the quote's PCK chain against the CRLs, the dates, and
// the TCB levels.
func (v *Verifier) evaluate(q *Quote, chain *PCKChain, p *PlatformInfo, c *checked, now time.Time) (*TCBResult, error) {
	res := &TCBResult{}
	issue := append([]time.Time{chain.Leaf.NotBefore, chain.Intermediate.NotBefore, chain.Root.NotBefore}, c.issue...)
	expiry := append([]time.Time{chain.Leaf.NotAfter, chain.Intermediate.NotAfter, chain.Root.NotAfter}, c.expiry...)
	if c.crlsUsed {
		if err := c.checkPCKCRLIssuer(chain.Intermediate); err != nil {
			return nil, err
		}
		crl := c.pckCRL
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(chain.Leaf.SerialNumber) == 0 {
				return nil, sdk.BadEvidence("PCK chain: the PCK certificate (serial %s) is revoked", chain.Leaf.SerialNumber)
			}
		}
		if c.revoked[chain.Intermediate.SerialNumber.String()] {
			return nil, sdk.BadEvidence("PCK chain: %q (serial %s) is revoked", chain.Intermediate.Subject.CommonName, chain.Intermediate.SerialNumber)
		}
		res.PCKCRLNumber = crlNumber(c.pckCRL)
		res.RootCRLNumber = crlNumber(c.rootCRL)
	}
	res.EarliestIssue, res.LatestIssue = minMax(issue)
	res.EarliestExpiration, _ = minMax(expiry)
	res.CollateralExpired = !now.Before(res.EarliestExpiration)
	if res.CollateralExpired && !v.opts.AcceptExpiredCollateral {
		return nil, sdk.Unavailable("DCAP collateral for FMSPC %s expired at %s", c.tcbInfo.FMSPC, res.EarliestExpiration.Format(time.RFC3339))
	}
	m, err := MatchTCB(q, p, c.tcbInfo, c.qe)
	if err != nil {
		return nil, err
	}
	res.TCBMatch = *m
	res.EvaluationDataNumber = min(c.tcbInfo.TCBEvaluationDataNumber, c.qe.TCBEvaluationDataNumber)
	return res, nil
}

func crlNumber(crl *x509.RevocationList) *int64 {
	if crl.Number == nil || !crl.Number.IsInt64() {
		return nil
	}
	n := crl.Number.Int64()
	return &n
}

func minMax(ts []time.Time) (lo, hi time.Time) {
	for i, t := range ts {
		if i == 0 || t.Before(lo) {
			lo = t
		}
		if i == 0 || t.After(hi) {
			hi = t
		}
	}
	return lo, hi
}

// Regularize pads b with zeros or truncates it to n bytes, the way trustee
// fits a digest into a report field.
func Regularize(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}

// String describes a TCB result for logs.
func (t *TCBResult) String() string {
	return fmt.Sprintf("%s (platform %s, module %s, QE %s)", t.Status, t.PlatformStatus, t.ModuleStatus, t.QEStatus)
}
