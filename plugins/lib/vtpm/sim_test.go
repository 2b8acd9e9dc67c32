package vtpm_test

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/gokbs/kbs/plugins/lib/vtpm"
	"github.com/gokbs/kbs/plugins/lib/vtpm/vtpmtest"
	"github.com/gokbs/kbs/sdk"
)

var (
	digest   = func() []byte { d := sha512.Sum384([]byte("runtime data")); return d[:] }()
	initData = func() []byte { d := sha256.Sum256([]byte("algorithm = \"sha256\"\n")); return d[:] }()
)

// simEvidence makes simulated evidence and parses it back, as a verifier
// would receive it; the hardware report area holds REPORT_DATA only.
func simEvidence(t *testing.T, o vtpmtest.Options, version int) (*vtpm.Evidence, *vtpmtest.Quote) {
	t.Helper()
	q, err := vtpmtest.New(o)
	if err != nil {
		t.Fatal(err)
	}
	hw := make([]byte, 1184)
	copy(hw[0x50:], q.ReportData())
	b, err := q.Evidence(vtpm.SNP, version, hw, []byte("vcek"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := vtpm.ParseEvidence(b, vtpm.SNP)
	if err != nil {
		t.Fatal(err)
	}
	return ev, q
}

// TestSimulated covers what the real files cannot: init-data in PCR8,
// v2 user-data, other PCR selections, a 48-byte nonce with the simulator.
func TestSimulated(t *testing.T) {
	tests := []struct {
		name     string
		opts     vtpmtest.Options
		version  int
		nonce    []byte
		initData []byte
		// wantStep is the step that fails ("" for none) and wantClass its class.
		wantStep  string
		wantClass sdk.Class
	}{
		{name: "v2 with init-data", opts: vtpmtest.Options{Nonce: digest, UserData: digest, InitDataDigest: initData}, version: 2, nonce: digest, initData: initData},
		{name: "v1 without init-data", opts: vtpmtest.Options{Nonce: digest}, version: 1, nonce: digest},
		{name: "v0", opts: vtpmtest.Options{Nonce: digest}, version: 0, nonce: digest},
		{name: "PCRs 0, 8 and 11 only", opts: vtpmtest.Options{Nonce: digest, InitDataDigest: initData, PCRs: []int{11, 0, 8}}, version: 1, nonce: digest, initData: initData},
		{name: "v2 user-data longer than the digest", opts: vtpmtest.Options{Nonce: digest, UserData: append(append([]byte(nil), digest...), make([]byte, 16)...)}, version: 2, nonce: digest},

		{name: "wrong nonce", opts: vtpmtest.Options{Nonce: digest}, version: 1, nonce: initData, wantStep: "quote", wantClass: sdk.ClassBadEvidence},
		{name: "v2 without user-data", opts: vtpmtest.Options{Nonce: digest}, version: 2, nonce: digest, wantStep: "user-data", wantClass: sdk.ClassBadEvidence},
		{name: "v2 other user-data", opts: vtpmtest.Options{Nonce: digest, UserData: initData}, version: 2, nonce: digest, wantStep: "user-data", wantClass: sdk.ClassBadEvidence},
		{name: "init-data not extended", opts: vtpmtest.Options{Nonce: digest}, version: 1, nonce: digest, initData: initData, wantStep: "init-data", wantClass: sdk.ClassBadEvidence},
		{name: "other init-data", opts: vtpmtest.Options{Nonce: digest, InitDataDigest: digest[:32]}, version: 1, nonce: digest, initData: initData, wantStep: "init-data", wantClass: sdk.ClassBadEvidence},
		{name: "PCR8 not quoted", opts: vtpmtest.Options{Nonce: digest, InitDataDigest: initData, PCRs: []int{0, 11}}, version: 1, nonce: digest, initData: initData, wantStep: "init-data", wantClass: sdk.ClassBadEvidence},
		{name: "SHA-384 init-data", opts: vtpmtest.Options{Nonce: digest}, version: 1, nonce: digest, initData: digest, wantStep: "init-data", wantClass: sdk.ClassUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, q := simEvidence(t, tc.opts, tc.version)
			step, err := "", error(nil)
			var att *vtpm.Attestation
			if att, err = ev.VerifyQuote(tc.nonce); err != nil {
				step = "quote"
			} else if err = ev.HCL.CheckBinding(ev.HCL.HWReport[0x50:0x90]); err != nil {
				step = "binding"
			} else if err = ev.CheckUserData(tc.nonce); err != nil {
				step = "user-data"
			} else if err = att.CheckInitData(tc.initData); err != nil {
				step = "init-data"
			}
			if step != tc.wantStep || (err != nil && !errors.Is(err, &sdk.Error{Class: tc.wantClass})) {
				t.Fatalf("failed at %q with %v (class %q), want %q (%q)", step, err, sdk.ClassOf(err), tc.wantStep, tc.wantClass)
			}
			if err != nil {
				return
			}
			c := att.Claims()
			pcrs := c["tpm"].(map[string]any)
			if len(pcrs) != len(ev.Quote.PCRs) || c["report_data"] != hex.EncodeToString(tc.nonce) {
				t.Errorf("claims = %v", c)
			}
			if tc.initData != nil {
				want := vtpm.ExtendedFromZero(tc.initData)
				if c["init_data"] != hex.EncodeToString(want[:]) || pcrs["pcr08"] != c["init_data"] {
					t.Errorf("init_data = %v, want %x", c["init_data"], want)
				}
			}
			if ak, _ := ev.HCL.AKPub(); !ak.Equal(q.AK) {
				t.Error("the HCL report's AK is not the simulator's")
			}
		})
	}
}

// TestSimulatedBinding: the HCL report must be the one the hardware
// report binds, and it must carry the AK that signed the quote.
func TestSimulatedBinding(t *testing.T) {
	ev, _ := simEvidence(t, vtpmtest.Options{Nonce: digest}, 1)
	other, _ := simEvidence(t, vtpmtest.Options{Nonce: digest, Seed: 2}, 1)
	if _, err := other.VerifyQuote(digest); err != nil {
		t.Fatal(err)
	}
	// The quote of one vTPM with the HCL report of another.
	swapped := *ev
	swapped.HCL = other.HCL
	if _, err := swapped.VerifyQuote(digest); !errors.Is(err, sdk.ErrBadEvidence) || !strings.Contains(err.Error(), "signature") {
		t.Errorf("swapped HCL report: %v, want a signature error", err)
	}
	// The HCL report of one vTPM under the hardware report of another.
	if err := ev.HCL.CheckBinding(other.HCL.HWReport[0x50:0x90]); !errors.Is(err, sdk.ErrBadEvidence) {
		t.Errorf("other hardware report: %v, want bad evidence", err)
	}
}
