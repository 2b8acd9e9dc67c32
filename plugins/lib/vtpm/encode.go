package vtpm

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"

	"github.com/gokbs/kbs/sdk"
)

// Marshal writes e as the guest's attester does for e.Kind and e.Version
// (see ParseEvidence), from Quote, HCL.Raw and VCEK or TDQuote. For tests
// and tools.
func (e *Evidence) Marshal() ([]byte, error) {
	if e.HCL == nil || (e.Kind != SNP && e.Kind != TDX) || e.Version < 0 || e.Version > 2 {
		return nil, sdk.InvalidArgument("vtpm: nothing to marshal")
	}
	hw := e.TDQuote
	if e.Kind == SNP {
		hw = e.VCEK
	}
	var b bytes.Buffer
	w := func(s string) { b.WriteString(s) }
	str := func(s string) { q, _ := json.Marshal(s); b.Write(q) }
	if e.Version == 0 {
		n := namesV0[e.Kind]
		ints := func(p []byte) {
			w("[")
			for i, c := range p {
				if i > 0 {
					w(",")
				}
				w(strconv.Itoa(int(c)))
			}
			w("]")
		}
		w(`{"` + n.quote + `":{"signature":`)
		ints(e.Quote.Signature)
		w(`,"message":`)
		ints(e.Quote.Message)
		w(`,"pcrs":[`)
		for i, p := range e.Quote.PCRs {
			if i > 0 {
				w(",")
			}
			ints(p)
		}
		w(`]},"` + n.hcl + `":`)
		ints(e.HCL.Raw)
		w(`,"` + n.hw + `":`)
		if e.Kind == SNP {
			str(string(hw))
		} else {
			ints(hw)
		}
		w("}")
		return b.Bytes(), nil
	}
	n := namesV12[e.Kind]
	w(`{"version":` + strconv.Itoa(e.Version) + `,"tpm_quote":{"signature":`)
	str(hex.EncodeToString(e.Quote.Signature))
	w(`,"message":`)
	str(hex.EncodeToString(e.Quote.Message))
	w(`,"pcrs":[`)
	for i, p := range e.Quote.PCRs {
		if i > 0 {
			w(",")
		}
		str(hex.EncodeToString(p))
	}
	w(`]},"` + n.hcl + `":`)
	str(base64.URLEncoding.EncodeToString(e.HCL.Raw))
	w(`,"` + n.hw + `":`)
	str(base64.URLEncoding.EncodeToString(hw))
	w("}")
	return b.Bytes(), nil
}
