package snp

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gokbs/kbs/sdk"
)

// DefaultKDSBaseURL is AMD's Key Distribution Service.
const DefaultKDSBaseURL = "https://kdsintf.amd.com"

// maxVCEKSize bounds a KDS answer; a VCEK is about 1.4 KB.
const maxVCEKSize = 64 << 10

// vcekKey says which VCEK a report needs: the chip and its reported TCB.
type vcekKey struct {
	gen  Generation
	hwid string // hex; Turin uses the first 8 bytes of CHIP_ID
	tcb  TCB
	fmc  bool
}

func vcekKeyOf(r *Report) vcekKey {
	turin := r.Generation == Turin || (r.Generation == GenerationUnknown && r.turinLayout)
	id := r.ChipID[:]
	if turin {
		id = id[:8]
	}
	return vcekKey{gen: r.Generation, hwid: hex.EncodeToString(id), tcb: r.ReportedTCB, fmc: turin}
}

// fileName is trustee's offline-store name for the VCEK of this TCB:
// blNN_teeNN_snpNN_ucodeNN[_fmcNN]_vcek.der.
func (k vcekKey) fileName() string {
	s := fmt.Sprintf("bl%02d_tee%02d_snp%02d_ucode%02d", k.tcb.Bootloader, k.tcb.TEE, k.tcb.SNP, k.tcb.Microcode)
	if k.fmc {
		s += fmt.Sprintf("_fmc%02d", k.tcb.FMC)
	}
	return s + "_vcek.der"
}

// url is the KDS request for this VCEK; Turin adds fmcSPL, first.
func (k vcekKey) url(base string) string {
	q := fmt.Sprintf("blSPL=%02d&teeSPL=%02d&snpSPL=%02d&ucodeSPL=%02d", k.tcb.Bootloader, k.tcb.TEE, k.tcb.SNP, k.tcb.Microcode)
	if k.fmc {
		q = fmt.Sprintf("fmcSPL=%02d&", k.tcb.FMC) + q
	}
	return fmt.Sprintf("%s/vcek/v1/%s/%s?%s", base, k.gen, k.hwid, q)
}

// readStore looks up a VCEK in a directory laid out as trustee's offline
// store: <dir>/vcek/<hwid>/<tcb>_vcek.der, else <dir>/vcek/<hwid>/vcek.der.
// A missing file is (nil, nil).
func readStore(dir string, k vcekKey, fallback bool) ([]byte, error) {
	names := []string{k.fileName()}
	if fallback {
		names = append(names, "vcek.der")
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, "vcek", k.hwid, n))
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, nil
}

// writeStore saves a fetched VCEK in the same layout, atomically, so that a
// cache directory can later serve as an offline store.
func writeStore(dir string, k vcekKey, der []byte) error {
	d := filepath.Join(dir, "vcek", k.hwid)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(d, ".vcek-*")
	if err != nil {
		return err
	}
	_, err = f.Write(der)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(d, k.fileName()))
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// kdsClient fetches VCEKs from AMD's KDS, through an in-memory cache and,
// if configured, an on-disk one. AMD rate-limits the KDS, so concurrent
// requests for the same VCEK share one fetch.
type kdsClient struct {
	base     string
	cacheDir string
	http     *http.Client

	mu       sync.Mutex
	mem      map[vcekKey][]byte
	inflight map[vcekKey]*fetch
}

type fetch struct {
	done chan struct{}
	der  []byte
	err  error
}

// memCacheMax bounds the in-memory cache; VCEKs change only with a chip's
// TCB, so a KBS sees few of them.
const memCacheMax = 4096

func (c *kdsClient) get(ctx context.Context, k vcekKey) ([]byte, error) {
	c.mu.Lock()
	if der, ok := c.mem[k]; ok {
		c.mu.Unlock()
		return der, nil
	}
	if f, ok := c.inflight[k]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.der, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &fetch{done: make(chan struct{})}
	c.inflight[k] = f
	c.mu.Unlock()

	f.der, f.err = c.load(ctx, k)

	c.mu.Lock()
	delete(c.inflight, k)
	if f.err == nil {
		if len(c.mem) >= memCacheMax {
			clear(c.mem)
		}
		c.mem[k] = f.der
	}
	c.mu.Unlock()
	close(f.done)
	return f.der, f.err
}

func (c *kdsClient) load(ctx context.Context, k vcekKey) ([]byte, error) {
	if c.cacheDir != "" {
		der, err := readStore(c.cacheDir, k, false)
		if err != nil {
			return nil, sdk.Unavailable("snp: VCEK cache: %v", err)
		}
		if der != nil {
			return der, nil
		}
	}
	if c.base == "" {
		return nil, sdk.Unavailable("snp: the evidence carries no VCEK, none is stored offline, and KDS is disabled")
	}
	der, err := c.fetch(ctx, k)
	if err != nil {
		return nil, err
	}
	if c.cacheDir != "" {
		if err := writeStore(c.cacheDir, k, der); err != nil {
			sdk.Logger().Warn("snp: cannot cache VCEK", "error", err)
		}
	}
	return der, nil
}

func (c *kdsClient) fetch(ctx context.Context, k vcekKey) ([]byte, error) {
	u := k.url(c.base)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, sdk.Internal("snp: KDS request: %v", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, sdk.Unavailable("snp: KDS: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxVCEKSize+1))
	if err != nil {
		return nil, sdk.Unavailable("snp: KDS %s: %v", u, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		return nil, sdk.Unavailable("snp: KDS %s: %s", u, resp.Status)
	default:
		// KDS answers 4xx for a chip or TCB it does not know: the report
		// names a VCEK that AMD never issued.
		return nil, sdk.BadEvidence("snp: KDS has no VCEK for this chip and TCB (%s: %s)", u, resp.Status)
	}
	if len(body) > maxVCEKSize {
		return nil, sdk.Unavailable("snp: KDS %s: answer larger than %d bytes", u, maxVCEKSize)
	}
	if _, err := parseCert(body); err != nil {
		return nil, sdk.Unavailable("snp: KDS %s: not a certificate: %v", u, err)
	}
	return body, nil
}

func trimBase(u string) string { return strings.TrimRight(u, "/") }
