package dcap_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/plugins/lib/dcap/eventlog"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
)

// realNow is inside the validity of every real PCK chain (the earliest
// leaf expires 2029-09-20).
var realNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type realQuote struct {
	name string
	read func(testing.TB) []byte
	// what the quote must verify to
	version uint16
	tdx     bool
	fmspc   string
	sgxType string
	// report data prefix, hex
	reportData string
}

func evidence(rel string) func(testing.TB) []byte {
	return func(t testing.TB) []byte { return plugintest.EvidenceFile(t, rel) }
}

func realQuotes() []realQuote {
	return []realQuote{
		{"tdx_quote_4", evidence("tdx/tdx_quote_4.dat"), 4, true, "50806F000000", "Scalable", "7c71fe2c86eff65a"},
		{"tdx_quote_5", evidence("tdx/tdx_quote_5.dat"), 5, true, "90C06F000000", "Scalable", "6d6ab13b046cff60"},
		{"tdx_quote_6", evidence("tdx/tdx_quote_6.dat"), 4, true, "00A06D080000", "Scalable with Integrity", "26cae1c77185617f"},
		{"az_td_quote", evidence("az-tdx-vtpm/td-quote.bin"), 4, true, "00806F050000", "Scalable", ""},
		{"occlum_sgx", evidence("sgx/occlum_quote.dat"), 3, false, "00606A000000", "Scalable", ""},
		{"gotdx_spr_e4", func(testing.TB) []byte { return testdata.RawQuote }, 4, true, "50806F000000", "Scalable", ""},
		{"gotdx_cos113", func(t testing.TB) []byte { return tdxGuestFile(t, "testing/testdata/ccel/cos-113-tdx-quote.dat") }, 4, true, "", "", ""},
	}
}

// TestRealQuotes verifies every real quote as far as no collateral allows:
// layout, PCK chain to the pinned Intel root (time pinned), QE report
// signature, attestation-key binding and quote signature. The claims are
// golden files.
func TestRealQuotes(t *testing.T) {
	v := dcap.New(dcap.Options{Now: at(realNow)})
	for _, tc := range realQuotes() {
		t.Run(tc.name, func(t *testing.T) {
			res, err := v.Verify(context.Background(), tc.read(t))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			q := res.Quote
			if q.Header.Version != tc.version || q.IsTDX() != tc.tdx {
				t.Errorf("quote = %v, want version %d, TDX %v", q, tc.version, tc.tdx)
			}
			if fm := strings.ToUpper(hex.EncodeToString(res.Platform.FMSPC)); tc.fmspc != "" && fm != tc.fmspc {
				t.Errorf("FMSPC = %s, want %s", fm, tc.fmspc)
			}
			if !strings.HasPrefix(hex.EncodeToString(q.ReportData()), tc.reportData) {
				t.Errorf("report data = %x, want prefix %s", q.ReportData(), tc.reportData)
			}
			if res.TCB != nil {
				t.Errorf("TCB = %v without a collateral source", res.TCB)
			}
			claims := res.SupplementalClaims()
			if tc.sgxType != "" && claims["sgx_type"] != tc.sgxType {
				t.Errorf("sgx_type = %v, want %s", claims["sgx_type"], tc.sgxType)
			}
			// The SHA-384 of Intel's root key, as Intel's QVL reports it.
			if claims["root_key_id"] != "46e403bd34f05a3f2817ab9badcaacc7ffc98e0f261008cd30dae936cace18d5dcf58eef31463613de1570d516200993" {
				t.Errorf("root_key_id = %v", claims["root_key_id"])
			}
			if tc.tdx {
				maps.Copy(claims, dcap.TDXClaims(q, res.Platform))
			} else {
				maps.Copy(claims, dcap.SGXClaims(q, res.Platform))
			}
			golden(t, "quotes/"+tc.name+".golden.json", claims)
		})
	}
}

// TestTrusteeClaims: the claims of tdx_quote_4.dat with eventlog/CCEL_data
// are trustee's parse_tdx_claims_expected.json, key for key.
func TestTrusteeClaims(t *testing.T) {
	q, err := dcap.ParseQuote(plugintest.EvidenceFile(t, "tdx/tdx_quote_4.dat"))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := dcap.ParsePCKChain(q.PCKChain)
	if err != nil {
		t.Fatal(err)
	}
	p, err := dcap.ParsePlatformInfo(chain.Leaf, chain.CA())
	if err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.Parse(plugintest.EvidenceFile(t, "eventlog/CCEL_data"))
	if err != nil {
		t.Fatal(err)
	}
	got := dcap.TDXClaims(q, p)
	got["uefi_event_logs"] = l.Claims()
	var want map[string]any
	if err := json.Unmarshal(plugintest.EvidenceFile(t, "tdx/parse_tdx_claims_expected.json"), &want); err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		t.Errorf("claims differ from parse_tdx_claims_expected.json; got:\n%.3000s", g)
	}
	// The index says this log does not replay to this quote's RTMRs.
	rtmr, err := l.RTMRs()
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(rtmr[0]) == hex.EncodeToString(q.TD.RTMR(0)) {
		t.Errorf("CCEL_data replays to tdx_quote_4's RTMR0; the index says it must not")
	}
}

// TestRealQuoteWithEventLog: GCE's COS 113 quote and its CCEL (shipped in
// go-tdx-guest) replay to the quote's RTMRs.
func TestRealQuoteWithEventLog(t *testing.T) {
	raw := tdxGuestFile(t, "testing/testdata/ccel/cos-113-tdx-quote.dat")
	res, err := dcap.New(dcap.Options{Now: at(realNow)}).Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.Parse(tdxGuestFile(t, "testing/testdata/ccel/ccel_data.dat"))
	if err != nil {
		t.Fatal(err)
	}
	rtmr, err := l.RTMRs()
	if err != nil {
		t.Fatal(err)
	}
	for i := range rtmr {
		if got, want := hex.EncodeToString(rtmr[i]), hex.EncodeToString(res.Quote.TD.RTMR(i)); got != want {
			t.Errorf("replayed RTMR%d = %s, quote has %s", i, got, want)
		}
	}
}

// TestRealCollateral runs go-tdx-guest's real Intel collateral (TCB info
// and QE identity for FMSPC 50806F000000, PCK and root CRLs, June 2023)
// against its real SPR quote through a collateral directory. Intel's
// signatures on the collateral, the CRLs and the revocation of the PCK
// chain all verify; TCB level matching then fails, as go-tdx-guest's own
// test expects, because the sample TCB info's levels are above this
// platform's CPUSVN.
func TestRealCollateral(t *testing.T) {
	dir := t.TempDir()
	chain, err := url.QueryUnescape(tdxGuestTCBInfoChain())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		dcap.TCBInfoFile(true, "50806F000000"): testdata.TcbInfoBody,
		dcap.QEIdentityFile(true):              testdata.QeIdentityBody,
		dcap.SigningChainFile:                  []byte(chain),
		dcap.PCKCRLFile("platform"):            testdata.PckCrlBody,
		dcap.RootCRLFile:                       testdata.RootCrlBody,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := map[string]struct {
		now     time.Time
		accept  bool
		class   sdk.Class
		message string
	}{
		"collateral verifies, TCB not supported": {now: time.Date(2023, 7, 1, 0, 0, 0, 0, time.UTC), class: sdk.ClassBadEvidence, message: "TCB not supported"},
		"expired collateral today":               {now: realNow, class: sdk.ClassUnavailable, message: "expired"},
		"accepted expired collateral":            {now: realNow, accept: true, class: sdk.ClassBadEvidence, message: "TCB not supported"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v := dcap.New(dcap.Options{Collateral: &dcap.Store{Dir: dir}, CheckRevocations: true,
				AcceptExpiredCollateral: tc.accept, Now: at(tc.now)})
			_, err := v.Verify(context.Background(), testdata.RawQuote)
			wantClass(t, err, tc.class)
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error = %v, want it to say %q", err, tc.message)
			}
		})
	}
}

// TestQuote6Collateral checks tdx_quote_6.dat against the evidence's
// tcbInfo.json and enclaveIdentity.json (FMSPC 00A06D080000). Their
// signatures verify with the key of Intel's TCB signing certificate that
// go-tdx-guest ships (Intel renewed the certificate with the same key), but
// that certificate expired on 2025-05-21, before this collateral was issued
// (2025-10-27), and the renewed certificate is not here: the full
// collateral check must fail on the certificate's validity, and the TCB
// levels are matched directly. The PCK certificate's PCESVN is 11, below
// the newest level's 13, so the platform is OutOfDate (level of
// 2018-01-04); the TDX module (TDX_03, ISVSVN 5) and the QE (ISVSVN 7) are
// UpToDate.
func TestQuote6Collateral(t *testing.T) {
	raw := plugintest.EvidenceFile(t, "tdx/tdx_quote_6.dat")
	tcbInfo := plugintest.EvidenceFile(t, "tdx/tcbInfo.json")
	qeID := plugintest.EvidenceFile(t, "tdx/enclaveIdentity.json")
	chainPEM, err := url.QueryUnescape(tdxGuestTCBInfoChain())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("signatures with the 2018 TCB signing key", func(t *testing.T) {
		certs, err := dcap.ParseCertificatesPEM([]byte(chainPEM))
		if err != nil {
			t.Fatal(err)
		}
		for name, body := range map[string][]byte{"tcbInfo": tcbInfo, "enclaveIdentity": qeID} {
			ok, err := dcap.CheckCollateralSignature(body, name, certs[0])
			if err != nil || !ok {
				t.Errorf("%s signature: ok=%v err=%v", name, ok, err)
			}
			flipped := []byte(strings.Replace(string(body), `"version"`, `"versioN"`, 1))
			if ok, _ := dcap.CheckCollateralSignature(flipped, name, certs[0]); ok {
				t.Errorf("%s signature verifies over altered content", name)
			}
		}
	})

	t.Run("full check fails on the expired signing certificate", func(t *testing.T) {
		src := &fixedSource{c: &dcap.Collateral{TCBInfo: tcbInfo, QEIdentity: qeID, SigningChain: []byte(chainPEM)}}
		v := dcap.New(dcap.Options{Collateral: src, AcceptExpiredCollateral: true, Now: at(time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC))})
		_, err := v.Verify(context.Background(), raw)
		wantClass(t, err, sdk.ClassUnavailable)
		if !strings.Contains(err.Error(), "expired") {
			t.Errorf("error = %v, want the signing certificate's expiry", err)
		}
	})

	t.Run("TCB levels", func(t *testing.T) {
		q, err := dcap.ParseQuote(raw)
		if err != nil {
			t.Fatal(err)
		}
		chain, err := dcap.ParsePCKChain(q.PCKChain)
		if err != nil {
			t.Fatal(err)
		}
		p, err := dcap.ParsePlatformInfo(chain.Leaf, chain.CA())
		if err != nil {
			t.Fatal(err)
		}
		ti, _, _, err := dcap.ParseTCBInfo(tcbInfo)
		if err != nil {
			t.Fatal(err)
		}
		qe, _, _, err := dcap.ParseEnclaveIdentity(qeID)
		if err != nil {
			t.Fatal(err)
		}
		m, err := dcap.MatchTCB(q, p, ti, qe)
		if err != nil {
			t.Fatal(err)
		}
		want := dcap.TCBMatch{Status: "OutOfDate", PlatformStatus: "OutOfDate", ModuleStatus: "UpToDate", QEStatus: "UpToDate",
			Date: time.Date(2018, 1, 4, 0, 0, 0, 0, time.UTC)}
		if m.Status != want.Status || m.PlatformStatus != want.PlatformStatus || m.ModuleStatus != want.ModuleStatus ||
			m.QEStatus != want.QEStatus || !m.Date.Equal(want.Date) || len(m.AdvisoryIDs) != 0 {
			t.Errorf("MatchTCB = %+v, want %+v", m, want)
		}
		// Another platform's collateral is refused.
		ti.FMSPC = "00A06D080001"
		if _, err := dcap.MatchTCB(q, p, ti, qe); err == nil {
			t.Error("MatchTCB accepted the TCB info of another FMSPC")
		}
	})
}
