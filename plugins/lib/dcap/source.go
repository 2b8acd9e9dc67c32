package dcap

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gokbs/kbs/sdk"
)

// Source provides collateral for a quote.
type Source interface {
	Collateral(ctx context.Context, req Request) (*Collateral, error)
}

// DefaultPCSURL is Intel's PCS. Any PCCS works the same way: only the
// scheme, host and port of the URL are used, the API paths are Intel's
// (/sgx/certification/v4/..., /tdx/certification/v4/...).
const DefaultPCSURL = "https://api.trustedservices.intel.com/sgx/certification/v4/"

// intelRootCRLURL is where Intel's PCS publishes the root CA CRL (the CRL
// distribution point of the root certificate); a PCCS serves it at
// /sgx/certification/v4/rootcacrl.
const intelRootCRLURL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"

// refreshAfter is how long fetched collateral is used before asking the
// PCS again, even if it has not expired: Intel publishes TCB recoveries
// before the nextUpdate of the collateral they replace.
const refreshAfter = 24 * time.Hour

// maxResponse bounds a PCS response; real ones are a few KiB (a PCK CRL of
// a large CA is some 100 KiB).
const maxResponse = 4 << 20

// File names of collateral in a collateral directory, which is also the
// layout of the on-disk cache:
//
//	tcbinfo-{sgx,tdx}-<FMSPC>.json    TCB info response body
//	qeidentity-{sgx,tdx}.json         QE identity response body
//	tcb-signing-chain.pem             Intel SGX TCB Signing certificate(s)
//	pckcrl-{platform,processor}.der   PCK CRLs (DER, PEM or hex)
//	rootcacrl.der                     Intel SGX Root CA CRL
const (
	SigningChainFile = "tcb-signing-chain.pem"
	RootCRLFile      = "rootcacrl.der"
)

// TCBInfoFile names the TCB info of an FMSPC in a collateral directory.
func TCBInfoFile(tdx bool, fmspc string) string {
	return "tcbinfo-" + Request{TDX: tdx}.tee() + "-" + strings.ToUpper(fmspc) + ".json"
}

// QEIdentityFile names the QE identity in a collateral directory.
func QEIdentityFile(tdx bool) string { return "qeidentity-" + Request{TDX: tdx}.tee() + ".json" }

// PCKCRLFile names the CRL of a PCK CA ("platform" or "processor").
func PCKCRLFile(ca string) string { return "pckcrl-" + ca + ".der" }

// Store is a Source that reads collateral from a directory, or fetches it
// from a PCS or PCCS and keeps it in memory and, optionally, in a cache
// directory of the same layout.
type Store struct {
	// URL of the PCS or PCCS; empty to never use the network.
	URL string
	// Dir is read for collateral: an operator's offline collateral
	// directory, or the cache directory.
	Dir string
	// WriteDir is set (to Dir) to keep fetched collateral on disk.
	WriteDir bool
	// Update is the PCS "update" parameter: "early" or "standard".
	Update string
	// Client makes the requests; its Timeout bounds each one.
	Client *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	entries map[string]*entry
	last    map[string]*Collateral
}

type entry struct {
	mu      sync.Mutex
	body    []byte
	chain   []byte // issuer chain header, for TCB info and QE identity
	fetched time.Time
	expires time.Time
	retryAt time.Time
	// file stamp, so that a changed file is read again
	modTime time.Time
	size    int64
}

var errNoCollateral = errors.New("collateral not available")

// Collateral returns the collateral for req. Fetched collateral is reused
// until it expires or is a day old; when the PCS cannot be reached, what
// was fetched before (or is on disk) is returned even if it has expired, and
// the Verifier decides.
func (s *Store) Collateral(ctx context.Context, req Request) (*Collateral, error) {
	// Both end up in file names and URLs.
	if _, err := hex.DecodeString(req.FMSPC); err != nil || len(req.FMSPC) != 12 {
		return nil, sdk.InvalidArgument("DCAP collateral: FMSPC %q is not 6 hex bytes", req.FMSPC)
	}
	if req.CA != caPlatform && req.CA != caProcessor {
		return nil, sdk.InvalidArgument("DCAP collateral: PCK CA %q is not %q or %q", req.CA, caPlatform, caProcessor)
	}
	c := &Collateral{}
	var err error
	var tiChain, qeChain []byte
	tee := req.tee()
	fmspc := strings.ToUpper(req.FMSPC)
	if c.TCBInfo, tiChain, err = s.get(ctx, TCBInfoFile(req.TDX, fmspc),
		"/"+tee+"/certification/v4/tcb?fmspc="+url.QueryEscape(fmspc)+s.updateParam("&"), "Tcb-Info-Issuer-Chain", jsonNextUpdate("tcbInfo")); err != nil {
		return nil, err
	}
	if c.QEIdentity, qeChain, err = s.get(ctx, QEIdentityFile(req.TDX),
		"/"+tee+"/certification/v4/qe/identity"+s.updateParam("?"), "Sgx-Enclave-Identity-Issuer-Chain", jsonNextUpdate("enclaveIdentity")); err != nil {
		return nil, err
	}
	c.SigningChain = append(append([]byte{}, tiChain...), qeChain...)
	if len(c.SigningChain) == 0 {
		if c.SigningChain, _, err = s.get(ctx, SigningChainFile, "", "", nil); err != nil {
			return nil, err
		}
	}
	if req.CRLs {
		if c.PCKCRL, _, err = s.get(ctx, PCKCRLFile(req.CA),
			"/sgx/certification/v4/pckcrl?ca="+url.QueryEscape(req.CA)+"&encoding=der", "", crlNextUpdate); err != nil {
			return nil, err
		}
		if c.RootCRL, _, err = s.get(ctx, RootCRLFile, "/sgx/certification/v4/rootcacrl", "", crlNextUpdate); err != nil {
			return nil, err
		}
	}
	// Hand out the same *Collateral while nothing changed, so that the
	// Verifier can reuse what it checked.
	key := tee + fmspc + req.CA + fmt.Sprint(req.CRLs)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[string]*Collateral{}
	}
	if old := s.last[key]; old != nil && sameCollateral(old, c) {
		return old, nil
	}
	s.last[key] = c
	return c, nil
}

func sameCollateral(a, b *Collateral) bool {
	return bytes.Equal(a.TCBInfo, b.TCBInfo) && bytes.Equal(a.QEIdentity, b.QEIdentity) &&
		bytes.Equal(a.SigningChain, b.SigningChain) && bytes.Equal(a.PCKCRL, b.PCKCRL) && bytes.Equal(a.RootCRL, b.RootCRL)
}

func (s *Store) updateParam(sep string) string {
	if s.Update == "" {
		return ""
	}
	return sep + "update=" + url.QueryEscape(s.Update)
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Store) entry(name string) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries == nil {
		s.entries = map[string]*entry{}
	}
	e := s.entries[name]
	if e == nil {
		e = &entry{}
		s.entries[name] = e
	}
	return e
}

// retryAfter spaces out attempts to reach a PCS that failed, so that a
// PCS outage does not add a timeout to every verification.
const retryAfter = time.Minute

// get returns one collateral item. Without a URL (or for items the PCS
// does not serve) it reads the directory, re-reading a file that changed.
// With a URL it uses what it has while that is fresh, else fetches, and
// falls back to what it has (from memory or the cache directory) when the
// fetch fails.
func (s *Store) get(ctx context.Context, name, path, chainHeader string, nextUpdate func([]byte) time.Time) ([]byte, []byte, error) {
	e := s.entry(name)
	e.mu.Lock()
	defer e.mu.Unlock()
	if s.URL == "" || path == "" {
		if s.Dir == "" {
			return nil, nil, sdk.Unavailable("DCAP collateral %s: %v", name, errNoCollateral)
		}
		if err := s.load(e, name, nextUpdate); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = errNoCollateral
			}
			return nil, nil, sdk.Unavailable("DCAP collateral %s: %v", name, err)
		}
		return e.body, e.chain, nil
	}
	now := s.now()
	if e.body == nil && s.Dir != "" {
		_ = s.load(e, name, nextUpdate) // a cold start uses the cache
	}
	if e.body != nil && (e.fresh(now) || now.Before(e.retryAt)) {
		return e.body, e.chain, nil
	}
	body, chain, err := s.fetch(ctx, path, chainHeader)
	if err != nil {
		sdk.Logger().Warn("fetching DCAP collateral failed", "path", path, "error", err)
		e.retryAt = now.Add(retryAfter)
		if e.body != nil {
			return e.body, e.chain, nil // maybe stale; the Verifier checks dates
		}
		return nil, nil, sdk.Unavailable("DCAP collateral %s: %v", name, err)
	}
	e.set(body, chain, now, nextUpdate)
	s.save(name, body, chain)
	return e.body, e.chain, nil
}

func (e *entry) fresh(now time.Time) bool {
	return now.Before(e.expires) && now.Sub(e.fetched) < refreshAfter
}

func (e *entry) set(body, chain []byte, fetched time.Time, nextUpdate func([]byte) time.Time) {
	e.body, e.chain, e.fetched = body, chain, fetched
	e.expires = fetched.Add(refreshAfter)
	if nextUpdate != nil {
		if t := nextUpdate(body); !t.IsZero() {
			e.expires = t
		}
	}
}

// load reads name from the directory unless the file is unchanged since
// the last read. A cached item keeps its issuer chain in name+".chain.pem".
func (s *Store) load(e *entry, name string, nextUpdate func([]byte) time.Time) error {
	p := filepath.Join(s.Dir, name)
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if e.body != nil && fi.ModTime().Equal(e.modTime) && fi.Size() == e.size {
		return nil
	}
	if fi.Size() > maxResponse {
		return fmt.Errorf("%d bytes is too large", fi.Size())
	}
	body, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	chain, err := os.ReadFile(p + ".chain.pem")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	e.set(body, chain, fi.ModTime(), nextUpdate)
	e.modTime, e.size = fi.ModTime(), fi.Size()
	return nil
}

// save writes a fetched item to the cache directory; failure to cache is
// logged, not fatal.
func (s *Store) save(name string, body, chain []byte) {
	if !s.WriteDir || s.Dir == "" {
		return
	}
	write := func(p string, b []byte) error {
		tmp, err := os.CreateTemp(s.Dir, ".tmp-*")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		if _, err := tmp.Write(b); err != nil {
			tmp.Close()
			return err
		}
		if err := tmp.Close(); err != nil {
			return err
		}
		return os.Rename(tmp.Name(), p)
	}
	p := filepath.Join(s.Dir, name)
	err := write(p, body)
	if err == nil && chain != nil {
		err = write(p+".chain.pem", chain)
	}
	if err != nil {
		sdk.Logger().Warn("caching DCAP collateral failed", "file", p, "error", err)
	}
}

// fetch GETs path from the PCS/PCCS and returns the body and the issuer
// chain of chainHeader (URL-decoded PEM).
func (s *Store) fetch(ctx context.Context, path, chainHeader string) ([]byte, []byte, error) {
	base, err := url.Parse(s.URL)
	if err != nil {
		return nil, nil, err
	}
	target := base.Scheme + "://" + base.Host + path
	if path == "/sgx/certification/v4/rootcacrl" && base.Host == "api.trustedservices.intel.com" {
		target = intelRootCRLURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, nil, err
	}
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %s", target, resp.Status)
	}
	if len(body) > maxResponse {
		return nil, nil, fmt.Errorf("GET %s: response larger than %d bytes", target, maxResponse)
	}
	var chain []byte
	if chainHeader != "" {
		h := resp.Header.Get(chainHeader)
		if h == "" {
			return nil, nil, fmt.Errorf("GET %s: no %s header", target, chainHeader)
		}
		dec, err := url.QueryUnescape(h)
		if err != nil {
			return nil, nil, fmt.Errorf("GET %s: %s: %v", target, chainHeader, err)
		}
		chain = []byte(dec)
	}
	return body, chain, nil
}

// jsonNextUpdate reads member.nextUpdate of a collateral body.
func jsonNextUpdate(member string) func([]byte) time.Time {
	return func(b []byte) time.Time {
		var t time.Time
		switch member {
		case "tcbInfo":
			if ti, _, _, err := ParseTCBInfo(b); err == nil {
				t = ti.NextUpdate
			}
		default:
			if ei, _, _, err := ParseEnclaveIdentity(b); err == nil {
				t = ei.NextUpdate
			}
		}
		return t
	}
}

func crlNextUpdate(b []byte) time.Time {
	if crl, err := ParseCRL(b); err == nil {
		return crl.NextUpdate
	}
	return time.Time{}
}
