package csv

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/verifier"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// digest is a runtime-data digest as the host computes it (SHA-384).
var digest = func() []byte { d := sha512.Sum384([]byte("runtime data")); return d[:] }()

func configured(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{}
	if err := v.Configure(context.Background(), raw); err != nil {
		t.Fatalf("Configure(%s): %v", raw, err)
	}
	return v
}

func checkGolden(t *testing.T, name string, claims verifier.Claims) {
	t.Helper()
	plugintest.GoldenJSON(t, filepath.Join("testdata", name+".golden.json"), claims, *update)
}

// The real evidence carries the PEK but no HSK/CEK: what can be checked
// offline is the parse, the PEK's signature over the report, and the
// claims.
func TestRealEvidence(t *testing.T) {
	raw := plugintest.EvidenceFile(t, "csv/csv_evidence.json")
	p, err := parseEvidence(raw)
	if err != nil {
		t.Fatal(err)
	}
	if p.chip != "KPA64911240507" || p.report.version != 1 {
		t.Errorf("chip %q, version %d; want KPA64911240507, 1", p.chip, p.report.version)
	}
	if err := verifyReport(p.pek, p.report); err != nil {
		t.Fatalf("PEK signature over the real report: %v", err)
	}
	checkGolden(t, "real-evidence-v1", p.report.claims(p.chip))

	t.Run("tampered report", func(t *testing.T) {
		for _, off := range []int{0x00, 0x40, 0x90, 0xB0} {
			q, _ := parseEvidence(raw)
			q.report.data = append([]byte(nil), q.report.data...)
			q.report.data[off] ^= 1
			if err := verifyReport(q.pek, q.report); err == nil {
				t.Errorf("a flipped byte at %#x still verifies", off)
			}
		}
	})
	t.Run("full verify needs the HSK/CEK", func(t *testing.T) {
		v := configured(t, Config{Offline: true, CertDir: t.TempDir()})
		_, err := v.Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: raw, ReportData: make([]byte, 48)})
		if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "KPA64911240507") {
			t.Fatalf("err = %v, want unavailable naming the chip", err)
		}
	})
	t.Run("the pinned HRK is Hygon's", func(t *testing.T) {
		real, err := parseCACert(plugintest.EvidenceFile(t, "csv/hrk.cert"))
		if err != nil {
			t.Fatal(err)
		}
		if err := real.verifiedBy(real); err != nil {
			t.Fatalf("hrk.cert is not self-signed: %v", err)
		}
		pinned := builtinHRK()
		if !bytes.Equal(real.kid, pinned.kid) || !real.pub.key.Equal(pinned.pub.key) || !bytes.Equal(real.pub.uid, pinned.pub.uid) {
			t.Fatal("the pinned HRK differs from hrk.cert")
		}
		// The pinned key verifies what the real root signed: itself.
		if err := real.verifiedBy(pinned); err != nil {
			t.Fatalf("the pinned HRK does not verify hrk.cert: %v", err)
		}
	})
}

func TestFullChain(t *testing.T) {
	c := newTestChain(t)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "hsk_cek", c.chip), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hsk_cek", c.chip, "hsk_cek.cert"), c.hskCEK(), 0o600); err != nil {
		t.Fatal(err)
	}
	inEvidence := configured(t, Config{HRKPath: c.hrkPath, Offline: true, CertDir: t.TempDir()})
	offline := configured(t, Config{HRKPath: c.hrkPath, Offline: true, CertDir: dir})
	tests := map[string]struct {
		v    *Verifier
		opts evidenceOpts
	}{
		"v1 with HSK/CEK in the evidence":   {v: inEvidence, opts: evidenceOpts{withHSKCEK: true}},
		"v1 masked by anonce":               {v: inEvidence, opts: evidenceOpts{withHSKCEK: true, anonce: 0x5dc7d726}},
		"v2 with HSK/CEK in the evidence":   {v: inEvidence, opts: evidenceOpts{version: 2, withHSKCEK: true}},
		"v1 with HSK/CEK from the cert dir": {v: offline, opts: evidenceOpts{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ev := c.evidence(t, digest, tc.opts)
			claims, err := tc.v.Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: digest, HashAlgorithm: "sha384"})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if want := hex.EncodeToString(fit(digest, 64)); claims["report_data"] != want {
				t.Errorf("report_data = %v, want %s", claims["report_data"], want)
			}
			checkGolden(t, fmt.Sprintf("generated-v%d", max(tc.opts.version, 1)), withoutAnonce(claims))
		})
	}
}

// withoutAnonce drops the one claim that depends on the random mask, so
// that masked and unmasked reports share a golden file.
func withoutAnonce(c verifier.Claims) verifier.Claims {
	out := verifier.Claims{}
	for k, v := range c {
		if k != "anonce" {
			out[k] = v
		}
	}
	return out
}

func TestKDS(t *testing.T) {
	c := newTestChain(t)
	var hits atomic.Int32
	kds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Query().Get("snumber") {
		case c.chip:
			_, _ = w.Write(c.hskCEK())
		case "BROKEN":
			_, _ = w.Write(c.hskCEK()[:100])
		case "FORGED":
			other := newTestChain(t) // chains to another root
			_, _ = w.Write(other.hskCEK())
		default:
			http.Error(w, "no such chip", http.StatusNotFound)
		}
	}))
	defer kds.Close()
	v := configured(t, Config{HRKPath: c.hrkPath, KDSURL: kds.URL + "/hsk_cek", CertDir: t.TempDir()})
	ctx := context.Background()

	ev := c.evidence(t, digest, evidenceOpts{})
	for i := range 3 {
		if _, err := v.Verify(ctx, &verifier.Request{TEE: TEE, Evidence: ev, ReportData: digest}); err != nil {
			t.Fatalf("Verify #%d: %v", i, err)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the KDS was asked %d times for one chip, want 1 (cached)", n)
	}
	for chip, want := range map[string]error{"UNKNOWN": sdk.ErrUnavailable, "BROKEN": sdk.ErrUnavailable, "FORGED": sdk.ErrUnavailable} {
		t.Run(chip, func(t *testing.T) {
			ev := c.evidence(t, digest, evidenceOpts{chip: chip})
			_, err := v.Verify(ctx, &verifier.Request{TEE: TEE, Evidence: ev, ReportData: digest})
			if !errors.Is(err, want) {
				t.Fatalf("err = %v (class %q), want %q", err, sdk.ClassOf(err), sdk.ClassOf(want))
			}
		})
	}
	t.Run("a chip that failed is asked again", func(t *testing.T) {
		before := hits.Load()
		ev := c.evidence(t, digest, evidenceOpts{chip: "BROKEN"})
		_, _ = v.Verify(ctx, &verifier.Request{TEE: TEE, Evidence: ev, ReportData: digest})
		if hits.Load() != before+1 {
			t.Error("a broken answer was cached")
		}
	})
	t.Run("forged evidence costs no request", func(t *testing.T) {
		before := hits.Load()
		ev := c.evidence(t, digest, evidenceOpts{chip: "NEVERSEEN", reportFix: func(d []byte) { d[0x40] ^= 1 }})
		_, err := v.Verify(ctx, &verifier.Request{TEE: TEE, Evidence: ev, ReportData: digest})
		if !errors.Is(err, sdk.ErrBadEvidence) || hits.Load() != before {
			t.Fatalf("err = %v, KDS hits %d; want bad evidence and no request", err, hits.Load()-before)
		}
	})
}

func TestVerifyErrors(t *testing.T) {
	c := newTestChain(t)
	other := newTestChain(t)
	v := configured(t, Config{HRKPath: c.hrkPath, Offline: true, CertDir: t.TempDir()})
	good := evidenceOpts{withHSKCEK: true}
	otherDigest := sha512.Sum384([]byte("other runtime data"))

	// A PEK signed by the right CEK, but with the wrong usage.
	wrongUsage := *c.pek
	wrongUsage.usage = usageCEK

	tests := map[string]struct {
		tee        string
		evidence   []byte
		reportData []byte
		want       error
		msg        string
	}{
		"other TEE":               {tee: "snp", evidence: c.evidence(t, digest, good), want: sdk.ErrUnsupported},
		"report_data mismatch":    {evidence: c.evidence(t, otherDigest[:], good), want: sdk.ErrBadEvidence, msg: "report_data"},
		"no expected report data": {evidence: c.evidence(t, digest, good), reportData: []byte{}, want: sdk.ErrInvalidArgument},
		"tampered report": {
			evidence: c.evidence(t, digest, evidenceOpts{withHSKCEK: true, reportFix: func(d []byte) { d[0x90] ^= 0x80 }}),
			want:     sdk.ErrBadEvidence, msg: "signature",
		},
		"tampered v2 rtmr": {
			evidence: c.evidence(t, digest, evidenceOpts{version: 2, withHSKCEK: true, reportFix: func(d []byte) { d[0x150] ^= 1 }}),
			want:     sdk.ErrBadEvidence, msg: "signature",
		},
		"unsigned part of the report may change": {
			evidence: c.evidence(t, digest, evidenceOpts{withHSKCEK: true, reportFix: func(d []byte) { d[0xF00] ^= 1 }}),
		},
		"PEK from another chain": {
			evidence: c.evidence(t, digest, evidenceOpts{withHSKCEK: true, pekCert: other.pekCert}),
			want:     sdk.ErrBadEvidence, msg: "signature",
		},
		"PEK with the wrong usage": {
			evidence: c.evidence(t, digest, evidenceOpts{withHSKCEK: true, pekCert: csvCertBytes(t, &wrongUsage, c.cek, nil)}),
			want:     sdk.ErrBadEvidence, msg: "usage",
		},
		"PEK signed by the HSK, not the CEK": {
			evidence: c.evidence(t, digest, evidenceOpts{withHSKCEK: true, pekCert: csvCertBytes(t, c.pek, c.hsk, nil)}),
			want:     sdk.ErrBadEvidence, msg: "PEK is not signed by the CEK",
		},
		"PEK signed only by the OCA": {
			evidence: c.evidence(t, digest, evidenceOpts{withHSKCEK: true, pekCert: csvCertBytes(t, c.pek, c.oca, nil)}),
			want:     sdk.ErrBadEvidence, msg: "PEK is not signed by the CEK",
		},
		"HSK/CEK of another root": {
			evidence: func() []byte {
				// Evidence from the other chain, verified against our root.
				return other.evidence(t, digest, good)
			}(),
			want: sdk.ErrBadEvidence, msg: "HSK is not signed by the HRK",
		},
		"no HSK/CEK anywhere": {evidence: c.evidence(t, digest, evidenceOpts{}), want: sdk.ErrUnavailable, msg: "offline"},
		"chip id with a path": {evidence: c.evidence(t, digest, evidenceOpts{chip: "../../etc"}), want: sdk.ErrBadEvidence, msg: "serial_number"},
		"unknown report magic": {
			evidence: mutate(t, c.evidence(t, digest, good), func(m map[string]any) {
				m["attestation_report"].(map[string]any)["magic"] = ints([]byte("SOMETHING ELSE!!"))
			}),
			want: sdk.ErrBadEvidence, msg: "format",
		},
		"short report": {
			evidence: mutate(t, c.evidence(t, digest, good), func(m map[string]any) {
				m["attestation_report"].(map[string]any)["data"] = ints(make([]byte, 100))
			}),
			want: sdk.ErrBadEvidence, msg: "bytes",
		},
		"report as base64": {
			evidence: mutate(t, c.evidence(t, digest, good), func(m map[string]any) {
				m["attestation_report"].(map[string]any)["data"] = "AAAA"
			}),
			want: sdk.ErrBadEvidence,
		},
		"byte out of range": {
			evidence: mutate(t, c.evidence(t, digest, good), func(m map[string]any) {
				m["serial_number"] = []int{300}
			}),
			want: sdk.ErrBadEvidence,
		},
		"no PEK":    {evidence: mutate(t, c.evidence(t, digest, good), func(m map[string]any) { delete(m["cert_chain"].(map[string]any), "pek") }), want: sdk.ErrBadEvidence, msg: "pek"},
		"no report": {evidence: mutate(t, c.evidence(t, digest, good), func(m map[string]any) { delete(m, "attestation_report") }), want: sdk.ErrBadEvidence},
		"one PEK sig slot": {
			evidence: mutate(t, c.evidence(t, digest, good), func(m map[string]any) {
				pek := m["cert_chain"].(map[string]any)["pek"].(map[string]any)
				pek["sigs"] = pek["sigs"].([]any)[:1]
			}),
			want: sdk.ErrBadEvidence, msg: "slots",
		},
		"not JSON": {evidence: []byte("csv"), want: sdk.ErrBadEvidence},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tee := tc.tee
			if tee == "" {
				tee = TEE
			}
			rd := digest
			if tc.reportData != nil {
				rd = tc.reportData
			}
			_, err := v.Verify(context.Background(), &verifier.Request{TEE: tee, Evidence: tc.evidence, ReportData: rd})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v (class %q), want class %q", err, sdk.ClassOf(err), sdk.ClassOf(tc.want))
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q, want it to mention %q", err, tc.msg)
			}
		})
	}
}

func mutate(t testing.TB, ev []byte, f func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ev, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConfigure(t *testing.T) {
	c := newTestChain(t)
	notSelfSigned := filepath.Join(t.TempDir(), "hsk.cert")
	if err := os.WriteFile(notSelfSigned, c.hskCert, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		config  string
		wantErr string
	}{
		"none":                 {config: ""},
		"empty object":         {config: "{}"},
		"all settings":         {config: `{"cert_dir":"/tmp","kds_url":"https://kds.example/hsk_cek","offline":false,"fetch_timeout":"3s","hrk_path":"` + c.hrkPath + `"}`},
		"offline ignores URL":  {config: `{"offline":true,"kds_url":"::"}`},
		"unknown key":          {config: `{"hrk":"x"}`, wantErr: "hrk"},
		"bad timeout":          {config: `{"fetch_timeout":"soon"}`, wantErr: "fetch_timeout"},
		"negative timeout":     {config: `{"fetch_timeout":"-1s"}`, wantErr: "fetch_timeout"},
		"bad KDS URL":          {config: `{"kds_url":"file:///etc/passwd"}`, wantErr: "kds_url"},
		"missing root":         {config: `{"hrk_path":"/no/such/file"}`, wantErr: "hrk_path"},
		"root not self-signed": {config: `{"hrk_path":"` + notSelfSigned + `"}`, wantErr: "self-signed"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := (&Verifier{}).Configure(context.Background(), []byte(tc.config))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Configure(%s): %v", tc.config, err)
				}
				return
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Configure(%s) = %v, want invalid_argument mentioning %q", tc.config, err, tc.wantErr)
			}
		})
	}
}

func TestVerifyCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := New().Verify(ctx, &verifier.Request{TEE: TEE, Evidence: []byte(`{}`), ReportData: digest})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
