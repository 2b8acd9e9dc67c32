// Package tdx verifies Intel TDX evidence: a TD quote (v4 or v5) checked
// with Intel DCAP (PCK chain to the pinned Intel SGX Root CA, QE report,
// attestation key, quote signature, and the TCB status from Intel's
// collateral), its binding to the runtime-data digest (REPORT_DATA) and to
// the init-data digest (MRCONFIGID), and the CC event log replayed against
// RTMR0-3. Its claims are trustee's.
package tdx

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/hex"
	"maps"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/plugins/lib/dcap/eventlog"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TEE is the only TEE name this verifier handles.
const TEE = "tdx"

// Verifier is the TDX verifier. It is safe for concurrent use; Configure
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
		panic("tdx: default settings: " + err.Error())
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

// Verify verifies TDX evidence and returns trustee's TDX claims.
func (v *Verifier) Verify(ctx context.Context, req *verifier.Request) (verifier.Claims, error) {
	res, ev, err := v.VerifyEvidence(ctx, TEE, req)
	if err != nil {
		return nil, err
	}
	q := res.Quote
	if !q.IsTDX() {
		return nil, sdk.BadEvidence("tdx evidence: the quote is an SGX quote")
	}
	if len(req.ReportData) > 0 {
		if subtle.ConstantTimeCompare(dcap.Regularize(req.ReportData, 64), q.TD.ReportData()) != 1 {
			return nil, sdk.BadEvidence("tdx evidence: REPORT_DATA does not match the expected runtime-data digest")
		}
	}
	if len(req.InitDataDigest) > 0 {
		if !bytes.Equal(dcap.Regularize(req.InitDataDigest, 48), q.TD.MRConfigID()) {
			return nil, sdk.BadEvidence("tdx evidence: MRCONFIGID %x does not match the init-data digest", q.TD.MRConfigID())
		}
	}

	claims := dcap.TDXClaims(q, res.Platform)
	maps.Copy(claims, res.SupplementalClaims())
	if ev.CCEventLog != nil && *ev.CCEventLog != "" {
		logs, err := replay(*ev.CCEventLog, q.TD)
		if err != nil {
			return nil, err
		}
		claims["uefi_event_logs"] = logs
	}
	return claims, nil
}

// replay parses the CC event log and checks that it replays to RTMR0-3.
func replay(b64 string, td *dcap.TDReport) ([]any, error) {
	raw, err := dcap.DecodeBase64("tdx evidence: cc_eventlog", b64, eventlog.MaxSize)
	if err != nil {
		return nil, err
	}
	l, err := eventlog.Parse(raw)
	if err != nil {
		return nil, sdk.BadEvidence("tdx evidence: cc_eventlog: %v", err)
	}
	rtmr, err := l.RTMRs()
	if err != nil {
		return nil, sdk.BadEvidence("tdx evidence: cc_eventlog: %v", err)
	}
	for i := range rtmr {
		if !bytes.Equal(rtmr[i], td.RTMR(i)) {
			return nil, sdk.BadEvidence("tdx evidence: the event log replays RTMR%d to %s, the quote has %s",
				i, hex.EncodeToString(rtmr[i]), hex.EncodeToString(td.RTMR(i)))
		}
	}
	return l.Claims(), nil
}
