package snp_test

import (
	"context"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokbs/kbs/plugins/lib/snp"
	"github.com/gokbs/kbs/plugins/lib/snp/snptest"
	"github.com/gokbs/kbs/sdk"
)

// fakeKDS serves files: the VCEK DER at the one URL KDS would use for it.
type fakeKDS struct {
	*httptest.Server
	hits   atomic.Int32
	status atomic.Int32 // answer this status instead, when not 0
	delay  time.Duration
	files  map[string][]byte // request URI -> body
}

func newFakeKDS(t *testing.T, files map[string][]byte) *fakeKDS {
	k := &fakeKDS{files: files}
	k.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.hits.Add(1)
		if k.delay > 0 {
			select {
			case <-time.After(k.delay):
			case <-r.Context().Done():
				return
			}
		}
		if s := k.status.Load(); s != 0 {
			w.WriteHeader(int(s))
			return
		}
		b, ok := k.files[r.URL.RequestURI()]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(b)
	}))
	t.Cleanup(k.Close)
	return k
}

// vcekPath is the KDS request for the signer's VCEK at its TCB, written
// out by hand from AMD's KDS specification.
func vcekPath(s *snptest.Signer) string {
	if s.Generation == "Turin" {
		return "/vcek/v1/Turin/" + hex.EncodeToString(s.ChipID[:8]) + "?fmcSPL=01&blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
	}
	return "/vcek/v1/" + s.Generation + "/" + hex.EncodeToString(s.ChipID[:]) + "?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
}

// noChainEvidence is what a guest sends when the host attaches no
// certificates: cert_chain null.
func noChainEvidence(t *testing.T, s *snptest.Signer, rep snptest.Report) []byte {
	t.Helper()
	if rep.ReportData == nil {
		rep.ReportData = runtimeDigest
	}
	raw, err := s.RawReport(rep)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := snp.EncodeEvidence(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestKDS(t *testing.T) {
	for _, gen := range []string{"Milan", "Genoa", "Turin"} {
		t.Run(gen, func(t *testing.T) {
			s := signer(t, gen)
			kds := newFakeKDS(t, map[string][]byte{vcekPath(s): s.VCEK()})
			cache := t.TempDir()
			v := newFakeVerifier(t, s, snp.Options{KDSBaseURL: kds.URL + "/", CacheDir: cache}, false)
			ev := noChainEvidence(t, s, snptest.Report{Version: 5})
			for range 3 {
				if _, err := v.VerifyEvidence(context.Background(), ev, snp.Expected{ReportData: runtimeDigest}); err != nil {
					t.Fatal(err)
				}
			}
			if n := kds.hits.Load(); n != 1 {
				t.Errorf("KDS hit %d times, want 1 (memory cache)", n)
			}
			// The disk cache uses the offline-store layout...
			name := "bl03_tee00_snp08_ucode115_vcek.der"
			hwid := hex.EncodeToString(s.ChipID[:])
			if gen == "Turin" {
				name = "bl03_tee00_snp08_ucode115_fmc01_vcek.der"
				hwid = hex.EncodeToString(s.ChipID[:8])
			}
			if _, err := os.Stat(filepath.Join(cache, "vcek", hwid, name)); err != nil {
				t.Errorf("disk cache: %v", err)
			}
			// ...and serves a new verifier with KDS gone.
			kds.Close()
			v2 := newFakeVerifier(t, s, snp.Options{KDSBaseURL: kds.URL, CacheDir: cache}, false)
			if _, err := v2.VerifyEvidence(context.Background(), ev, snp.Expected{ReportData: runtimeDigest}); err != nil {
				t.Fatalf("from the disk cache: %v", err)
			}
			// So does the cache directory used as an offline store.
			v3 := newFakeVerifier(t, s, snp.Options{VCEKDir: cache}, false)
			if _, err := v3.VerifyEvidence(context.Background(), ev, snp.Expected{ReportData: runtimeDigest}); err != nil {
				t.Fatalf("cache as offline store: %v", err)
			}
		})
	}
}

func TestKDSFailures(t *testing.T) {
	s := signer(t, "Milan")
	ev := noChainEvidence(t, s, snptest.Report{})
	otherTCB := snptest.DefaultTCB
	otherTCB.Microcode = 200
	var masked [64]byte
	tests := []struct {
		name     string
		status   int
		delay    time.Duration
		timeout  time.Duration
		evidence []byte
		closed   bool
		disabled bool
		body     []byte // served at the right URL instead of the VCEK
		class    sdk.Class
		msg      string
	}{
		{name: "not found", status: http.StatusNotFound, class: sdk.ClassBadEvidence, msg: "no VCEK for this chip"},
		{name: "unknown TCB", evidence: noChainEvidence(t, s, snptest.Report{ReportedTCB: &otherTCB}), class: sdk.ClassBadEvidence, msg: "404"},
		{name: "rate limited", status: http.StatusTooManyRequests, class: sdk.ClassUnavailable, msg: "429"},
		{name: "server error", status: http.StatusBadGateway, class: sdk.ClassUnavailable, msg: "502"},
		{name: "timeout", delay: 2 * time.Second, timeout: 50 * time.Millisecond, class: sdk.ClassUnavailable, msg: "KDS"},
		{name: "unreachable", closed: true, class: sdk.ClassUnavailable, msg: "KDS"},
		{name: "disabled", disabled: true, class: sdk.ClassUnavailable, msg: "disabled"},
		{name: "not a certificate", body: []byte("<html>"), class: sdk.ClassUnavailable, msg: "not a certificate"},
		{name: "masked CHIP_ID", evidence: noChainEvidence(t, s, snptest.Report{ChipID: &masked}), class: sdk.ClassBadEvidence, msg: "masked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := s.VCEK()
			if tc.body != nil {
				body = tc.body
			}
			kds := newFakeKDS(t, map[string][]byte{vcekPath(s): body})
			kds.status.Store(int32(tc.status))
			kds.delay = tc.delay
			if tc.closed {
				kds.Close()
			}
			v := newFakeVerifier(t, s, snp.Options{KDSBaseURL: kds.URL, KDSTimeout: tc.timeout, KDSDisabled: tc.disabled}, false)
			e := ev
			if tc.evidence != nil {
				e = tc.evidence
			}
			_, err := v.VerifyEvidence(context.Background(), e, snp.Expected{ReportData: runtimeDigest})
			wantErr(t, err, tc.class, tc.msg)
		})
	}
}

// TestKDSSingleFetch: concurrent verifications of one chip share one KDS
// request (AMD rate-limits the KDS).
func TestKDSSingleFetch(t *testing.T) {
	s := signer(t, "Genoa")
	kds := newFakeKDS(t, map[string][]byte{vcekPath(s): s.VCEK()})
	kds.delay = 100 * time.Millisecond
	v := newFakeVerifier(t, s, snp.Options{KDSBaseURL: kds.URL}, false)
	ev := noChainEvidence(t, s, snptest.Report{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := v.VerifyEvidence(context.Background(), ev, snp.Expected{ReportData: runtimeDigest})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := kds.hits.Load(); n != 1 {
		t.Errorf("KDS hit %d times, want 1", n)
	}
}

// TestSourceOrder: the evidence's VCEK wins over the offline store, which
// wins over KDS.
func TestSourceOrder(t *testing.T) {
	s := signer(t, "Milan")
	kds := newFakeKDS(t, map[string][]byte{vcekPath(s): s.VCEK()})
	store := t.TempDir()
	p := filepath.Join(store, "vcek", hex.EncodeToString(s.ChipID[:]), "vcek.der")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := newFakeVerifier(t, s, snp.Options{KDSBaseURL: kds.URL, VCEKDir: store}, false)
	withChain, err := s.EvidenceFor(runtimeDigest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyEvidence(context.Background(), withChain, snp.Expected{ReportData: runtimeDigest}); err != nil {
		t.Fatalf("evidence chain: %v", err)
	}
	// Without a chain the (broken) store entry is used, not KDS.
	_, err = v.VerifyEvidence(context.Background(), noChainEvidence(t, s, snptest.Report{}), snp.Expected{ReportData: runtimeDigest})
	wantErr(t, err, sdk.ClassBadEvidence, "VCEK certificate")
	if n := kds.hits.Load(); n != 0 {
		t.Errorf("KDS hit %d times, want 0", n)
	}
}
