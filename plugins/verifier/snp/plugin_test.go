package snp

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	libsnp "github.com/gokbs/kbs/plugins/lib/snp"
	"github.com/gokbs/kbs/plugins/lib/snp/snptest"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/verifier"
)

// digest is a runtime-data digest as the host computes it (SHA-384).
var digest = func() []byte { d := sha512.Sum384([]byte("runtime data")); return d[:] }()

var testSigner = func() *snptest.Signer {
	s, err := snptest.NewSigner(snptest.Options{Generation: "Genoa"})
	if err != nil {
		panic(err)
	}
	return s
}()

// trusting returns a plugin whose library verifiers trust the test roots.
func trusting() *Verifier {
	v := New()
	v.adjust = func(l *libsnp.Verifier) error { return snptest.Trust(l, testSigner) }
	return v
}

func opts(v *Verifier) serve.Options {
	return serve.Options{Name: "snp", Version: "0.1.0", TEETypes: []string{TEE}, Verifier: v}
}

func mustEvidence(t testing.TB, r snptest.Report) json.RawMessage {
	t.Helper()
	ev, err := testSigner.Evidence(r)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// realEvidence is the real attester JSON kept in the library's testdata.
func realEvidence(t testing.TB) (json.RawMessage, []byte) {
	t.Helper()
	ev, err := os.ReadFile(filepath.Join("..", "..", "lib", "snp", "testdata", "trustee-e2e-evidence.json"))
	if err != nil {
		t.Fatal(err)
	}
	rd, _ := hex.DecodeString("7e7320889600c7ac133aea7b896c51f41026002982292a7369559796999c1bf929eef3ff23c46e858f0b1982f9a92b17c51b578d958cde6b0c92978f150cf9b0")
	return ev, rd
}

// TestConformance serves the plugin over real gRPC, as kbs-host runs it.
// The plugin trusts the test roots for Genoa (so real Genoa evidence is
// TestDefaults' business) and AMD's for Milan.
func TestConformance(t *testing.T) {
	initData := sha256.Sum256([]byte("algorithm = \"sha256\"\n"))
	real, realRD := realEvidence(t)
	v2raw := plugintest.EvidenceFile(t, "snp/test-report.bin")
	v2, err := libsnp.EncodeEvidence(v2raw, []libsnp.Cert{{Type: libsnp.CertVCEK, Data: plugintest.EvidenceFile(t, "snp/test-vcek.der")}})
	if err != nil {
		t.Fatal(err)
	}
	req := func(ev json.RawMessage, rd, id []byte) verifier.Request {
		return verifier.Request{TEE: TEE, Evidence: ev, ReportData: rd, HashAlgorithm: "sha384", InitDataDigest: id}
	}
	plugintest.VerifierConformance(t, opts(trusting()), []byte(`{"kds_disabled":true,"min_report_version":2}`), []plugintest.VerifierCase{
		{
			Name:    "fake Genoa evidence with init-data",
			Request: req(mustEvidence(t, snptest.Report{ReportData: digest, HostData: initData[:]}), digest, initData[:]),
			Check: func(t *testing.T, c verifier.Claims) {
				want := map[string]any{
					"report_data":          hex.EncodeToString(append(append([]byte{}, digest...), make([]byte, 16)...)),
					"init_data":            hex.EncodeToString(initData[:]),
					"policy_smt_allowed":   true,
					"policy_debug_allowed": false,
					// numbers cross the plugin boundary as JSON numbers
					"reported_tcb_microcode": float64(115),
					"chip_id":                hex.EncodeToString(snptest.DefaultChipID[:]),
				}
				for k, w := range want {
					if c[k] != w {
						t.Errorf("claim %s = %#v, want %#v", k, c[k], w)
					}
				}
				if len(c) != 16 {
					t.Errorf("%d claims, want trustee's 16", len(c))
				}
			},
		},
		{Name: "real Milan v2 report, minimum lowered to 2", Request: req(v2, v2raw[0x50:0x90], nil)},
		{Name: "other runtime-data digest", Request: req(mustEvidence(t, snptest.Report{ReportData: digest}), make([]byte, 48), nil), WantClass: sdk.ClassBadEvidence},
		{Name: "other init-data", Request: req(mustEvidence(t, snptest.Report{ReportData: digest}), digest, initData[:]), WantClass: sdk.ClassBadEvidence},
		{Name: "VMPL 1", Request: req(mustEvidence(t, snptest.Report{ReportData: digest, VMPL: 1}), digest, nil), WantClass: sdk.ClassBadEvidence},
		{Name: "tampered report", Request: req(mustEvidence(t, snptest.Report{ReportData: digest, Tamper: func(b []byte) { b[0x90] ^= 1 }}), digest, nil), WantClass: sdk.ClassBadEvidence},
		{Name: "no certificate and KDS disabled", Request: req(noChain(t), digest, nil), WantClass: sdk.ClassUnavailable},
		{Name: "az-snp-vtpm is not handled", Request: verifier.Request{TEE: "az-snp-vtpm", Evidence: real, ReportData: realRD}, WantClass: sdk.ClassUnsupported},
	})
}

func noChain(t testing.TB) json.RawMessage {
	t.Helper()
	raw, err := testSigner.RawReport(snptest.Report{ReportData: digest})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := libsnp.EncodeEvidence(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestDefaults: without settings the plugin is trustee's verifier: AMD's
// roots only, version 3 or later.
func TestDefaults(t *testing.T) {
	c := plugintest.Start(t, opts(New()), nil)
	real, rd := realEvidence(t)
	ctx := context.Background()
	if _, err := c.Verifier().Verify(ctx, &verifier.Request{TEE: TEE, Evidence: real, ReportData: rd}); err != nil {
		t.Errorf("real evidence: %v", err)
	}
	_, err := c.Verifier().Verify(ctx, &verifier.Request{TEE: TEE, Evidence: mustEvidence(t, snptest.Report{ReportData: digest}), ReportData: digest})
	if !errors.Is(err, sdk.ErrBadEvidence) || !strings.Contains(err.Error(), "does not chain to AMD's Genoa ARK") {
		t.Errorf("test-signed evidence: %v, want bad evidence (untrusted root)", err)
	}
	v2, err := libsnp.EncodeEvidence(plugintest.EvidenceFile(t, "snp/test-report.bin"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Verifier().Verify(ctx, &verifier.Request{TEE: TEE, Evidence: v2, ReportData: digest})
	if !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("version 2 report: %v, want unsupported", err)
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
		{"empty object", `{}`, true},
		{"all settings", `{"vmpl":0,"vcek_dir":"` + dir + `","kds_base_url":"https://kdsintf.amd.com","kds_disabled":false,"kds_timeout":"10s","cache_dir":"` + filepath.Join(dir, "cache") + `","min_report_version":3}`, true},
		{"unknown key", `{"vmpl":0,"vcek_sources":[]}`, false},
		{"negative vmpl", `{"vmpl":-1}`, false},
		{"vmpl 4", `{"vmpl":4}`, false},
		{"min version 1", `{"min_report_version":1}`, false},
		{"min version 6", `{"min_report_version":6}`, false},
		{"bad timeout", `{"kds_timeout":"ten seconds"}`, false},
		{"zero timeout", `{"kds_timeout":"0s"}`, false},
		{"ftp KDS", `{"kds_base_url":"ftp://kds"}`, false},
		{"KDS with query", `{"kds_base_url":"https://kds/?a=1"}`, false},
		{"missing vcek_dir", `{"vcek_dir":"` + filepath.Join(dir, "nope") + `"}`, false},
		{"test roots only in a test build", `{"test_roots_pem":{}}`, testRootsEnabled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := New().Configure(context.Background(), []byte(tc.config))
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("Configure(%s) = %v, want invalid argument", tc.config, err)
			}
		})
	}
}

// TestKDSSettings: the KDS and cache settings reach the library: a report
// without certificates is verified with the VCEK from a (fake) KDS, which
// is then cached on disk.
func TestKDSSettings(t *testing.T) {
	var hits atomic.Int32
	kds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !strings.HasPrefix(r.URL.Path, "/vcek/v1/Genoa/"+hex.EncodeToString(testSigner.ChipID[:])) {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(testSigner.VCEK())
	}))
	defer kds.Close()
	cache := filepath.Join(t.TempDir(), "cache")
	c := plugintest.Start(t, opts(trusting()), []byte(`{"kds_base_url":"`+kds.URL+`","kds_timeout":"2s","cache_dir":"`+cache+`"}`))
	if _, err := c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: noChain(t), ReportData: digest}); err != nil {
		t.Fatal(err)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("KDS hits = %d, want 1", n)
	}
	files, _ := filepath.Glob(filepath.Join(cache, "vcek", "*", "*_vcek.der"))
	if len(files) != 1 {
		t.Errorf("cached VCEKs = %v, want one", files)
	}
}

// BenchmarkVerify is one verification through the plugin's gRPC boundary
// (in-process server), real Genoa evidence.
func BenchmarkVerify(b *testing.B) {
	c := plugintest.Start(b, opts(New()), nil)
	ev, rd := realEvidence(b)
	req := &verifier.Request{TEE: TEE, Evidence: ev, ReportData: rd, HashAlgorithm: "sha384"}
	ctx := context.Background()
	start := cpuTime()
	for b.Loop() {
		if _, err := c.Verifier().Verify(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	// The machine is shared: CPU time per verification says more than wall time.
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
