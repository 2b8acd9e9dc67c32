package tdx

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/plugins/lib/dcap/dcaptest"
	"github.com/gokbs/kbs/plugins/lib/dcap/eventlog"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/verifier"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// digest is a runtime-data digest as the host computes it (SHA-384).
var digest = func() []byte { d := sha512.Sum384([]byte("runtime data")); return d[:] }()

// initData is an init-data digest (SHA-384 of the TOML).
var initData = func() []byte { d := sha512.Sum384([]byte("[data]\n")); return d[:] }()

// env is a test platform with its collateral in a directory and its root
// in a file, and the settings that point a verifier at them.
type env struct {
	p      *dcaptest.Platform
	dir    string
	config []byte
}

func newEnv(t testing.TB, o dcaptest.CollateralOptions) *env {
	t.Helper()
	e := &env{p: dcaptest.New(dcaptest.Options{Now: testNow}), dir: t.TempDir()}
	var err error
	if e.config, err = e.p.WriteSettings(e.dir, o); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) verifier(t testing.TB, extra map[string]any) *Verifier {
	t.Helper()
	base := dcap.DefaultConfig()
	base.Now = func() time.Time { return testNow }
	v, err := NewWithConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config
	if extra != nil {
		var m map[string]any
		json.Unmarshal(e.config, &m)
		for k, x := range extra {
			m[k] = x
		}
		cfg, _ = json.Marshal(m)
	}
	if err := v.Configure(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	return v
}

func evidenceJSON(quote []byte, ccel []byte) json.RawMessage {
	m := map[string]any{"quote": base64.StdEncoding.EncodeToString(quote), "cc_eventlog": nil}
	if ccel != nil {
		m["cc_eventlog"] = base64.StdEncoding.EncodeToString(ccel)
	}
	b, _ := json.Marshal(m)
	return b
}

// ccel returns a real event log and the RTMRs it replays to.
func ccel(t testing.TB, name string) ([]byte, [4][]byte) {
	t.Helper()
	raw := plugintest.EvidenceFile(t, "eventlog/"+name)
	l, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	rtmr, err := l.RTMRs()
	if err != nil {
		t.Fatal(err)
	}
	return raw, rtmr
}

// TestVerifyGolden: verified claims, golden files under testdata/. The
// root key ID depends on the generated root and is blanked.
func TestVerifyGolden(t *testing.T) {
	e := newEnv(t, dcaptest.CollateralOptions{})
	log, rtmr := ccel(t, "CCEL_data_grub")
	low := dcaptest.DefaultTEETCBSVN
	low[2] = 1
	tests := map[string]struct {
		quote    dcaptest.TDXOptions
		ccel     []byte
		initData []byte
		extra    map[string]any
		env      *env
	}{
		"v4 with event log": {quote: dcaptest.TDXOptions{ReportData: digest, RTMRs: rtmr}, ccel: log},
		"v5 with init-data": {quote: dcaptest.TDXOptions{Version: 5, ReportData: digest, MRConfigID: initData}, initData: initData},
		"out-of-date TCB":   {quote: dcaptest.TDXOptions{ReportData: digest, TEETCBSVN: &low}},
		"expired collateral allowed": {
			quote: dcaptest.TDXOptions{ReportData: digest},
			env:   newEnv(t, dcaptest.CollateralOptions{IssueDate: testNow.Add(-2 * time.Hour), NextUpdate: testNow.Add(-time.Hour)}),
			extra: map[string]any{"accept_expired_collateral": true},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			en := e
			if tc.env != nil {
				en = tc.env
			}
			claims, err := en.verifier(t, tc.extra).Verify(context.Background(), &verifier.Request{
				TEE: TEE, Evidence: evidenceJSON(en.p.TDXQuote(tc.quote), tc.ccel),
				ReportData: digest, HashAlgorithm: "sha384", InitDataDigest: tc.initData,
			})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			claims["root_key_id"] = "generated"
			golden(t, strings.ReplaceAll(name, " ", "-")+".golden.json", claims)
		})
	}
}

func golden(t *testing.T, name string, v any) {
	t.Helper()
	plugintest.GoldenJSON(t, filepath.Join("testdata", name), v, *update)
}

func TestVerifyErrors(t *testing.T) {
	e := newEnv(t, dcaptest.CollateralOptions{})
	v := e.verifier(t, nil)
	log, rtmr := ccel(t, "CCEL_data")
	otherLog, _ := ccel(t, "CCEL_data_ovmf")
	good := e.p.TDXQuote(dcaptest.TDXOptions{ReportData: digest, MRConfigID: initData, RTMRs: rtmr})
	tampered := append([]byte{}, good...)
	tampered[dcap.HeaderSize+200] ^= 1
	b64 := base64.StdEncoding.EncodeToString(good)
	expired := newEnv(t, dcaptest.CollateralOptions{IssueDate: testNow.Add(-2 * time.Hour), NextUpdate: testNow.Add(-time.Hour)})
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := map[string]struct {
		v         *Verifier
		ctx       context.Context
		tee       string
		evidence  json.RawMessage
		reportDat []byte
		initData  []byte
		class     sdk.Class
		message   string
	}{
		"wrong report data":         {evidence: evidenceJSON(good, log), reportDat: make([]byte, 48), class: sdk.ClassBadEvidence, message: "REPORT_DATA"},
		"report data of 64 bytes":   {evidence: evidenceJSON(good, log), reportDat: append(append([]byte{}, digest...), 1), class: sdk.ClassBadEvidence, message: "REPORT_DATA"},
		"wrong init-data":           {evidence: evidenceJSON(good, log), initData: make([]byte, 48), class: sdk.ClassBadEvidence, message: "MRCONFIGID"},
		"event log of another TD":   {evidence: evidenceJSON(good, otherLog), class: sdk.ClassBadEvidence, message: "RTMR0"},
		"event log, not a log":      {evidence: evidenceJSON(good, []byte("not a log")), class: sdk.ClassBadEvidence, message: "cc_eventlog"},
		"event log, not base64":     {evidence: json.RawMessage(`{"quote":"` + b64 + `","cc_eventlog":"%%%"}`), class: sdk.ClassBadEvidence, message: "cc_eventlog"},
		"tampered quote":            {evidence: evidenceJSON(tampered, log), class: sdk.ClassBadEvidence, message: "signature"},
		"SGX quote":                 {evidence: evidenceJSON(e.p.SGXQuote(dcaptest.SGXOptions{ReportData: digest}), nil), class: sdk.ClassBadEvidence, message: "SGX quote"},
		"quote missing":             {evidence: json.RawMessage(`{"cc_eventlog":null}`), class: sdk.ClassBadEvidence, message: "missing"},
		"quote not base64":          {evidence: json.RawMessage(`{"quote":"!!!"}`), class: sdk.ClassBadEvidence, message: "base64"},
		"quote base64url":           {evidence: json.RawMessage(`{"quote":"` + strings.NewReplacer("+", "-", "/", "_").Replace(b64) + `"}`), class: sdk.ClassBadEvidence, message: "base64"},
		"quote with line breaks":    {evidence: json.RawMessage(`{"quote":"` + b64[:64] + `\n` + b64[64:] + `"}`), class: sdk.ClassBadEvidence, message: "base64"},
		"quote of a number":         {evidence: json.RawMessage(`{"quote":5}`), class: sdk.ClassBadEvidence},
		"oversized quote":           {evidence: json.RawMessage(`{"quote":"` + strings.Repeat("AAAA", dcap.MaxQuoteSize) + `"}`), class: sdk.ClassBadEvidence, message: "more than"},
		"truncated quote":           {evidence: evidenceJSON(good[:len(good)-100], nil), class: sdk.ClassBadEvidence, message: "truncated"},
		"real quote, no collateral": {evidence: evidenceJSON(plugintest.EvidenceFile(t, "tdx/tdx_quote_4.dat"), nil), class: sdk.ClassBadEvidence, message: "not a trusted root"},
		"real quote, Intel root, no collateral": {v: func() *Verifier {
			base := dcap.DefaultConfig()
			base.Now = func() time.Time { return testNow }
			v, _ := NewWithConfig(base)
			if err := v.Configure(context.Background(), []byte(`{"collateral_dir":"`+t.TempDir()+`"}`)); err != nil {
				t.Fatal(err)
			}
			return v
		}(), evidence: evidenceJSON(plugintest.EvidenceFile(t, "tdx/tdx_quote_4.dat"), nil), class: sdk.ClassUnavailable, message: "50806F000000"},
		"expired collateral": {v: expired.verifier(t, nil), evidence: evidenceJSON(expired.p.TDXQuote(dcaptest.TDXOptions{}), nil), class: sdk.ClassUnavailable, message: "expired"},
		"sgx TEE":            {tee: "sgx", evidence: evidenceJSON(good, log), class: sdk.ClassUnsupported},
		"canceled":           {ctx: canceled, evidence: evidenceJSON(good, log), class: sdk.ClassUnavailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			vv, ctx, tee := v, tc.ctx, tc.tee
			if tc.v != nil {
				vv = tc.v
			}
			if ctx == nil {
				ctx = context.Background()
			}
			if tee == "" {
				tee = TEE
			}
			rd := tc.reportDat
			if rd == nil {
				rd = digest
			}
			_, err := vv.Verify(ctx, &verifier.Request{TEE: tee, Evidence: tc.evidence, ReportData: rd, InitDataDigest: tc.initData})
			if !errors.Is(err, &sdk.Error{Class: tc.class}) && sdk.ClassOf(err) != tc.class {
				t.Fatalf("error = %v (class %q), want class %q", err, sdk.ClassOf(err), tc.class)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error = %v, want it to say %q", err, tc.message)
			}
		})
	}
	t.Run("good evidence", func(t *testing.T) {
		ev := e.p.TDXEvidence(dcaptest.TDXOptions{ReportData: digest, MRConfigID: initData, RTMRs: rtmr}, log)
		c, err := v.Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: digest, InitDataDigest: initData})
		if err != nil {
			t.Fatal(err)
		}
		if c["tcb_status"] != "UpToDate" || len(c["uefi_event_logs"].([]any)) != 5 {
			t.Errorf("claims: tcb_status %v, %d events", c["tcb_status"], len(c["uefi_event_logs"].([]any)))
		}
	})
}

func TestSettings(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root.pem")
	os.WriteFile(root, dcaptest.New(dcaptest.Options{}).RootPEM(), 0o644)
	notPEM := filepath.Join(dir, "x.pem")
	os.WriteFile(notPEM, []byte("no"), 0o644)
	tests := map[string]struct {
		config string
		ok     bool
	}{
		"empty":                    {``, true},
		"null":                     {`null`, true},
		"defaults written out":     {`{"collateral_url":"https://api.trustedservices.intel.com/sgx/certification/v4/","collateral_dir":"","cache_dir":"","offline":false,"timeout":"10s","check_revocations":true,"tcb_update":"early","accept_expired_collateral":false,"root_ca_file":""}`, true},
		"PCCS with a cache":        {`{"collateral_url":"https://pccs.local:8081/sgx/certification/v4/","cache_dir":"` + filepath.Join(dir, "cache") + `","tcb_update":"standard"}`, true},
		"offline on the cache":     {`{"offline":true,"cache_dir":"` + filepath.Join(dir, "cache2") + `"}`, true},
		"collateral directory":     {`{"collateral_dir":"` + dir + `","root_ca_file":"` + root + `"}`, true},
		"unknown key":              {`{"colateral_url":"https://x"}`, false},
		"offline without a dir":    {`{"offline":true}`, false},
		"missing collateral dir":   {`{"collateral_dir":"` + filepath.Join(dir, "nope") + `"}`, false},
		"collateral dir is a file": {`{"collateral_dir":"` + root + `"}`, false},
		"bad URL":                  {`{"collateral_url":"ftp://x/"}`, false},
		"timeout zero":             {`{"timeout":"0s"}`, false},
		"timeout not a duration":   {`{"timeout":10}`, false},
		"timeout too long":         {`{"timeout":"1h"}`, false},
		"tcb_update unknown":       {`{"tcb_update":"latest"}`, false},
		"root_ca_file missing":     {`{"root_ca_file":"` + filepath.Join(dir, "nope.pem") + `"}`, false},
		"root_ca_file not PEM":     {`{"root_ca_file":"` + notPEM + `"}`, false},
		"trailing data":            {`{} {}`, false},
		"check_revocations string": {`{"check_revocations":"yes"}`, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := New().Configure(context.Background(), []byte(tc.config))
			if tc.ok && err != nil {
				t.Fatalf("Configure: %v", err)
			}
			if !tc.ok && !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("Configure error = %v, want invalid_argument", err)
			}
		})
	}
}
