// Package snp verifies AMD SEV-SNP attestation reports (Milan, Genoa and
// Turin) and produces trustee's SNP claims. It is the library behind the
// "snp" verifier plugin and the SNP half of the Azure vTPM verifier.
//
// What a successful VerifyReport proves: the report is signed by a VCEK or
// VLEK whose certificate chains, at the verification time, to AMD's pinned
// ARK for the report's processor generation; the certificate's TCB equals
// the report's REPORTED_TCB (and, for a VCEK, its hwID the CHIP_ID unless
// that is masked); the report's version is at least the configured minimum;
// and its VMPL is the configured one. VerifyEvidence adds the bindings:
// REPORT_DATA == pad(runtime-data digest, 64) and, with init-data,
// HOST_DATA == pad/trunc(init-data digest, 32).
//
// Not checked: revocation (AMD publishes CRLs for the ASK/ASVK only and
// does not revoke VCEKs; fetching them needs the network), and policy
// questions (debug allowed, minimum TCB, measurement), which belong to the
// attestation policy through the claims.
package snp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-sev-guest/verify"

	"github.com/gokbs/kbs/plugins/lib/snp/internal/testhook"
	"github.com/gokbs/kbs/sdk"
)

// DefaultMinReportVersion is trustee's minimum: version 2 reports do not
// say which processor generation made them, so the VCEK cannot be fetched
// without guessing.
const DefaultMinReportVersion = 3

// DefaultKDSTimeout bounds one KDS request.
const DefaultKDSTimeout = 10 * time.Second

// Options configure a Verifier. The zero value verifies like trustee: VMPL
// 0, version 3 or later, VCEK from the evidence or else from AMD's KDS
// (cached in memory).
type Options struct {
	// VMPL is the VMPL the report must have been requested at.
	VMPL uint32
	// MinReportVersion is the oldest report version accepted, 2 to 5; 0
	// means DefaultMinReportVersion.
	MinReportVersion uint32
	// VCEKDir is an offline store of VCEKs in trustee's layout:
	// <dir>/vcek/<hwid>/<blNN_teeNN_snpNN_ucodeNN[_fmcNN]>_vcek.der, else
	// <dir>/vcek/<hwid>/vcek.der. hwid is the hex CHIP_ID (its first 8
	// bytes on Turin). Empty: no offline store.
	VCEKDir string
	// KDSBaseURL is the KDS to fetch VCEKs from; empty means
	// DefaultKDSBaseURL.
	KDSBaseURL string
	// KDSDisabled keeps the verifier off the network.
	KDSDisabled bool
	// KDSTimeout bounds one KDS request; 0 means DefaultKDSTimeout.
	KDSTimeout time.Duration
	// CacheDir keeps the VCEKs fetched from KDS across restarts, in the
	// offline-store layout. Empty: memory only.
	CacheDir string
	// HTTPClient overrides the client used for KDS (its Timeout is then
	// the caller's business).
	HTTPClient *http.Client
	// Now is the time at which certificate validity is checked; nil means
	// time.Now.
	Now func() time.Time
}

// Verifier verifies SNP reports. It is safe for concurrent use and keeps
// caches (verified endorsement keys, fetched VCEKs), so create one and
// reuse it.
type Verifier struct {
	opts  Options
	minV  uint32
	now   func() time.Time
	roots map[Generation]*rootSet
	kds   *kdsClient

	mu   sync.Mutex
	veks map[vekKey]*vek
}

type vekKey struct {
	sum    [32]byte
	gen    Generation
	signer Signer
}

// New returns a Verifier. Invalid options are sdk.InvalidArgument errors.
func New(opts Options) (*Verifier, error) {
	v := &Verifier{opts: opts, minV: opts.MinReportVersion, now: opts.Now, veks: map[vekKey]*vek{}}
	if v.minV == 0 {
		v.minV = DefaultMinReportVersion
	}
	if v.minV < MinParsableVersion || v.minV > MaxParsableVersion {
		return nil, sdk.InvalidArgument("snp: minimum report version %d is not in %d..%d", v.minV, MinParsableVersion, MaxParsableVersion)
	}
	if opts.VMPL > 3 {
		return nil, sdk.InvalidArgument("snp: VMPL %d is not in 0..3", opts.VMPL)
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.roots = make(map[Generation]*rootSet, len(amdRoots))
	for g, rs := range amdRoots {
		v.roots[g] = rs
	}
	c := &kdsClient{cacheDir: opts.CacheDir, http: opts.HTTPClient, mem: map[vcekKey][]byte{}, inflight: map[vcekKey]*fetch{}}
	if !opts.KDSDisabled {
		c.base = DefaultKDSBaseURL
		if opts.KDSBaseURL != "" {
			c.base = trimBase(opts.KDSBaseURL)
		}
	}
	if c.http == nil {
		t := opts.KDSTimeout
		if t == 0 {
			t = DefaultKDSTimeout
		}
		c.http = &http.Client{Timeout: t}
	}
	v.kds = c
	return v, nil
}

func init() {
	testhook.TrustRoots = func(x any, generation string, ark, ask, asvk *x509.Certificate) error {
		g, ok := parseGeneration(generation)
		if !ok {
			return sdk.InvalidArgument("snp: unknown generation %q", generation)
		}
		v := x.(*Verifier)
		v.mu.Lock()
		defer v.mu.Unlock()
		v.roots[g] = &rootSet{ark: ark, ask: ask, asvk: asvk}
		clear(v.veks)
		return nil
	}
}

// Expected is what the evidence must be bound to.
type Expected struct {
	// ReportData is the runtime-data digest; REPORT_DATA must equal it
	// zero-padded to 64 bytes. Empty: not checked (trustee's "not
	// provided"; the host always provides it).
	ReportData []byte
	// InitDataDigest, when not empty, must equal HOST_DATA (zero-padded or
	// truncated to 32 bytes).
	InitDataDigest []byte
}

// VerifyEvidence parses the guest's evidence JSON, verifies the report
// with the evidence's certificates (see VerifyReport) and checks the
// bindings in want.
func (v *Verifier) VerifyEvidence(ctx context.Context, evidence []byte, want Expected) (*Report, error) {
	ev, err := ParseEvidence(evidence)
	if err != nil {
		return nil, err
	}
	r, err := v.verify(ctx, ev.Report, ev.CertChain)
	if err != nil {
		return nil, err
	}
	if len(want.ReportData) > 0 {
		if err := CheckReportData(r, want.ReportData); err != nil {
			return nil, err
		}
	}
	if len(want.InitDataDigest) > 0 {
		if err := CheckHostData(r, want.InitDataDigest); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// VerifyReport verifies a raw ATTESTATION_REPORT: its version, its
// endorsement key's chain to AMD's pinned roots, the key's TCB against
// REPORTED_TCB, the signature and the VMPL. It does not look at
// REPORT_DATA or HOST_DATA: callers bind those themselves (CheckReportData,
// CheckHostData; the Azure verifier binds the HCL data instead).
//
// The endorsement key comes from certs (VCEK or VLEK entries; ASK and ARK
// entries help build the chain, and an ARK must be AMD's), else, for a VCEK,
// from the offline store, the cache, then KDS.
//
// Errors: sdk.BadEvidence for anything malformed, forged or mismatched;
// sdk.Unsupported for report versions or processors not supported;
// sdk.Unavailable when no VCEK could be obtained.
func (v *Verifier) VerifyReport(ctx context.Context, raw []byte, certs []Cert) (*Report, error) {
	r, err := ParseReport(raw)
	if err != nil {
		return nil, err
	}
	return v.verify(ctx, r, certs)
}

func (v *Verifier) verify(ctx context.Context, r *Report, certs []Cert) (*Report, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if r.Version < v.minV {
		return nil, sdk.Unsupported("snp: report version %d is older than the minimum %d", r.Version, v.minV)
	}
	if r.SigAlgo != 1 {
		return nil, sdk.Unsupported("snp: signature algorithm %d is not ECDSA P-384 with SHA-384", r.SigAlgo)
	}
	if r.Signer != SignerVCEK && r.Signer != SignerVLEK {
		return nil, sdk.BadEvidence("snp: report is not signed (signing key %v)", r.Signer)
	}
	ek, err := v.endorsementKey(ctx, r, certs)
	if err != nil {
		return nil, err
	}
	if r.Generation == GenerationUnknown {
		r.Generation = ek.gen
	}
	if err := checkTCB(r, ek); err != nil {
		return nil, err
	}
	if err := verify.SnpReportSignature(r.Raw, ek.cert); err != nil {
		return nil, sdk.BadEvidence("snp: %v", err)
	}
	if r.VMPL != v.opts.VMPL {
		return nil, sdk.BadEvidence("snp: report VMPL is %d, want %d", r.VMPL, v.opts.VMPL)
	}
	return r, nil
}

// checkTCB compares the certificate's TCB with REPORTED_TCB field by field
// (FMC on Turin only) and a VCEK's hwID with CHIP_ID.
func checkTCB(r *Report, ek *vek) error {
	got, want := r.ReportedTCB, ek.ext.tcb
	turin := ek.gen == Turin
	if got.Bootloader != want.Bootloader || got.TEE != want.TEE || got.SNP != want.SNP || got.Microcode != want.Microcode ||
		(turin && (!ek.ext.hasFMC || got.FMC != want.FMC)) {
		return sdk.BadEvidence("snp: reported TCB %s does not match the %s certificate's TCB %s", tcbString(got, turin), r.Signer, tcbString(want, turin))
	}
	if r.Signer == SignerVCEK && !allZero(r.ChipID[:]) {
		id := r.ChipID[:]
		if len(ek.ext.hwid) == 8 {
			id = id[:8]
		}
		if !bytes.Equal(id, ek.ext.hwid) {
			return sdk.BadEvidence("snp: CHIP_ID does not match the VCEK's hwID")
		}
	}
	return nil
}

func tcbString(t TCB, turin bool) string {
	s := fmt.Sprintf("bl=%d tee=%d snp=%d ucode=%d", t.Bootloader, t.TEE, t.SNP, t.Microcode)
	if turin {
		s += fmt.Sprintf(" fmc=%d", t.FMC)
	}
	return s
}

// endorsementKey finds the report's VCEK or VLEK and verifies its chain.
func (v *Verifier) endorsementKey(ctx context.Context, r *Report, certs []Cert) (*vek, error) {
	want := CertVCEK
	if r.Signer == SignerVLEK {
		want = CertVLEK
	}
	var der []byte
	var arks, icas [][]byte
	other := false
	for _, c := range certs {
		switch c.Type {
		case want:
			if der == nil {
				der = c.Data
			}
		case CertVCEK, CertVLEK:
			other = true
		case CertARK:
			arks = append(arks, c.Data)
		case CertASK:
			icas = append(icas, c.Data)
		}
	}
	if der == nil {
		if other {
			return nil, sdk.BadEvidence("snp: the report is %v-signed but the evidence carries only the other kind of endorsement key", r.Signer)
		}
		if r.Signer == SignerVLEK {
			return nil, sdk.BadEvidence("snp: the report is VLEK-signed but the evidence carries no VLEK certificate")
		}
		var err error
		if der, err = v.fetchVCEK(ctx, r); err != nil {
			return nil, err
		}
	}
	ek, err := v.checkVEK(der, r, icas)
	if err != nil {
		return nil, err
	}
	// An ARK in the evidence must be AMD's: a chain to any other root is
	// forged, even if the endorsement key itself checks out.
	rs := v.rootsFor(ek.gen)
	for _, a := range arks {
		if bytes.Equal(a, rs.ark.Raw) {
			continue
		}
		c, err := parseCert(a)
		if err != nil || !sameKey(c, rs.ark) {
			return nil, sdk.BadEvidence("snp: the evidence's ARK is not AMD's %v ARK", ek.gen)
		}
	}
	return ek, nil
}

func sameKey(a, b *x509.Certificate) bool {
	return bytes.Equal(a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo)
}

func (v *Verifier) rootsFor(g Generation) *rootSet {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.roots[g]
}

// checkVEK verifies an endorsement key certificate for r, remembering
// verified keys so that the expensive RSA chain check runs once per key.
func (v *Verifier) checkVEK(der []byte, r *Report, icas [][]byte) (*vek, error) {
	now := v.now()
	k := vekKey{sum: sha256.Sum256(der), gen: r.Generation, signer: r.Signer}
	v.mu.Lock()
	ek := v.veks[k]
	v.mu.Unlock()
	if ek != nil && !now.Before(ek.notBefore) && !now.After(ek.notAfter) {
		return ek, nil
	}

	c, err := parseCert(der)
	if err != nil {
		return nil, sdk.BadEvidence("snp: %v certificate: %v", r.Signer, err)
	}
	ext, err := checkVEKShape(c, r.Signer)
	if err != nil {
		return nil, sdk.BadEvidence("snp: %v certificate: %v", r.Signer, err)
	}
	gen := r.Generation
	if gen == GenerationUnknown {
		if gen, err = productGeneration(ext); err != nil {
			return nil, sdk.BadEvidence("snp: %v certificate: %v", r.Signer, err)
		}
	}
	var extra []*x509.Certificate
	for _, b := range icas {
		x, err := parseCert(b)
		if err != nil {
			return nil, sdk.BadEvidence("snp: the evidence's ASK: %v", err)
		}
		extra = append(extra, x)
	}
	rs := v.rootsFor(gen)
	if rs == nil {
		return nil, sdk.Unsupported("snp: no AMD roots for %v", gen)
	}
	nb, na, err := verifyChain(c, rs, r.Signer, extra, now)
	if err != nil {
		return nil, sdk.BadEvidence("snp: %v certificate does not chain to AMD's %v ARK: %v", r.Signer, gen, err)
	}
	ek = &vek{cert: c, ext: ext, gen: gen, notBefore: nb, notAfter: na}
	v.mu.Lock()
	if len(v.veks) >= memCacheMax {
		clear(v.veks)
	}
	v.veks[k] = ek
	v.mu.Unlock()
	return ek, nil
}

// fetchVCEK gets the VCEK for r's chip and reported TCB from the offline
// store, else from KDS (through its caches).
func (v *Verifier) fetchVCEK(ctx context.Context, r *Report) ([]byte, error) {
	if allZero(r.ChipID[:]) {
		return nil, sdk.BadEvidence("snp: CHIP_ID is masked, so the evidence must carry the VCEK")
	}
	k := vcekKeyOf(r)
	if v.opts.VCEKDir != "" {
		der, err := readStore(v.opts.VCEKDir, k, true)
		if err != nil {
			return nil, sdk.Unavailable("snp: VCEK store: %v", err)
		}
		if der != nil {
			return der, nil
		}
	}
	if r.Generation == GenerationUnknown {
		return nil, sdk.Unsupported("snp: a version %d report does not name its processor generation, so its VCEK cannot be fetched; the evidence or the offline store must carry it", r.Version)
	}
	return v.kds.get(ctx, k)
}

// CheckReportData checks REPORT_DATA == digest zero-padded to 64 bytes (a
// longer digest is truncated, as trustee does).
func CheckReportData(r *Report, digest []byte) error {
	var want [64]byte
	copy(want[:], digest)
	if subtle.ConstantTimeCompare(want[:], r.ReportData[:]) != 1 {
		return sdk.BadEvidence("snp: REPORT_DATA does not match the expected runtime-data digest")
	}
	return nil
}

// CheckHostData checks HOST_DATA == the init-data digest zero-padded or
// truncated to 32 bytes.
func CheckHostData(r *Report, digest []byte) error {
	var want [32]byte
	copy(want[:], digest)
	if subtle.ConstantTimeCompare(want[:], r.HostData[:]) != 1 {
		return sdk.BadEvidence("snp: HOST_DATA does not match the init-data digest")
	}
	return nil
}

// Claims returns trustee's SNP claims (deps/verifier/src/snp
// parse_tee_evidence): numbers and booleans as JSON types, byte fields as
// lowercase hex. init_data is HOST_DATA whether or not init-data was
// checked, as in trustee.
func Claims(r *Report) map[string]any {
	bit := func(v uint64, n uint) bool { return v&(1<<n) != 0 }
	return map[string]any{
		"policy_abi_major":        int((r.Policy >> 8) & 0xff),
		"policy_abi_minor":        int(r.Policy & 0xff),
		"policy_smt_allowed":      bit(r.Policy, 16),
		"policy_migrate_ma":       bit(r.Policy, 18),
		"policy_debug_allowed":    bit(r.Policy, 19),
		"policy_single_socket":    bit(r.Policy, 20),
		"reported_tcb_bootloader": int(r.ReportedTCB.Bootloader),
		"reported_tcb_tee":        int(r.ReportedTCB.TEE),
		"reported_tcb_snp":        int(r.ReportedTCB.SNP),
		"reported_tcb_microcode":  int(r.ReportedTCB.Microcode),
		"platform_tsme_enabled":   bit(r.PlatformInfo, 1),
		"platform_smt_enabled":    bit(r.PlatformInfo, 0),
		"measurement":             hex.EncodeToString(r.Measurement[:]),
		"report_data":             hex.EncodeToString(r.ReportData[:]),
		"init_data":               hex.EncodeToString(r.HostData[:]),
		"chip_id":                 hex.EncodeToString(r.ChipID[:]),
	}
}
