// Package sgx verifies Intel SGX evidence: an SGX ECDSA quote v3 checked
// with Intel DCAP (PCK chain to the pinned Intel SGX Root CA, QE report
// signed by the PCK, QE report data binding the attestation key, quote
// signature, and the TCB status from Intel's collateral), bound to the
// runtime-data digest (REPORT_DATA) and to the init-data digest (CONFIGID).
// Its claims are trustee's.
package sgx

import (
	"bytes"
	"context"
	"crypto/subtle"
	"maps"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TEE is the only TEE name this verifier handles.
const TEE = "sgx"

// Verifier is the SGX verifier. It is safe for concurrent use; Configure
// (from the embedded dcap.Holder) replaces its settings atomically.
type Verifier struct {
	*dcap.Holder
}

var (
	_ verifier.Verifier = (*Verifier)(nil)
	_ sdk.Configurer    = (*Verifier)(nil)
)

// New returns a verifier with the default settings (Intel's PCS).
func New() *Verifier {
	v, err := NewWithConfig(dcap.DefaultConfig())
	if err != nil {
		panic("sgx: default settings: " + err.Error())
	}
	return v
}

// NewWithConfig returns a verifier with base as its settings; Configure
// decodes the host's settings over base. Tests set base.Now.
func NewWithConfig(base dcap.Config) (*Verifier, error) {
	h, err := dcap.NewHolder(base)
	if err != nil {
		return nil, err
	}
	return &Verifier{Holder: h}, nil
}

// Verify verifies SGX evidence and returns trustee's SGX claims.
func (v *Verifier) Verify(ctx context.Context, req *verifier.Request) (verifier.Claims, error) {
	res, _, err := v.VerifyEvidence(ctx, TEE, req)
	if err != nil {
		return nil, err
	}
	q := res.Quote
	if q.IsTDX() {
		return nil, sdk.BadEvidence("sgx evidence: the quote is a TD quote")
	}
	if len(req.ReportData) > 0 {
		if subtle.ConstantTimeCompare(dcap.Regularize(req.ReportData, 64), q.Enclave.ReportData()) != 1 {
			return nil, sdk.BadEvidence("sgx evidence: REPORT_DATA does not match the expected runtime-data digest")
		}
	}
	if len(req.InitDataDigest) > 0 {
		if !bytes.Equal(dcap.Regularize(req.InitDataDigest, 64), q.Enclave.ConfigID()) {
			return nil, sdk.BadEvidence("sgx evidence: CONFIGID %x does not match the init-data digest", q.Enclave.ConfigID())
		}
	}
	claims := dcap.SGXClaims(q, res.Platform)
	maps.Copy(claims, res.SupplementalClaims())
	return claims, nil
}
