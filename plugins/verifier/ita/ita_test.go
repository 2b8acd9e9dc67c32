package ita

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/verifier"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var (
	digest   = func() []byte { d := sha512.Sum384([]byte("runtime data")); return d[:] }()
	initData = func() []byte { d := sha512.Sum384([]byte("[data]\n")); return d[:] }()
)

func configured(t testing.TB, config []byte) *Verifier {
	t.Helper()
	v := New()
	if err := v.Configure(context.Background(), config); err != nil {
		t.Fatalf("Configure(%s): %v", config, err)
	}
	return v
}

// stable drops the token claims that change with every run.
func stable(c verifier.Claims) verifier.Claims {
	out := verifier.Claims{}
	for k, v := range c {
		out[k] = v
	}
	if raw, ok := c["ita"].(map[string]any); ok {
		ita := map[string]any{}
		for k, v := range raw {
			switch k {
			case "iat", "nbf", "exp":
			default:
				ita[k] = v
			}
		}
		out["ita"] = ita
	}
	return out
}

func checkGolden(t *testing.T, name string, claims verifier.Claims) {
	t.Helper()
	plugintest.GoldenJSON(t, filepath.Join("testdata", name+".golden.json"), stable(claims), *update)
}

func TestAppraisalSuccess(t *testing.T) {
	ita := newFakeITA(t)
	v := configured(t, ita.settingsFor(t, nil))
	ctx := context.Background()
	tests := map[string]struct {
		tee      string
		quote    []byte
		v2       bool
		initData []byte
	}{
		"tdx":              {tee: TEETDX, quote: tdxQuote(fit(digest, 64), fit(initData, 48), true), initData: initData},
		"tdx v2 token":     {tee: TEETDX, quote: tdxQuote(fit(digest, 64), nil, true), v2: true},
		"sgx":              {tee: TEESGX, quote: sgxQuote(fit(digest, 64), fit(initData, 64), true), initData: initData},
		"sgx no init-data": {tee: TEESGX, quote: sgxQuote(fit(digest, 64), nil, true)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ita.set(func(f *fakeITA) { f.v2 = tc.v2 })
			ev := quoteEvidence(tc.quote)
			claims, err := v.Verify(ctx, &verifier.Request{TEE: tc.tee, Evidence: ev, ReportData: digest, HashAlgorithm: "sha384", InitDataDigest: tc.initData})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			checkGolden(t, strings.ReplaceAll(name, " ", "-"), claims)
			// What went out: the quote as the guest sent it, the API key,
			// and no runtime data (the quote carries its digest).
			ita.mu.Lock()
			body := ita.lastBody
			ita.mu.Unlock()
			var sent struct{ Quote string }
			_ = json.Unmarshal(ev, &sent)
			if body["quote"] != sent.Quote {
				t.Error("the quote sent is not the guest's")
			}
			if _, ok := body["runtime_data"]; ok {
				t.Error("runtime_data was sent")
			}
		})
	}
}

// The real TDX quote goes through the fake Trust Authority, and the mapped
// claims equal trustee's own parse of that quote.
func TestRealQuoteClaims(t *testing.T) {
	q := plugintest.EvidenceFile(t, "tdx/tdx_quote_4.dat")
	var want map[string]any
	if err := json.Unmarshal(plugintest.EvidenceFile(t, "tdx/parse_tdx_claims_expected.json"), &want); err != nil {
		t.Fatal(err)
	}
	ita := newFakeITA(t)
	v := configured(t, ita.settingsFor(t, nil))
	signed := append(append([]byte(nil), q...), quoteMarker...)
	rd, _ := hex.DecodeString(want["report_data"].(string))
	claims, err := v.Verify(context.Background(), &verifier.Request{TEE: TEETDX, Evidence: quoteEvidence(signed), ReportData: rd, HashAlgorithm: "sha512"})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	got, _ := json.Marshal(claims)
	var gotm map[string]any
	_ = json.Unmarshal(got, &gotm)
	wantBody := want["quote"].(map[string]any)["body"].(map[string]any)
	gotBody := gotm["quote"].(map[string]any)["body"].(map[string]any)
	for k, w := range wantBody {
		if gotBody[k] != w {
			t.Errorf("quote.body.%s = %v, want %v", k, gotBody[k], w)
		}
	}
	for _, k := range []string{"report_data", "init_data"} {
		if gotm[k] != want[k] {
			t.Errorf("%s = %v, want %v", k, gotm[k], want[k])
		}
	}
	wantAttrs, _ := json.Marshal(want["td_attributes"])
	gotAttrs, _ := json.Marshal(gotm["td_attributes"])
	if !bytes.Equal(wantAttrs, gotAttrs) {
		t.Errorf("td_attributes = %s, want %s", gotAttrs, wantAttrs)
	}
}

func TestAppraisalFailures(t *testing.T) {
	_, other := testKeys(t)
	good := quoteEvidence(tdxQuote(fit(digest, 64), nil, true))
	otherDigest := sha512.Sum384([]byte("other"))
	tests := map[string]struct {
		server   func(f *fakeITA)
		settings map[string]any
		evidence []byte
		tee      string
		initData []byte
		want     error
		msg      string
	}{
		"appraisal failure": {
			evidence: quoteEvidence(tdxQuote(fit(digest, 64), nil, false)),
			want:     sdk.ErrBadEvidence, msg: "Quote verification failed",
		},
		"bad signature": {
			server: func(f *fakeITA) { f.signWith = other },
			want:   sdk.ErrUnavailable, msg: "does not verify",
		},
		"timeout": {
			server:   func(f *fakeITA) { f.delay = 3 * time.Second },
			settings: map[string]any{"timeout": "200ms"},
			want:     sdk.ErrUnavailable, msg: "appraisal request",
		},
		"wrong API key": {
			server: func(f *fakeITA) { f.apiKey = "rotated" },
			want:   sdk.ErrUnavailable, msg: "401",
		},
		"service down": {
			server: func(f *fakeITA) { f.status = http.StatusServiceUnavailable },
			want:   sdk.ErrUnavailable, msg: "service unavailable",
		},
		"expired token": {
			server: func(f *fakeITA) { f.expiresIn = -10 * time.Minute },
			want:   sdk.ErrUnavailable, msg: "not valid now",
		},
		"unexpected algorithm": {
			server: func(f *fakeITA) { f.alg = jose.PS512 },
			want:   sdk.ErrUnavailable, msg: "does not parse",
		},
		"quote bound to another digest": {
			evidence: quoteEvidence(tdxQuote(fit(otherDigest[:], 64), nil, true)),
			want:     sdk.ErrBadEvidence, msg: "report data",
		},
		"init-data mismatch": {
			evidence: quoteEvidence(tdxQuote(fit(digest, 64), fit(digest, 48), true)),
			initData: initData, want: sdk.ErrBadEvidence, msg: "mrconfigid",
		},
		"token for another TEE": {
			server: func(f *fakeITA) {
				f.mutate = func(_, tee map[string]any) { tee["attester_type"] = "SGX" }
			},
			want: sdk.ErrBadEvidence, msg: "attests",
		},
		"token without report data": {
			server: func(f *fakeITA) {
				f.mutate = func(_, tee map[string]any) { delete(tee, "tdx_report_data") }
			},
			want: sdk.ErrBadEvidence, msg: "tdx_report_data",
		},
		"unmatched policy": {
			settings: map[string]any{"policy_ids": []string{"5f8c6f2a-0000-4000-8000-000000000001"}, "allow_unmatched_policy": true},
			server: func(f *fakeITA) {
				// The service returns a token although a policy failed,
				// and our check is what refuses it.
				f.mutate = func(c, _ map[string]any) { c["policy_ids_unmatched"] = []string{"x"} }
			},
		},
		"policy must match": {
			settings: map[string]any{"policy_ids": []string{"5f8c6f2a-0000-4000-8000-000000000001"}},
			want:     sdk.ErrBadEvidence, msg: "Policy must match",
		},
		"sgx quote for tdx": {
			evidence: quoteEvidence(sgxQuote(fit(digest, 64), nil, true)),
			want:     sdk.ErrBadEvidence, msg: "not a tdx quote",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ita := newFakeITA(t)
			v := configured(t, ita.settingsFor(t, tc.settings))
			if tc.server != nil {
				ita.set(tc.server)
			}
			ev := good
			if tc.evidence != nil {
				ev = tc.evidence
			}
			tee := TEETDX
			if tc.tee != "" {
				tee = tc.tee
			}
			start := time.Now()
			claims, err := v.Verify(context.Background(), &verifier.Request{TEE: tee, Evidence: ev, ReportData: digest, InitDataDigest: tc.initData})
			if time.Since(start) > 2*time.Second {
				t.Errorf("Verify took %v", time.Since(start))
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if claims != nil || !errors.Is(err, tc.want) {
				t.Fatalf("claims %v, err = %v (class %q), want class %q", claims != nil, err, sdk.ClassOf(err), sdk.ClassOf(tc.want))
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q, want it to mention %q", err, tc.msg)
			}
			if strings.Contains(err.Error(), ita.apiKey) {
				t.Error("the error shows the API key")
			}
		})
	}
	t.Run("unmatched policy refused by default", func(t *testing.T) {
		ita := newFakeITA(t)
		v := configured(t, ita.settingsFor(t, nil))
		ita.set(func(f *fakeITA) { f.mutate = func(c, _ map[string]any) { c["policy_ids_unmatched"] = []string{"x"} } })
		_, err := v.Verify(context.Background(), &verifier.Request{TEE: TEETDX, Evidence: good, ReportData: digest})
		if !errors.Is(err, sdk.ErrBadEvidence) || !strings.Contains(err.Error(), "policies") {
			t.Fatalf("err = %v, want bad evidence about policies", err)
		}
	})
}

// Garbage is refused before anything is sent.
func TestBadEvidenceCostsNoCall(t *testing.T) {
	ita := newFakeITA(t)
	v := configured(t, ita.settingsFor(t, nil))
	for name, ev := range map[string]string{
		"no quote":       `{"cc_eventlog":null}`,
		"not base64":     `{"quote":"!!"}`,
		"url base64":     `{"quote":"` + base64.RawURLEncoding.EncodeToString(tdxQuote(fit(digest, 64), nil, true)) + `_"}`,
		"short":          `{"quote":"AAAA"}`,
		"zeros":          `{"quote":"` + base64.StdEncoding.EncodeToString(make([]byte, 700)) + `"}`,
		"quote a number": `{"quote":7}`,
		"not JSON":       `quote`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), &verifier.Request{TEE: TEETDX, Evidence: []byte(ev), ReportData: digest})
			if !errors.Is(err, sdk.ErrBadEvidence) {
				t.Fatalf("err = %v, want bad evidence", err)
			}
		})
	}
	if n := ita.attests.Load(); n != 0 {
		t.Errorf("%d appraisal calls for garbage", n)
	}
	for _, tc := range []struct {
		name string
		req  verifier.Request
		want error
	}{
		{"other TEE", verifier.Request{TEE: "snp", Evidence: []byte(`{}`), ReportData: digest}, sdk.ErrUnsupported},
		{"no report data", verifier.Request{TEE: TEETDX, Evidence: []byte(`{}`)}, sdk.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := v.Verify(context.Background(), &tc.req); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("not configured", func(t *testing.T) {
		_, err := New().Verify(context.Background(), &verifier.Request{TEE: TEETDX, Evidence: quoteEvidence(tdxQuote(nil, nil, true)), ReportData: digest})
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("err = %v, want unavailable", err)
		}
	})
}

func TestSigningKeys(t *testing.T) {
	_, other := testKeys(t)
	ev := quoteEvidence(tdxQuote(fit(digest, 64), nil, true))
	req := &verifier.Request{TEE: TEETDX, Evidence: ev, ReportData: digest}
	ctx := context.Background()

	t.Run("fetched once, then cached", func(t *testing.T) {
		ita := newFakeITA(t)
		v := configured(t, ita.settingsFor(t, nil))
		for range 3 {
			if _, err := v.Verify(ctx, req); err != nil {
				t.Fatal(err)
			}
		}
		if n := ita.jwksHits.Load(); n != 1 {
			t.Errorf("JWKS fetched %d times, want 1", n)
		}
	})
	t.Run("a new kid is fetched again, but not too often", func(t *testing.T) {
		ita := newFakeITA(t)
		v := configured(t, ita.settingsFor(t, nil))
		if _, err := v.Verify(ctx, req); err != nil {
			t.Fatal(err)
		}
		ita.set(func(f *fakeITA) { f.key, f.kid = other, "kid-2" })
		// Within the minimum interval the old set is kept.
		if _, err := v.Verify(ctx, req); !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "kid-2") {
			t.Fatalf("err = %v, want unavailable naming kid-2", err)
		}
		s := v.s.Load()
		s.keys.mu.Lock()
		s.keys.fetched = time.Now().Add(-time.Minute)
		s.keys.mu.Unlock()
		if _, err := v.Verify(ctx, req); err != nil {
			t.Fatalf("after the interval: %v", err)
		}
		if n := ita.jwksHits.Load(); n != 2 {
			t.Errorf("JWKS fetched %d times, want 2", n)
		}
	})
	t.Run("pinned JWKS file", func(t *testing.T) {
		ita := newFakeITA(t)
		set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &ita.key.PublicKey, KeyID: ita.kid}}})
		file := filepath.Join(t.TempDir(), "certs.json")
		if err := os.WriteFile(file, set, 0o600); err != nil {
			t.Fatal(err)
		}
		v := configured(t, ita.settingsFor(t, map[string]any{"jwks_file": file, "jwks_url": "https://unused.example/certs"}))
		if _, err := v.Verify(ctx, req); err != nil {
			t.Fatal(err)
		}
		if n := ita.jwksHits.Load(); n != 0 {
			t.Errorf("JWKS fetched %d times with a pinned file", n)
		}
	})
	t.Run("issuer", func(t *testing.T) {
		ita := newFakeITA(t)
		for iss, wantErr := range map[string]bool{"Intel Trust Authority": false, "Someone Else": true} {
			v := configured(t, ita.settingsFor(t, map[string]any{"issuer": iss}))
			_, err := v.Verify(ctx, req)
			if (err != nil) != wantErr {
				t.Errorf("issuer %q: err = %v", iss, err)
			}
		}
	})
}

func TestConfigure(t *testing.T) {
	ita := newFakeITA(t)
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badJWKS := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(badJWKS, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"x"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		over    map[string]any
		raw     string
		wantErr string
	}{
		"good":             {},
		"defaults":         {over: map[string]any{"base_url": nil, "jwks_url": nil, "timeout": nil}},
		"no API key":       {over: map[string]any{"api_key_file": nil}, wantErr: "api_key_file"},
		"missing API key":  {over: map[string]any{"api_key_file": "/no/such/key"}, wantErr: "api_key_file"},
		"empty API key":    {over: map[string]any{"api_key_file": empty}, wantErr: "API key"},
		"bad base URL":     {over: map[string]any{"base_url": "ftp://x"}, wantErr: "base_url"},
		"bad timeout":      {over: map[string]any{"timeout": "0s"}, wantErr: "timeout"},
		"symmetric JWKS":   {over: map[string]any{"jwks_file": badJWKS}, wantErr: "jwks_file"},
		"unknown key":      {raw: `{"api_key":"inline"}`, wantErr: "api_key"},
		"policy not array": {raw: `{"policy_ids":"x"}`, wantErr: "policy_ids"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			raw := []byte(tc.raw)
			if tc.raw == "" {
				raw = ita.settingsFor(t, tc.over)
			}
			err := New().Configure(context.Background(), raw)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Configure(%s): %v", raw, err)
				}
				return
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Configure(%s) = %v, want invalid_argument mentioning %q", raw, err, tc.wantErr)
			}
			if strings.Contains(err.Error(), ita.apiKey) {
				t.Error("the error shows the API key")
			}
		})
	}
}
