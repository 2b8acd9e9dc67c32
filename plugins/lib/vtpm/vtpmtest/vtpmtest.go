// Package vtpmtest makes Azure-style vTPM evidence for tests with the
// go-tpm-tools TPM simulator (needs cgo): an RSA attestation key, an HCL
// report whose variable data carries it, and a quote over the SHA-256 PCRs
// with a chosen nonce, user-data and init-data. The hardware report that
// binds the variable data comes from the caller (plugins/lib/snp/snptest
// or plugins/lib/dcap/dcaptest), so that the result can be verified end to
// end.
package vtpmtest

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/gokbs/kbs/plugins/lib/vtpm"
)

// Options say what goes into the quote and the variable data.
type Options struct {
	// Nonce is the quote's extraData: the runtime-data digest.
	Nonce []byte
	// UserData is the variable data's user-data; nil means 64 zero bytes,
	// as Azure writes when nothing is asked for (evidence versions 0, 1).
	UserData []byte
	// InitDataDigest, when set, is extended into PCR8 before the quote.
	InitDataDigest []byte
	// PCRs are the quoted PCRs of the SHA-256 bank; nil means all 24.
	PCRs []int
	// Seed makes the attestation key (the simulator's seeds); 0 means 1.
	Seed int64
}

// Quote is a simulated vTPM quote and the variable data that vouches for
// its attestation key.
type Quote struct {
	Quote   vtpm.Quote
	VarData []byte
	AK      *rsa.PublicKey
}

// ReportData is what the hardware report's REPORT_DATA must be:
// SHA-256(variable data) followed by 32 zero bytes.
func (q *Quote) ReportData() []byte {
	d := sha256.Sum256(q.VarData)
	return append(d[:], make([]byte, 32)...)
}

// HCLReport wraps a hardware report (an SNP report, or for TDX a
// TDREPORT-sized area, which verifiers do not read) and the variable data.
func (q *Quote) HCLReport(t vtpm.ReportType, hw []byte) []byte {
	return vtpm.BuildHCLReport(t, hw, q.VarData)
}

// Evidence assembles the evidence document of kind k and version v around
// q, the hardware report hw (inside the HCL report; nil for TDX) and the
// VCEK or TD quote.
func (q *Quote) Evidence(k vtpm.Kind, v int, hw, vcekOrTDQuote []byte) ([]byte, error) {
	t := vtpm.ReportTypeSNP
	if k == vtpm.TDX {
		t = vtpm.ReportTypeTDX
	}
	ev := &vtpm.Evidence{Kind: k, Version: v, Quote: q.Quote, HCL: &vtpm.HCLReport{Raw: q.HCLReport(t, hw)}}
	if k == vtpm.SNP {
		ev.VCEK = vcekOrTDQuote
	} else {
		ev.TDQuote = vcekOrTDQuote
	}
	return ev.Marshal()
}

// New quotes with a fresh simulator (about 0.1 s: the RSA key is made
// each time). Calls are serialized: there is one simulator per process.
func New(o Options) (*Quote, error) {
	seed := o.Seed
	if seed == 0 {
		seed = 1
	}
	sim, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		return nil, fmt.Errorf("vtpmtest: simulator: %w", err)
	}
	defer sim.Close()
	ak, err := client.AttestationKeyRSA(sim)
	if err != nil {
		return nil, fmt.Errorf("vtpmtest: attestation key: %w", err)
	}
	defer ak.Close()
	pub, ok := ak.PublicKey().(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("vtpmtest: the attestation key is not RSA")
	}
	if o.InitDataDigest != nil {
		if err := tpm2.PCRExtend(sim, tpmutil.Handle(vtpm.InitDataPCR), tpm2.AlgSHA256, o.InitDataDigest, ""); err != nil {
			return nil, fmt.Errorf("vtpmtest: extending PCR%d: %w", vtpm.InitDataPCR, err)
		}
	}
	sel := client.FullPcrSel(tpm2.AlgSHA256)
	if o.PCRs != nil {
		sel = tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: o.PCRs}
	}
	pq, err := ak.Quote(sel, o.Nonce)
	if err != nil {
		return nil, fmt.Errorf("vtpmtest: quote: %w", err)
	}
	sig, err := tpm2.DecodeSignature(bytes.NewBuffer(pq.GetRawSig()))
	if err != nil || sig.RSA == nil {
		return nil, fmt.Errorf("vtpmtest: the quote's signature is not RSA: %v", err)
	}
	q := &Quote{AK: pub, Quote: vtpm.Quote{Signature: sig.RSA.Signature, Message: pq.GetQuote()}}
	idx := slices.Sorted(slices.Values(sel.PCRs))
	for _, i := range idx {
		q.Quote.PCRs = append(q.Quote.PCRs, pq.GetPcrs().GetPcrs()[uint32(i)])
	}
	ud := o.UserData
	if ud == nil {
		ud = make([]byte, 64)
	}
	if q.VarData, err = VarData(pub, ud); err != nil {
		return nil, err
	}
	return q, nil
}

// VarData is HCL variable data as Azure writes it: the attestation key
// (and, here, no encryption key), the VM configuration and user-data.
func VarData(ak *rsa.PublicKey, userData []byte) ([]byte, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	return json.Marshal(map[string]any{
		"keys": []any{map[string]any{
			"kid": "HCLAkPub", "key_ops": []string{"sign"}, "kty": "RSA",
			"e": b64(big.NewInt(int64(ak.E)).Bytes()), "n": b64(ak.N.Bytes()),
		}},
		"vm-configuration": map[string]any{"console-enabled": false, "secure-boot": true, "tpm-enabled": true, "vmUniqueId": "00000000-0000-0000-0000-000000000000"},
		"user-data":        hex.EncodeToString(userData),
	})
}
