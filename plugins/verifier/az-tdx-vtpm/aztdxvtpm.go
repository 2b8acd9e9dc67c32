// Package aztdxvtpm verifies the evidence of Azure TDX confidential VMs
// (TEE "az-tdx-vtpm"): a vTPM quote, the HCL report whose variable data
// carries the vTPM's attestation key, and a TD quote whose REPORT_DATA
// binds that variable data. The vTPM steps are plugins/lib/vtpm, the TD
// quote is Intel DCAP in plugins/lib/dcap (with the tdx plugin's
// settings); claims are trustee's.
package aztdxvtpm

import (
	"context"
	"maps"
	"sync/atomic"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/plugins/lib/vtpm"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TEE is the only TEE name this verifier handles (kbs-host maps trustee's
// older "aztdxvtpm" to it).
const TEE = "az-tdx-vtpm"

// Verifier is the az-tdx-vtpm verifier. It is safe for concurrent use;
// Configure replaces its settings atomically.
type Verifier struct {
	base dcap.Config
	v    atomic.Pointer[dcap.Verifier]
	// build makes the DCAP verifier from the settings; tests replace it
	// (the real Azure quote has no collateral here).
	build func(dcap.Config) (*dcap.Verifier, error)
}

var (
	_ verifier.Verifier = (*Verifier)(nil)
	_ sdk.Configurer    = (*Verifier)(nil)
)

// New returns a verifier with the default settings (Intel's PCS, as the
// tdx plugin).
func New() *Verifier {
	v, err := NewWithConfig(dcap.DefaultConfig())
	if err != nil {
		panic("az-tdx-vtpm: default settings: " + err.Error())
	}
	return v
}

// NewWithConfig returns a verifier with base as its settings; Configure
// decodes the host's settings over base. Tests set base.Now.
func NewWithConfig(base dcap.Config) (*Verifier, error) {
	v := &Verifier{base: base, build: dcap.Config.Verifier}
	dv, err := v.build(base)
	if err != nil {
		return nil, err
	}
	v.v.Store(dv)
	return v, nil
}

// Configure applies the plugin's settings: dcap.Config as JSON, the same
// keys as the tdx plugin's, strictly decoded.
func (v *Verifier) Configure(_ context.Context, config []byte) error {
	c := v.base
	if err := sdk.DecodeConfig(config, &c); err != nil {
		return err
	}
	dv, err := v.build(c)
	if err != nil {
		return err
	}
	v.v.Store(dv)
	return nil
}

// Verify runs the steps in order:
//  1. the TPM quote's signature with the attestation key of the HCL
//     report's variable data;
//  2. the quote's nonce == the runtime-data digest, exactly;
//  3. SHA-256 of the PCR values == the quote's PCR digest;
//  4. SHA-256 of the variable data == the TD quote's REPORT_DATA[:32];
//  5. (version 2) the variable data's user-data starts with the digest;
//  6. the TD quote with DCAP: PCK chain to Intel's root, QE report,
//     attestation key, signature, and Intel's collateral (TCB status);
//  7. with init-data, PCR8 == SHA-256(32 zero bytes || init-data digest).
//
// It returns trustee's az-tdx-vtpm claims: the TDX claims with DCAP's,
// then tpm, report_data (the nonce) and init_data (PCR8).
func (v *Verifier) Verify(ctx context.Context, req *verifier.Request) (verifier.Claims, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.TEE != TEE {
		return nil, sdk.Unsupported("az-tdx-vtpm verifier: TEE %q is not %q", req.TEE, TEE)
	}
	ev, err := vtpm.ParseEvidence(req.Evidence, vtpm.TDX)
	if err != nil {
		return nil, err
	}
	att, err := ev.VerifyQuote(req.ReportData)
	if err != nil {
		return nil, err
	}
	q, err := dcap.ParseQuote(ev.TDQuote)
	if err != nil {
		return nil, err
	}
	if !q.IsTDX() {
		return nil, sdk.BadEvidence("az-tdx-vtpm evidence: td_quote is an SGX quote")
	}
	if err := ev.HCL.CheckBinding(q.TD.ReportData()); err != nil {
		return nil, err
	}
	if err := ev.CheckUserData(req.ReportData); err != nil {
		return nil, err
	}
	res, err := v.v.Load().VerifyQuote(ctx, q)
	if err != nil {
		return nil, err
	}
	if err := att.CheckInitData(req.InitDataDigest); err != nil {
		return nil, err
	}
	claims := dcap.TDXClaims(q, res.Platform)
	maps.Copy(claims, res.SupplementalClaims())
	maps.Copy(claims, att.Claims())
	return claims, nil
}
