package dcap_test

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/plugins/lib/dcap/dcaptest"
	"github.com/gokbs/kbs/sdk"
)

// fakePCS serves a platform's collateral the way Intel's PCS and a PCCS
// do: issuer chains URL-encoded in headers, the root CRL as hex (PCCS).
type fakePCS struct {
	mu   sync.Mutex
	hits []string
	down bool
	tdx  *dcap.Collateral
	sgx  *dcap.Collateral
}

func newFakePCS(t *testing.T, p *dcaptest.Platform, o dcaptest.CollateralOptions) (*fakePCS, *httptest.Server) {
	f := &fakePCS{tdx: p.Collateral(true, o), sgx: p.Collateral(false, o)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakePCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.hits = append(f.hits, r.URL.RequestURI())
	down := f.down
	f.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	chain := url.QueryEscape(string(f.tdx.SigningChain))
	q := r.URL.Query()
	switch r.URL.Path {
	case "/tdx/certification/v4/tcb", "/sgx/certification/v4/tcb":
		if q.Get("fmspc") != "00906ED50000" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("TCB-Info-Issuer-Chain", chain)
		if strings.HasPrefix(r.URL.Path, "/tdx") {
			w.Write(f.tdx.TCBInfo)
		} else {
			w.Write(f.sgx.TCBInfo)
		}
	case "/tdx/certification/v4/qe/identity", "/sgx/certification/v4/qe/identity":
		w.Header().Set("SGX-Enclave-Identity-Issuer-Chain", chain)
		if strings.HasPrefix(r.URL.Path, "/tdx") {
			w.Write(f.tdx.QEIdentity)
		} else {
			w.Write(f.sgx.QEIdentity)
		}
	case "/sgx/certification/v4/pckcrl":
		if q.Get("ca") != "platform" || q.Get("encoding") != "der" {
			http.NotFound(w, r)
			return
		}
		w.Write(f.tdx.PCKCRL)
	case "/sgx/certification/v4/rootcacrl":
		w.Write([]byte(hex.EncodeToString(f.tdx.RootCRL)))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakePCS) takeHits() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.hits
	f.hits = nil
	return h
}

func storeVerifier(s *dcap.Store, now *time.Time) *dcap.Verifier {
	return dcap.New(dcap.Options{Roots: []*x509.Certificate{platform.Root}, CheckRevocations: true, Collateral: s,
		Now: func() time.Time { return *now }})
}

func TestStoreFetchesAndCaches(t *testing.T) {
	pcs, srv := newFakePCS(t, platform, dcaptest.CollateralOptions{})
	cache := t.TempDir()
	now := testNow
	s := &dcap.Store{URL: srv.URL + "/sgx/certification/v4/", Dir: cache, WriteDir: true, Update: "early",
		Client: srv.Client(), Now: func() time.Time { return now }}
	v := storeVerifier(s, &now)
	tdq := platform.TDXQuote(dcaptest.TDXOptions{})
	ctx := context.Background()

	if _, err := v.Verify(ctx, tdq); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/tdx/certification/v4/tcb?fmspc=00906ED50000&update=early",
		"/tdx/certification/v4/qe/identity?update=early",
		"/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
		"/sgx/certification/v4/rootcacrl",
	}
	if got := pcs.takeHits(); !slices.Equal(got, want) {
		t.Errorf("PCS requests = %q, want %q", got, want)
	}
	if _, err := v.Verify(ctx, platform.SGXQuote(dcaptest.SGXOptions{})); err != nil {
		t.Fatal(err)
	}
	if got := pcs.takeHits(); len(got) != 2 || !strings.HasPrefix(got[0], "/sgx/certification/v4/tcb") {
		t.Errorf("SGX quote: PCS requests = %q, want the SGX TCB info and QE identity only", got)
	}

	t.Run("memory while fresh", func(t *testing.T) {
		now = testNow.Add(time.Hour)
		if _, err := v.Verify(ctx, tdq); err != nil {
			t.Fatal(err)
		}
		if got := pcs.takeHits(); len(got) != 0 {
			t.Errorf("PCS requests = %q, want none", got)
		}
	})
	t.Run("cache directory", func(t *testing.T) {
		for _, name := range []string{dcap.TCBInfoFile(true, "00906ED50000"), dcap.TCBInfoFile(true, "00906ED50000") + ".chain.pem",
			dcap.QEIdentityFile(false), dcap.PCKCRLFile("platform"), dcap.RootCRLFile} {
			if _, err := os.Stat(filepath.Join(cache, name)); err != nil {
				t.Errorf("cache: %v", err)
			}
		}
		// A new store, offline, on the cache directory alone.
		now = testNow
		off := storeVerifier(&dcap.Store{Dir: cache, Now: func() time.Time { return now }}, &now)
		srv.Close()
		if _, err := off.Verify(ctx, tdq); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStoreBackoffAndRefresh(t *testing.T) {
	pcs, srv := newFakePCS(t, platform, dcaptest.CollateralOptions{})
	now := testNow
	s := &dcap.Store{URL: srv.URL, Client: srv.Client(), Now: func() time.Time { return now }}
	v := storeVerifier(s, &now)
	tdq := platform.TDXQuote(dcaptest.TDXOptions{})
	ctx := context.Background()
	if _, err := v.Verify(ctx, tdq); err != nil {
		t.Fatal(err)
	}
	pcs.takeHits()

	pcs.mu.Lock()
	pcs.down = true
	pcs.mu.Unlock()
	now = testNow.Add(25 * time.Hour)
	if _, err := v.Verify(ctx, tdq); err != nil {
		t.Fatalf("stale collateral must serve while the PCS is down: %v", err)
	}
	if n := len(pcs.takeHits()); n != 4 {
		t.Errorf("%d requests to the failing PCS, want one per item (4)", n)
	}
	now = now.Add(10 * time.Second)
	if _, err := v.Verify(ctx, tdq); err != nil {
		t.Fatal(err)
	}
	if got := pcs.takeHits(); len(got) != 0 {
		t.Errorf("requests %q within the back-off, want none", got)
	}
	// Past nextUpdate with the PCS still down: the stale collateral is
	// served and the Verifier refuses it.
	now = testNow.Add(31 * 24 * time.Hour)
	_, err := v.Verify(ctx, tdq)
	wantClass(t, err, sdk.ClassUnavailable)
	if !strings.Contains(err.Error(), "expired") {
		t.Errorf("error = %v, want expired collateral", err)
	}
	pcs.takeHits()
	// The PCS is back with fresh collateral.
	fresh := dcaptest.CollateralOptions{IssueDate: now.Add(-time.Hour), NextUpdate: now.Add(30 * 24 * time.Hour)}
	p2 := *platform
	p2.Now = now
	pcs.mu.Lock()
	pcs.down = false
	pcs.tdx = p2.Collateral(true, fresh)
	pcs.mu.Unlock()
	now = now.Add(2 * time.Minute)
	res, err := v.Verify(ctx, tdq)
	if err != nil {
		t.Fatalf("after the PCS recovered: %v", err)
	}
	if res.TCB.CollateralExpired || len(pcs.takeHits()) != 4 {
		t.Errorf("after the PCS recovered: expired %v", res.TCB.CollateralExpired)
	}
}

func TestStoreErrors(t *testing.T) {
	_, srv := newFakePCS(t, platform, dcaptest.CollateralOptions{})
	ctx := context.Background()
	req := dcap.Request{TDX: true, FMSPC: "00906ED50000", CA: "platform", CRLs: true}
	tests := map[string]struct {
		store *dcap.Store
		req   dcap.Request
	}{
		"unknown FMSPC": {&dcap.Store{URL: srv.URL, Client: srv.Client()}, dcap.Request{TDX: true, FMSPC: "AABBCCDDEEFF", CA: "platform"}},

		"no URL, no directory":   {&dcap.Store{}, req},
		"empty directory":        {&dcap.Store{Dir: t.TempDir()}, req},
		"unreachable, no cache":  {&dcap.Store{URL: "http://127.0.0.1:1", Client: &http.Client{Timeout: time.Second}}, req},
		"directory is not a dir": {&dcap.Store{Dir: "/dev/null"}, req},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := tc.store.Collateral(ctx, tc.req)
			wantClass(t, err, sdk.ClassUnavailable)
		})
	}
	for name, req := range map[string]dcap.Request{
		"unknown CA":         {TDX: true, FMSPC: "00906ED50000", CA: "other", CRLs: true},
		"FMSPC with a slash": {TDX: true, FMSPC: "../../etc/x", CA: "platform"},
		"FMSPC of 7 bytes":   {TDX: true, FMSPC: "00906ED5000000", CA: "platform"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := (&dcap.Store{Dir: t.TempDir()}).Collateral(ctx, req)
			wantClass(t, err, sdk.ClassInvalidArgument)
		})
	}
}

// TestStoreDirectory: an operator's collateral directory is re-read when a
// file changes, and a TCB info without a chain file uses the shared
// tcb-signing-chain.pem.
func TestStoreDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := platform.WriteCollateralDir(dir, dcaptest.CollateralOptions{}); err != nil {
		t.Fatal(err)
	}
	now := testNow
	v := storeVerifier(&dcap.Store{Dir: dir}, &now)
	tdq := platform.TDXQuote(dcaptest.TDXOptions{})
	res, err := v.Verify(context.Background(), tdq)
	if err != nil {
		t.Fatal(err)
	}
	if res.TCB.Status != "UpToDate" {
		t.Fatalf("status %s", res.TCB.Status)
	}
	out := platform.Collateral(true, dcaptest.CollateralOptions{Status: "OutOfDate"})
	name := filepath.Join(dir, dcap.TCBInfoFile(true, "00906ED50000"))
	if err := os.WriteFile(name, out.TCBInfo, 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(name, later, later); err != nil {
		t.Fatal(err)
	}
	res, err = v.Verify(context.Background(), tdq)
	if err != nil {
		t.Fatal(err)
	}
	if res.TCB.Status != "OutOfDate" {
		t.Errorf("after replacing the TCB info: status %s, want OutOfDate", res.TCB.Status)
	}
}
