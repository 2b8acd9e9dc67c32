package aztdxvtpm

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/plugins/lib/dcap/dcaptest"
	"github.com/gokbs/kbs/plugins/lib/vtpm"
	"github.com/gokbs/kbs/plugins/lib/vtpm/vtpmtest"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/verifier"
)

var update = flag.Bool("update", false, "rewrite the golden claims")

// now is the verification time of every test: the real quote's PCK
// certificate is valid from 2023-09-13 to 2030-09-13.
var now = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

var (
	digest   = func() []byte { d := sha512.Sum384([]byte("runtime data")); return d[:] }()
	initData = func() []byte {
		d := sha256.Sum256([]byte("algorithm = \"sha256\"\nversion = \"0.1.0\"\n"))
		return d[:]
	}()
)

// The values of the evidence index (../shared/evidence/INDEX.md).
const (
	challengeHex = "6368616c6c656e6765"
	pcr0         = "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273"
)

func base() dcap.Config {
	c := dcap.DefaultConfig()
	c.Now = func() time.Time { return now }
	return c
}

// noCollateral verifies at now without Intel's collateral: the TD quote's
// PCK chain, QE report and signatures are checked, the TCB status is not.
// Only tests can build it: there is no such setting.
func noCollateral() *Verifier {
	v, err := NewWithConfig(base())
	if err != nil {
		panic(err)
	}
	v.build = func(c dcap.Config) (*dcap.Verifier, error) { return dcap.New(dcap.Options{Now: c.Now}), nil }
	if err := v.Configure(context.Background(), nil); err != nil {
		panic(err)
	}
	return v
}

// withSettings is the plugin as deployed: Intel DCAP with collateral, as
// the settings say.
func withSettings(t testing.TB) *Verifier {
	v, err := NewWithConfig(base())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func opts(v *Verifier) serve.Options {
	return serve.Options{Name: "az-tdx-vtpm", Version: "0.1.0", TEETypes: []string{TEE}, Verifier: v}
}

func evidence(t testing.TB, name string) json.RawMessage {
	return plugintest.EvidenceFile(t, "az-tdx-vtpm/"+name)
}

func req(ev json.RawMessage, rd, initData []byte) verifier.Request {
	return verifier.Request{TEE: TEE, Evidence: ev, ReportData: rd, HashAlgorithm: "sha384", InitDataDigest: initData}
}

// edit changes the real evidence through its parsed form.
func edit(t testing.TB, name string, f func(ev *vtpm.Evidence)) json.RawMessage {
	t.Helper()
	ev, err := vtpm.ParseEvidence(evidence(t, name), vtpm.TDX)
	if err != nil {
		t.Fatal(err)
	}
	ev.TDQuote = append([]byte(nil), ev.TDQuote...)
	f(ev)
	b, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	platformOnce sync.Once
	platform     *dcaptest.Platform
)

// testPlatform is a test Intel PKI and quoting enclave valid at now.
func testPlatform() *dcaptest.Platform {
	platformOnce.Do(func() { platform = dcaptest.New(dcaptest.Options{Now: now}) })
	return platform
}

// settings writes the test platform's collateral and root and returns the
// plugin settings that use them.
func settings(t testing.TB, o dcaptest.CollateralOptions) []byte {
	t.Helper()
	s, err := testPlatform().WriteSettings(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// simulated is synthetic evidence whose every part verifies: a quote from
// the TPM simulator and a TD quote from the test platform that binds the
// variable data with the simulator's AK.
func simulated(t testing.TB, version int, o vtpmtest.Options, td dcaptest.TDXOptions) json.RawMessage {
	t.Helper()
	q, err := vtpmtest.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if td.ReportData == nil {
		td.ReportData = q.ReportData()
	}
	b, err := q.Evidence(vtpm.TDX, version, make([]byte, 1024), testPlatform().TDXQuote(td))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// golden compares the claims with testdata/<name>.claims.golden.json.
func golden(name string) func(t *testing.T, c verifier.Claims) {
	return func(t *testing.T, c verifier.Claims) {
		t.Helper()
		plugintest.GoldenJSON(t, filepath.Join("testdata", name+".claims.golden.json"), c, *update)
	}
}

// claimsWith checks some claims, nested ones by dotted path.
func claimsWith(want map[string]any) func(t *testing.T, c verifier.Claims) {
	return func(t *testing.T, c verifier.Claims) {
		t.Helper()
		for k, w := range want {
			var cur any = map[string]any(c)
			for _, part := range strings.Split(k, ".") {
				m, _ := cur.(map[string]any)
				cur = m[part]
			}
			if cur != w {
				t.Errorf("claim %s = %v, want %v", k, cur, w)
			}
		}
	}
}

// TestConformance serves the plugin over real gRPC, as kbs-host runs it,
// configured by its settings, with synthetic evidence, so that it runs
// without the real evidence too.
func TestConformance(t *testing.T) {
	plugintest.VerifierConformance(t, opts(withSettings(t)), settings(t, dcaptest.CollateralOptions{}), []plugintest.VerifierCase{
		{Name: "simulated v2 with init-data", Request: req(simulated(t, 2, vtpmtest.Options{Nonce: digest, UserData: digest, InitDataDigest: initData}, dcaptest.TDXOptions{}), digest, initData)},
		{Name: "simulated v1, wrong nonce", Request: req(simulated(t, 1, vtpmtest.Options{Nonce: initData}, dcaptest.TDXOptions{}), digest, nil), WantClass: sdk.ClassBadEvidence},
	})
}

// TestRealEvidence is the conformance suite again with the real Azure
// evidence, verified without collateral (see noCollateral).
func TestRealEvidence(t *testing.T) {
	challenge := []byte("challenge")
	zero := strings.Repeat("0", 64)
	cases := []plugintest.VerifierCase{
		{Name: "real v0", Request: req(evidence(t, "evidence-v0.json"), challenge, nil), Check: golden("evidence-v0")},
		{Name: "real v1", Request: req(evidence(t, "evidence-v1.json"), challenge, nil), Check: golden("evidence-v1")},
		{Name: "real v1, index values", Request: req(evidence(t, "evidence-v1.json"), challenge, nil),
			Check: claimsWith(map[string]any{"report_data": challengeHex, "tpm.pcr00": pcr0, "init_data": zero, "tpm.pcr08": zero,
				"quote.header.tee_type": "81000000", "tcb_status": nil})},
	}
	for _, n := range realNegatives(t) {
		cases = append(cases, plugintest.VerifierCase{Name: n.name, Request: n.req, WantClass: n.class})
	}
	plugintest.VerifierConformance(t, opts(noCollateral()), nil, cases)
}

type negative struct {
	name   string
	req    verifier.Request
	class  sdk.Class
	wantIn string // the failing step's message
}

// realNegatives are changes to the real evidence, each caught by the step
// that guards it.
func realNegatives(t testing.TB) []negative {
	challenge := []byte("challenge")
	simHCL := func(t testing.TB) *vtpm.HCLReport {
		ev, err := vtpm.ParseEvidence(simulated(t, 1, vtpmtest.Options{Nonce: challenge}, dcaptest.TDXOptions{}), vtpm.TDX)
		if err != nil {
			t.Fatal(err)
		}
		return ev.HCL
	}
	snpHCL := func(t testing.TB) *vtpm.HCLReport {
		return &vtpm.HCLReport{Raw: plugintest.EvidenceFile(t, "az-snp-vtpm/hcl-report.bin")}
	}
	return []negative{
		{"wrong nonce", req(evidence(t, "evidence-v1.json"), digest, nil), sdk.ClassBadEvidence, "nonce"},
		{"nonce zero-padded", req(evidence(t, "evidence-v1.json"), append([]byte("challenge"), make([]byte, 39)...), nil), sdk.ClassBadEvidence, "nonce"},
		{"a PCR changed", req(edit(t, "evidence-v1.json", func(ev *vtpm.Evidence) { ev.Quote.PCRs[0][0] ^= 1 }), challenge, nil), sdk.ClassBadEvidence, "PCR digest"},
		{"tampered quote signature", req(edit(t, "evidence-v1.json", func(ev *vtpm.Evidence) { ev.Quote.Signature[7] ^= 1 }), challenge, nil), sdk.ClassBadEvidence, "signature does not verify"},
		{"swapped HCL report", req(edit(t, "evidence-v1.json", func(ev *vtpm.Evidence) { ev.HCL = simHCL(t) }), challenge, nil), sdk.ClassBadEvidence, "signature does not verify"},
		{"SNP HCL report", req(edit(t, "evidence-v1.json", func(ev *vtpm.Evidence) { ev.HCL = snpHCL(t) }), challenge, nil), sdk.ClassBadEvidence, "carries a SNP report"},
		{"TD quote of another TD", req(edit(t, "evidence-v1.json", func(ev *vtpm.Evidence) { ev.TDQuote = plugintest.EvidenceFile(t, "tdx/tdx_quote_4.dat") }), challenge, nil), sdk.ClassBadEvidence, "REPORT_DATA"},
		{"TD quote changed (MRTD)", req(edit(t, "evidence-v1.json", func(ev *vtpm.Evidence) { ev.TDQuote[48+136] ^= 1 }), challenge, nil), sdk.ClassBadEvidence, "signature"},
		{"SGX quote", req(edit(t, "evidence-v1.json", func(ev *vtpm.Evidence) { ev.TDQuote = plugintest.EvidenceFile(t, "sgx/occlum_quote.dat") }), challenge, nil), sdk.ClassBadEvidence, "SGX quote"},
		{"init-data not in PCR8", req(evidence(t, "evidence-v1.json"), challenge, initData), sdk.ClassBadEvidence, "PCR8"},
		{"SHA-384 init-data", req(evidence(t, "evidence-v1.json"), challenge, digest), sdk.ClassUnsupported, "SHA-256 init-data only"},
		{"old TEE name is the host's business", verifier.Request{TEE: "aztdxvtpm", Evidence: evidence(t, "evidence-v1.json"), ReportData: challenge}, sdk.ClassUnsupported, "TEE"},
	}
}

// TestNegativeSteps: each change fails at the step meant to catch it.
func TestNegativeSteps(t *testing.T) {
	v := noCollateral()
	for _, n := range realNegatives(t) {
		t.Run(n.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), &n.req)
			if !errors.Is(err, &sdk.Error{Class: n.class}) || !strings.Contains(err.Error(), n.wantIn) {
				t.Errorf("Verify = %v, want %q about %q", err, n.class, n.wantIn)
			}
		})
	}
}

// TestRealNeedsCollateral: as deployed, the real evidence cannot be
// verified here: Intel's collateral for its platform is not available,
// and that is unavailable, not success.
func TestRealNeedsCollateral(t *testing.T) {
	empty := t.TempDir()
	c := plugintest.Start(t, opts(withSettings(t)), []byte(`{"collateral_dir":"`+empty+`"}`))
	_, err := c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: evidence(t, "evidence-v1.json"), ReportData: []byte("challenge")})
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("Verify without collateral = %v, want unavailable", err)
	}
}

// TestSimulated: synthetic evidence (TPM simulator and the test Intel
// platform) goes through everything, Intel's collateral included, with the
// plugin configured by its settings as deployed.
func TestSimulated(t *testing.T) {
	ctx := context.Background()
	c := plugintest.Start(t, opts(withSettings(t)), settings(t, dcaptest.CollateralOptions{}))
	v2 := vtpmtest.Options{Nonce: digest, UserData: digest, InitDataDigest: initData}
	pcr8 := vtpm.ExtendedFromZero(initData)
	tests := []struct {
		name      string
		ev        json.RawMessage
		rd, id    []byte
		want      map[string]any
		wantClass sdk.Class
		wantIn    string
	}{
		{"v2 with init-data", simulated(t, 2, v2, dcaptest.TDXOptions{}), digest, initData,
			map[string]any{"init_data": hex.EncodeToString(pcr8[:]), "tpm.pcr08": hex.EncodeToString(pcr8[:]), "tcb_status": "UpToDate"}, "", ""},
		{"v1", simulated(t, 1, vtpmtest.Options{Nonce: digest}, dcaptest.TDXOptions{}), digest, nil, map[string]any{"tcb_status": "UpToDate"}, "", ""},
		{"v0", simulated(t, 0, vtpmtest.Options{Nonce: digest}, dcaptest.TDXOptions{}), digest, nil, nil, "", ""},
		{"TD quote v5", simulated(t, 1, vtpmtest.Options{Nonce: digest}, dcaptest.TDXOptions{Version: 5}), digest, nil, map[string]any{"quote.type": "0300"}, "", ""},
		{"out-of-date TDX module is a claim", simulated(t, 1, vtpmtest.Options{Nonce: digest}, dcaptest.TDXOptions{TEETCBSVN: &[16]byte{3, 1, 1}}), digest, nil,
			map[string]any{"tcb_status": "OutOfDate"}, "", ""},

		{"v2 user-data of another digest", simulated(t, 2, vtpmtest.Options{Nonce: digest, UserData: initData}, dcaptest.TDXOptions{}), digest, nil, nil, sdk.ClassBadEvidence, "user-data"},
		{"other init-data", simulated(t, 2, v2, dcaptest.TDXOptions{}), digest, digest[:32], nil, sdk.ClassBadEvidence, "PCR8"},
		{"TD quote not binding the variable data", simulated(t, 1, vtpmtest.Options{Nonce: digest}, dcaptest.TDXOptions{ReportData: digest}), digest, nil, nil, sdk.ClassBadEvidence, "REPORT_DATA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			claims, err := c.Verifier().Verify(ctx, &verifier.Request{TEE: TEE, Evidence: tc.ev, ReportData: tc.rd, HashAlgorithm: "sha384", InitDataDigest: tc.id})
			if tc.wantClass != "" {
				if !errors.Is(err, &sdk.Error{Class: tc.wantClass}) || !strings.Contains(err.Error(), tc.wantIn) {
					t.Fatalf("Verify = %v (class %q), want %q about %q", err, sdk.ClassOf(err), tc.wantClass, tc.wantIn)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"report_data": hex.EncodeToString(digest), "tpm.pcr00": strings.Repeat("0", 64), "quote.header.tee_type": "81000000"}
			for k, v := range tc.want {
				want[k] = v
			}
			claimsWith(want)(t, claims)
		})
	}
}

// TestCollateral: Intel's collateral decides, as for the tdx plugin.
func TestCollateral(t *testing.T) {
	ev := simulated(t, 1, vtpmtest.Options{Nonce: digest}, dcaptest.TDXOptions{})
	tests := []struct {
		name      string
		settings  []byte
		wantClass sdk.Class
	}{
		{"revoked PCK certificate", settings(t, dcaptest.CollateralOptions{RevokePCK: true}), sdk.ClassBadEvidence},
		{"revoked TCB", settings(t, dcaptest.CollateralOptions{Status: "Revoked"}), sdk.ClassBadEvidence},
		{"expired collateral", settings(t, dcaptest.CollateralOptions{IssueDate: now.Add(-60 * 24 * time.Hour), NextUpdate: now.Add(-30 * 24 * time.Hour)}), sdk.ClassUnavailable},
		{"Intel's root, not the test one", []byte(`{"collateral_dir":"` + t.TempDir() + `"}`), sdk.ClassBadEvidence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := plugintest.Start(t, opts(withSettings(t)), tc.settings)
			_, err := c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: digest})
			if !errors.Is(err, &sdk.Error{Class: tc.wantClass}) {
				t.Errorf("Verify = %v (class %q), want %q", err, sdk.ClassOf(err), tc.wantClass)
			}
		})
	}
}

func TestConfigure(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		config string
		ok     bool
	}{
		{"empty", ``, true},
		{"the tdx plugin's settings", `{"collateral_url":"https://pccs.example:8081/sgx/certification/v4/","cache_dir":"` + filepath.Join(dir, "cache") + `","timeout":"5s","check_revocations":true,"tcb_update":"standard","accept_expired_collateral":false}`, true},
		{"offline without a directory", `{"offline":true}`, false},
		{"unknown key", `{"collateral":"none"}`, false},
		{"bad tcb_update", `{"tcb_update":"late"}`, false},
		{"missing collateral_dir", `{"collateral_dir":"` + filepath.Join(dir, "nope") + `"}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := New().Configure(context.Background(), []byte(tc.config))
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, sdk.ErrInvalidArgument)) {
				t.Errorf("Configure(%s) = %v, want ok=%v or invalid argument", tc.config, err, tc.ok)
			}
		})
	}
}

// BenchmarkVerifyReal is one verification of the real v1 evidence without
// collateral, in-process.
func BenchmarkVerifyReal(b *testing.B) {
	v := noCollateral()
	r := &verifier.Request{TEE: TEE, Evidence: evidence(b, "evidence-v1.json"), ReportData: []byte("challenge"), HashAlgorithm: "sha384"}
	bench(b, func() error { _, err := v.Verify(context.Background(), r); return err })
}

// BenchmarkVerifySimulated is one verification of synthetic evidence with
// collateral, through the plugin's gRPC boundary (in-process server).
func BenchmarkVerifySimulated(b *testing.B) {
	c := plugintest.Start(b, opts(withSettings(b)), settings(b, dcaptest.CollateralOptions{}))
	r := &verifier.Request{TEE: TEE, Evidence: simulated(b, 2, vtpmtest.Options{Nonce: digest, UserData: digest}, dcaptest.TDXOptions{}), ReportData: digest, HashAlgorithm: "sha384"}
	bench(b, func() error { _, err := c.Verifier().Verify(context.Background(), r); return err })
}

func bench(b *testing.B, f func() error) {
	start := cpuTime()
	for b.Loop() {
		if err := f(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
