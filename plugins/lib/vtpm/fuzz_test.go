package vtpm

import (
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
)

// FuzzParseEvidence: any input is parsed or refused with a classified
// error, never a panic; what parses runs the quote checks and writes back
// to something that parses the same way.
func FuzzParseEvidence(f *testing.F) {
	for _, tc := range realCases {
		if b := plugintest.EvidenceSeed(f, tc.file); b != nil {
			f.Add(b, tc.kind == TDX)
		}
	}
	f.Add([]byte(`{"version":1,"tpm_quote":{"signature":"","message":"","pcrs":[]},"hcl_report":"","vcek":""}`), false)
	f.Add([]byte(`{"tpm_quote":{"signature":[],"message":[],"pcrs":[[0]]},"hcl_report":[1,2],"td_quote":[3]}`), true)
	f.Fuzz(func(t *testing.T, data []byte, tdx bool) {
		k := SNP
		if tdx {
			k = TDX
		}
		ev, err := ParseEvidence(data, k)
		if err != nil {
			if c := sdk.ClassOf(err); c != sdk.ClassBadEvidence && c != sdk.ClassUnsupported {
				t.Fatalf("error class %q: %v", c, err)
			}
			return
		}
		_, _ = ev.VerifyQuote([]byte("challenge"))
		_ = ev.CheckUserData([]byte("challenge"))
		b, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseEvidence(b, k); err != nil {
			t.Fatalf("re-parsing what parsed: %v", err)
		}
	})
}

// FuzzParseHCLReport: HCL reports and their variable data.
func FuzzParseHCLReport(f *testing.F) {
	for _, dir := range []string{"az-snp-vtpm", "az-tdx-vtpm"} {
		if b := plugintest.EvidenceSeed(f, dir+"/hcl-report.bin"); b != nil {
			f.Add(b)
		}
	}
	f.Add(BuildHCLReport(ReportTypeSNP, nil, []byte(`{"keys":[{"kid":"HCLAkPub","kty":"RSA","n":"AQAB","e":"AQAB"}],"user-data":"00"}`)))
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, err := ParseHCLReport(raw)
		if err != nil {
			return
		}
		_, _ = h.AKPub()
		_, _ = h.UserData()
		_ = h.CheckBinding(raw)
	})
}

// FuzzParseAttest: TPMS_ATTEST structures (go-tpm's unmarshalling).
func FuzzParseAttest(f *testing.F) {
	for _, tc := range realCases {
		if b := plugintest.EvidenceSeed(f, tc.file); b != nil {
			if ev, err := ParseEvidence(b, tc.kind); err == nil {
				f.Add(ev.Quote.Message)
			}
		}
	}
	f.Add([]byte{0xff, 0x54, 0x43, 0x47, 0x80, 0x18})
	f.Fuzz(func(t *testing.T, msg []byte) {
		a, err := ParseAttest(msg)
		if err == nil && (len(a.Selected) == 0 || len(a.PCRDigest) != 32) {
			t.Fatalf("accepted %+v", a)
		}
	})
}
