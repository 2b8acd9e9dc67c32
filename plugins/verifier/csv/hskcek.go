package csv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gokbs/kbs/sdk"
)

// maxCached bounds the CEK cache; a deployment rarely has more chips.
const maxCached = 4096

// hskCEKSource finds the HSK/CEK of a chip when the evidence does not
// carry them: a verified cache, then the offline directory, then Hygon's
// KDS. Only pairs that verified against the root are cached, so a bad
// answer is fetched again rather than remembered.
type hskCEKSource struct {
	dir     string
	kds     *url.URL // nil when offline
	client  *http.Client
	mu      sync.Mutex
	entries map[string]*csvCert // chip → verified CEK
}

func newHSKCEKSource(dir, kds string, offline bool, timeout time.Duration) (*hskCEKSource, error) {
	s := &hskCEKSource{dir: dir, entries: map[string]*csvCert{}, client: &http.Client{Timeout: timeout}}
	if !offline {
		u, err := url.Parse(kds)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("kds_url %q is not an http(s) URL", kds)
		}
		s.kds = u
	}
	return s, nil
}

// get returns the chip's CEK, verified against hrk.
func (s *hskCEKSource) get(ctx context.Context, hrk *caCert, chip string) (*csvCert, error) {
	s.mu.Lock()
	cek, ok := s.entries[chip]
	s.mu.Unlock()
	if ok {
		return cek, nil
	}
	raw, err := s.load(ctx, chip)
	if err != nil {
		return nil, err
	}
	hsk, cek, err := parseHSKCEK(raw)
	if err == nil {
		err = verifyHSKCEK(hrk, hsk, cek)
	}
	if err != nil {
		// What the directory or the KDS gave is broken: their fault, not
		// the guest's, and worth another try later.
		return nil, sdk.Unavailable("csv: the HSK/CEK found for chip %s do not verify: %v", chip, err)
	}
	s.mu.Lock()
	if len(s.entries) >= maxCached {
		clear(s.entries)
	}
	s.entries[chip] = cek
	s.mu.Unlock()
	return cek, nil
}

func (s *hskCEKSource) load(ctx context.Context, chip string) ([]byte, error) {
	path := filepath.Join(s.dir, "hsk_cek", chip, "hsk_cek.cert")
	b, err := os.ReadFile(path)
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, sdk.Unavailable("csv: reading %s: %v", path, err)
	}
	if s.kds == nil {
		return nil, sdk.Unavailable("csv: no HSK/CEK for chip %s: not in the evidence, not at %s, and the KDS is off (offline)", chip, path)
	}
	return s.fetch(ctx, chip)
}

func (s *hskCEKSource) fetch(ctx context.Context, chip string) ([]byte, error) {
	u := *s.kds
	q := u.Query()
	q.Set("snumber", chip)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, sdk.Internal("csv: KDS request: %v", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, sdk.Unavailable("csv: fetching the HSK/CEK of chip %s: %v", chip, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, hskCEKSize+1))
	if err != nil {
		return nil, sdk.Unavailable("csv: fetching the HSK/CEK of chip %s: %v", chip, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, sdk.Unavailable("csv: the KDS answered %s for chip %s: %s", resp.Status, chip, sanitize(string(body)))
	}
	return body, nil
}
