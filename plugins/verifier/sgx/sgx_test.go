package sgx

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/plugins/lib/dcap/dcaptest"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/verifier"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var digest = func() []byte { d := sha512.Sum384([]byte("runtime data")); return d[:] }()

// initData is a SHA-512 init-data digest: CONFIGID holds 64 bytes.
var initData = func() []byte { d := sha512.Sum512([]byte("[data]\n")); return d[:] }()

type env struct {
	p      *dcaptest.Platform
	config []byte
}

func newEnv(t testing.TB, o dcaptest.CollateralOptions) *env {
	t.Helper()
	e := &env{p: dcaptest.New(dcaptest.Options{Now: testNow})}
	var err error
	if e.config, err = e.p.WriteSettings(t.TempDir(), o); err != nil {
		t.Fatal(err)
	}
	return e
}

func newVerifier(t testing.TB) *Verifier {
	t.Helper()
	base := dcap.DefaultConfig()
	base.Now = func() time.Time { return testNow }
	v, err := NewWithConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (e *env) verifier(t testing.TB) *Verifier {
	t.Helper()
	v := newVerifier(t)
	if err := v.Configure(context.Background(), e.config); err != nil {
		t.Fatal(err)
	}
	return v
}

// evidenceJSON wraps a quote as the attester does; see also
// dcaptest.Platform.SGXEvidence.
func evidenceJSON(quote []byte) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"quote": base64.StdEncoding.EncodeToString(quote)})
	return b
}

func TestVerifyGolden(t *testing.T) {
	e := newEnv(t, dcaptest.CollateralOptions{})
	tests := map[string]struct {
		quote    dcaptest.SGXOptions
		initData []byte
	}{
		"enclave":                {quote: dcaptest.SGXOptions{ReportData: digest}},
		"enclave with init-data": {quote: dcaptest.SGXOptions{ReportData: digest, ConfigID: initData}, initData: initData},
		"out-of-date QE":         {quote: dcaptest.SGXOptions{ReportData: digest, QESVN: 2}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			claims, err := e.verifier(t).Verify(context.Background(), &verifier.Request{
				TEE: TEE, Evidence: evidenceJSON(e.p.SGXQuote(tc.quote)), ReportData: digest, InitDataDigest: tc.initData,
			})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			claims["root_key_id"] = "generated"
			plugintest.GoldenJSON(t, filepath.Join("testdata", strings.ReplaceAll(name, " ", "-")+".golden.json"), claims, *update)
		})
	}
}

func TestVerifyErrors(t *testing.T) {
	e := newEnv(t, dcaptest.CollateralOptions{})
	v := e.verifier(t)
	good := e.p.SGXQuote(dcaptest.SGXOptions{ReportData: digest, ConfigID: initData})
	tampered := append([]byte{}, good...)
	tampered[dcap.HeaderSize+64] ^= 1 // MRENCLAVE
	revoked := newEnv(t, dcaptest.CollateralOptions{RevokePCK: true})
	tests := map[string]struct {
		v          *Verifier
		tee        string
		evidence   json.RawMessage
		reportData []byte
		initData   []byte
		class      sdk.Class
		message    string
	}{
		"wrong report data":     {evidence: evidenceJSON(good), reportData: digest[:47], class: sdk.ClassBadEvidence, message: "REPORT_DATA"},
		"wrong init-data":       {evidence: evidenceJSON(good), initData: initData[:48], class: sdk.ClassBadEvidence, message: "CONFIGID"},
		"tampered MRENCLAVE":    {evidence: evidenceJSON(tampered), class: sdk.ClassBadEvidence, message: "signature"},
		"TD quote":              {evidence: evidenceJSON(e.p.TDXQuote(dcaptest.TDXOptions{ReportData: digest})), class: sdk.ClassBadEvidence, message: "TD quote"},
		"revoked PCK":           {v: revoked.verifier(t), evidence: evidenceJSON(revoked.p.SGXQuote(dcaptest.SGXOptions{ReportData: digest})), class: sdk.ClassBadEvidence, message: "revoked"},
		"another platform":      {evidence: evidenceJSON(revoked.p.SGXQuote(dcaptest.SGXOptions{ReportData: digest})), class: sdk.ClassBadEvidence, message: "trusted root"},
		"quote missing":         {evidence: json.RawMessage(`{}`), class: sdk.ClassBadEvidence, message: "missing"},
		"truncated quote":       {evidence: evidenceJSON(good[:600]), class: sdk.ClassBadEvidence, message: "truncated"},
		"real quote, test root": {evidence: evidenceJSON(plugintest.EvidenceFile(t, "sgx/occlum_quote.dat")), class: sdk.ClassBadEvidence, message: "trusted root"},
		"real quote, Intel root": {v: func() *Verifier {
			v := newVerifier(t)
			if err := v.Configure(context.Background(), []byte(`{"collateral_dir":"`+t.TempDir()+`"}`)); err != nil {
				t.Fatal(err)
			}
			return v
		}(), evidence: evidenceJSON(plugintest.EvidenceFile(t, "sgx/occlum_quote.dat")), class: sdk.ClassUnavailable, message: "00606A000000"},
		"tdx TEE": {tee: "tdx", evidence: evidenceJSON(good), class: sdk.ClassUnsupported},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			vv, tee := v, tc.tee
			if tc.v != nil {
				vv = tc.v
			}
			if tee == "" {
				tee = TEE
			}
			rd := tc.reportData
			if rd == nil {
				rd = digest
			}
			_, err := vv.Verify(context.Background(), &verifier.Request{TEE: tee, Evidence: tc.evidence, ReportData: rd, InitDataDigest: tc.initData})
			if !errors.Is(err, &sdk.Error{Class: tc.class}) {
				t.Fatalf("error = %v (class %q), want class %q", err, sdk.ClassOf(err), tc.class)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error = %v, want it to say %q", err, tc.message)
			}
		})
	}
}

func testOptions(t testing.TB) serve.Options {
	return serve.Options{Name: "sgx", Version: "0.1.0", TEETypes: []string{TEE}, Verifier: newVerifier(t)}
}

// TestConformance serves the plugin over real gRPC, as kbs-host runs it.
func TestConformance(t *testing.T) {
	e := newEnv(t, dcaptest.CollateralOptions{})
	quote := e.p.SGXQuote(dcaptest.SGXOptions{ReportData: digest, ConfigID: initData})
	plugintest.VerifierConformance(t, testOptions(t), e.config, []plugintest.VerifierCase{
		{
			Name:    "bound quote",
			Request: verifier.Request{TEE: TEE, Evidence: e.p.SGXEvidence(dcaptest.SGXOptions{ReportData: digest, ConfigID: initData}), ReportData: digest, HashAlgorithm: "sha384", InitDataDigest: initData},
			Check: func(t *testing.T, c verifier.Claims) {
				if c["report_data"] != hex.EncodeToString(dcap.Regularize(digest, 64)) || c["init_data"] != hex.EncodeToString(initData) ||
					c["tcb_status"] != "UpToDate" {
					t.Errorf("claims report_data %v, init_data %v, tcb_status %v", c["report_data"], c["init_data"], c["tcb_status"])
				}
				body := c["body"].(map[string]any)
				if body["mr_enclave"] != strings.Repeat("e1", 32) || body["isv_svn"] != "0300" {
					t.Errorf("body = %v", body)
				}
			},
		},
		{Name: "other runtime data", Request: verifier.Request{TEE: TEE, Evidence: evidenceJSON(quote), ReportData: make([]byte, 48)}, WantClass: sdk.ClassBadEvidence},
		{Name: "tdx is another plugin's", Request: verifier.Request{TEE: "tdx", Evidence: evidenceJSON(quote), ReportData: digest}, WantClass: sdk.ClassUnsupported},
	})
}

// BenchmarkVerify: an SGX quote with collateral from a directory,
// in-process and through the plugin's gRPC interface.
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b, dcaptest.CollateralOptions{})
	req := &verifier.Request{TEE: TEE, ReportData: digest, Evidence: evidenceJSON(e.p.SGXQuote(dcaptest.SGXOptions{ReportData: digest}))}
	run := func(b *testing.B, v verifier.Verifier) {
		if _, err := v.Verify(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("in-process", func(b *testing.B) { run(b, e.verifier(b)) })
	b.Run("plugin", func(b *testing.B) { run(b, plugintest.Start(b, testOptions(b), e.config).Verifier()) })
}
