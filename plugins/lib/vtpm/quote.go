package vtpm

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/gokbs/kbs/sdk"
)

// InitDataPCR is the PCR the guest extends with its init-data digest.
const InitDataPCR = 8

// PCR is one quoted PCR of the SHA-256 bank.
type PCR struct {
	Index int
	Value []byte
}

// Attestation is what a verified quote says.
type Attestation struct {
	// Nonce is the quote's extraData (qualifying data).
	Nonce []byte
	// PCRs are the quoted PCRs in ascending index order.
	PCRs []PCR
}

// Attest is a parsed TPMS_ATTEST of a quote: its nonce, PCR selection
// (SHA-256 bank) and PCR digest.
type Attest struct {
	Nonce     []byte
	Selected  []int
	PCRDigest []byte
}

// ParseAttest parses a quote's TPMS_ATTEST (go-tpm): TPM_GENERATED magic,
// type TPM_ST_ATTEST_QUOTE, one PCR selection of the SHA-256 bank, a
// 32-byte PCR digest, nothing after it.
func ParseAttest(msg []byte) (*Attest, error) {
	a, err := tpm2.Unmarshal[tpm2.TPMSAttest](msg)
	if err != nil {
		return nil, sdk.BadEvidence("TPM quote message: %v", err)
	}
	// Marshalling again gives the same bytes only if there was nothing
	// after the structure.
	if !bytes.Equal(tpm2.Marshal(a), msg) {
		return nil, sdk.BadEvidence("TPM quote message: trailing or non-canonical bytes")
	}
	if err := a.Magic.Check(); err != nil {
		return nil, sdk.BadEvidence("TPM quote message: %v", err)
	}
	if a.Type != tpm2.TPMSTAttestQuote {
		return nil, sdk.BadEvidence("TPM quote message: attestation type 0x%04x is not a quote", uint16(a.Type))
	}
	qi, err := a.Attested.Quote()
	if err != nil {
		return nil, sdk.BadEvidence("TPM quote message: %v", err)
	}
	sels := qi.PCRSelect.PCRSelections
	if len(sels) != 1 || sels[0].Hash != tpm2.TPMAlgSHA256 {
		return nil, sdk.BadEvidence("TPM quote message: the quote must select PCRs of the SHA-256 bank only")
	}
	var idx []int
	for i, b := range sels[0].PCRSelect {
		for bit := range 8 {
			if b&(1<<bit) != 0 {
				idx = append(idx, 8*i+bit)
			}
		}
	}
	if len(idx) == 0 || idx[len(idx)-1] >= maxPCRs {
		return nil, sdk.BadEvidence("TPM quote message: the PCR selection is empty or beyond PCR%d", maxPCRs-1)
	}
	if len(qi.PCRDigest.Buffer) != sha256.Size {
		return nil, sdk.BadEvidence("TPM quote message: the PCR digest is %d bytes, want 32", len(qi.PCRDigest.Buffer))
	}
	return &Attest{Nonce: a.ExtraData.Buffer, Selected: idx, PCRDigest: qi.PCRDigest.Buffer}, nil
}

// VerifyQuote runs the first three steps:
//  1. the quote's signature (RSASSA-PKCS1-v1_5 with SHA-256) verifies
//     with the attestation key of the HCL report's variable data;
//  2. the quote's nonce equals reportData exactly (the runtime-data
//     digest, 48 bytes for SHA-384);
//  3. SHA-256 of the PCR values, concatenated, equals the quote's PCR
//     digest, one value per selected PCR.
//
// Errors are sdk.BadEvidence (sdk.Unsupported for a non-RSA key).
func (e *Evidence) VerifyQuote(reportData []byte) (*Attestation, error) {
	ak, err := e.HCL.AKPub()
	if err != nil {
		return nil, err
	}
	msg := sha256.Sum256(e.Quote.Message)
	if err := rsa.VerifyPKCS1v15(ak, crypto.SHA256, msg[:], e.Quote.Signature); err != nil {
		return nil, sdk.BadEvidence("TPM quote: the signature does not verify with the HCL report's attestation key")
	}
	a, err := ParseAttest(e.Quote.Message)
	if err != nil {
		return nil, err
	}
	if len(reportData) == 0 || subtle.ConstantTimeCompare(a.Nonce, reportData) != 1 {
		return nil, sdk.BadEvidence("TPM quote: the nonce does not match the expected runtime-data digest")
	}
	if len(e.Quote.PCRs) != len(a.Selected) {
		return nil, sdk.BadEvidence("TPM quote: %d PCR values for %d selected PCRs", len(e.Quote.PCRs), len(a.Selected))
	}
	h := sha256.New()
	for _, p := range e.Quote.PCRs {
		h.Write(p)
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), a.PCRDigest) != 1 {
		return nil, sdk.BadEvidence("TPM quote: the digest of the PCR values does not match the quote's PCR digest")
	}
	att := &Attestation{Nonce: a.Nonce, PCRs: make([]PCR, len(a.Selected))}
	for i, n := range a.Selected {
		att.PCRs[i] = PCR{Index: n, Value: e.Quote.PCRs[i]}
	}
	return att, nil
}

// CheckUserData is step 5: for version 2 evidence, the variable data's
// user-data must start with reportData. Versions 0 and 1 carry no
// user-data binding and pass.
func (e *Evidence) CheckUserData(reportData []byte) error {
	if e.Version < 2 {
		return nil
	}
	ud, err := e.HCL.UserData()
	if err != nil {
		return err
	}
	if len(reportData) == 0 || len(ud) < len(reportData) || subtle.ConstantTimeCompare(ud[:len(reportData)], reportData) != 1 {
		return sdk.BadEvidence("HCL variable data: user-data does not match the expected runtime-data digest")
	}
	return nil
}

// PCR returns the value of PCR n, or nil when it was not quoted.
func (a *Attestation) PCR(n int) []byte {
	for _, p := range a.PCRs {
		if p.Index == n {
			return p.Value
		}
	}
	return nil
}

// CheckInitData is the last step: with an init-data digest, PCR8 must be
// SHA-256(32 zero bytes || digest), i.e. PCR8 extended once from zero with
// it. Only SHA-256 init-data can be bound this way. A nil digest (no
// init-data) passes.
func (a *Attestation) CheckInitData(digest []byte) error {
	if digest == nil {
		return nil
	}
	if len(digest) != sha256.Size {
		return sdk.Unsupported("vTPM: the init-data digest is %d bytes; PCR%d binds SHA-256 init-data only", len(digest), InitDataPCR)
	}
	pcr := a.PCR(InitDataPCR)
	if pcr == nil {
		return sdk.BadEvidence("TPM quote: PCR%d, which binds the init-data, was not quoted", InitDataPCR)
	}
	want := ExtendedFromZero(digest)
	if subtle.ConstantTimeCompare(want[:], pcr) != 1 {
		return sdk.BadEvidence("TPM quote: PCR%d does not match the init-data digest", InitDataPCR)
	}
	return nil
}

// ExtendedFromZero is a SHA-256 PCR extended once from zero with digest.
func ExtendedFromZero(digest []byte) [32]byte {
	h := sha256.New()
	h.Write(make([]byte, sha256.Size))
	h.Write(digest)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Claims are trustee's vTPM claims: "tpm" {"pcr00": hex, ...} for the
// quoted PCRs, "report_data" (hex nonce) and, when PCR8 was quoted,
// "init_data" (hex PCR8). They replace the hardware claims of those names.
func (a *Attestation) Claims() map[string]any {
	pcrs := make(map[string]any, len(a.PCRs))
	for _, p := range a.PCRs {
		pcrs[fmt.Sprintf("pcr%02d", p.Index)] = hex.EncodeToString(p.Value)
	}
	c := map[string]any{"tpm": pcrs, "report_data": hex.EncodeToString(a.Nonce)}
	if p := a.PCR(InitDataPCR); p != nil {
		c["init_data"] = hex.EncodeToString(p)
	}
	return c
}
