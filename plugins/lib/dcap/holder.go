package dcap

import (
	"context"
	"encoding/json"
	"sync/atomic"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// Holder is the part the tdx and sgx plugins share: the Verifier built
// from their settings, which Configure replaces atomically, and the
// decoding of the evidence both attesters send.
type Holder struct {
	base Config
	v    atomic.Pointer[Verifier]
}

// NewHolder builds a Holder with base as its settings; Configure decodes
// the host's settings over base (tests set base.Now).
func NewHolder(base Config) (*Holder, error) {
	dv, err := base.Verifier()
	if err != nil {
		return nil, err
	}
	h := &Holder{base: base}
	h.v.Store(dv)
	return h, nil
}

// Configure applies the plugin's settings (Config as JSON).
func (h *Holder) Configure(_ context.Context, config []byte) error {
	dv, err := Configure(h.base, config)
	if err != nil {
		return err
	}
	h.v.Store(dv)
	return nil
}

// Evidence is what CoCo's TDX and SGX attesters send (SGX has no event
// log). Unknown fields are ignored, as trustee does.
type Evidence struct {
	Quote      *string `json:"quote"`
	CCEventLog *string `json:"cc_eventlog"`
}

// VerifyEvidence checks that req is for tee, decodes its evidence and
// verifies the quote. The caller checks what is particular to its TEE.
func (h *Holder) VerifyEvidence(ctx context.Context, tee string, req *verifier.Request) (*Result, *Evidence, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if req.TEE != tee {
		return nil, nil, sdk.Unsupported("%s verifier: TEE %q is not %q", tee, req.TEE, tee)
	}
	var ev Evidence
	if err := json.Unmarshal(req.Evidence, &ev); err != nil {
		return nil, nil, sdk.BadEvidence("%s evidence: %v", tee, err)
	}
	if ev.Quote == nil || *ev.Quote == "" {
		return nil, nil, sdk.BadEvidence("%s evidence: quote is missing", tee)
	}
	raw, err := DecodeBase64(tee+" evidence: quote", *ev.Quote, MaxQuoteSize)
	if err != nil {
		return nil, nil, err
	}
	res, err := h.v.Load().Verify(ctx, raw)
	if err != nil {
		return nil, nil, err
	}
	return res, &ev, nil
}
