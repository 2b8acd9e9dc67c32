package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbsclient"
)

// Modes of the load.
const (
	ModeHandshake = "handshake"
	ModeBearer    = "bearer"
)

// maxSamples bounds the latencies kept per run (8 bytes each).
const maxSamples = 2_000_000

// LoadRun is one measured run of one mode.
type LoadRun struct {
	Mode        string         `json:"mode"`
	Concurrency int            `json:"concurrency"`
	Ops         int64          `json:"ops"`
	Errors      int64          `json:"errors"`
	ErrorKinds  map[string]int `json:"error_kinds,omitempty"`
	Seconds     float64        `json:"seconds"`
	Throughput  float64        `json:"throughput_per_s"`
	LatencyMS   Latency        `json:"latency_ms"`
	LoadAvg     []float64      `json:"load_avg_after"`
	// FloorThroughput is the mode's floor, measured just before the run.
	FloorThroughput float64 `json:"floor_throughput_per_s,omitempty"`
	// FloorRatio is Throughput over FloorThroughput. On a shared machine
	// it flatters the load, whose many threads get a larger share of the
	// CPUs than the floor's few: see CPURatio.
	FloorRatio float64 `json:"floor_ratio,omitempty"`
	// CPURatio is the floor's CPU time per operation over the load's
	// (guests, host and plugins): the throughput ratio of a machine that
	// both would keep busy, undisturbed by other work on it. Only for a
	// broker kbs-bench started.
	CPURatio float64 `json:"cpu_ratio,omitempty"`
	// CPUPerOp is the CPU time per operation, in µs, of the simulated
	// guests (this process) and, for a broker kbs-bench started, of the
	// host and of its plugins: where the machine's time went.
	CPUPerOp map[string]float64 `json:"cpu_us_per_op"`
	// PeakRSSMiB is the peak RSS of a broker kbs-bench started (host and
	// plugins) during this run, and the host's share of it.
	PeakRSSMiB     float64 `json:"peak_rss_mib,omitempty"`
	PeakHostRSSMiB float64 `json:"peak_host_rss_mib,omitempty"`
	// Sessions is the broker's kbs_sessions at the end of the run.
	Sessions float64 `json:"sessions,omitempty"`
}

// target is what the load drives.
type target struct {
	url      string
	resource string
	secret   []byte // the resource's plaintext; nil: learnt from the first fetch
	tr       *http.Transport
	hostPID  int // of a broker kbs-bench started, else 0
}

// cpu returns the CPU time used so far by the guests (this process) and,
// when the broker is ours, by its host, its plugins, and each plugin (by
// process name).
func (t *target) cpu() map[string]time.Duration {
	m := map[string]time.Duration{"guests": selfCPU()}
	if t.hostPID != 0 {
		m["host"] = procCPU(t.hostPID)
		for _, p := range descendants(t.hostPID)[1:] {
			c := procCPU(p)
			m["plugins"] += c
			if name := procName(p); name != "" {
				m["plugin "+name] += c
			}
		}
	}
	return m
}

func newTransport(conns int) *http.Transport {
	return &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
}

// guestOf is one simulated guest: a TEE key and a client with its own
// cookie jar over the shared connection pool.
type guestOf struct {
	key    *guest.Key
	client *kbsclient.Client
}

func (t *target) newGuest() (*guestOf, error) {
	// The guest's own key generation is part of every handshake.
	k, err := guest.NewKey(guest.KindECP256)
	if err != nil {
		return nil, err
	}
	jar, _ := cookiejar.New(nil)
	return &guestOf{key: k, client: &kbsclient.Client{URL: t.url, HTTP: &http.Client{Jar: jar, Transport: t.tr, Timeout: 60 * time.Second}}}, nil
}

// handshake is one full guest handshake: key, auth, attest with sample
// evidence, resource fetch with the session cookie, JWE decryption.
func (t *target) handshake(ctx context.Context) (string, error) {
	g, err := t.newGuest()
	if err != nil {
		return "", err
	}
	ch, err := g.client.Auth(ctx, "sample")
	if err != nil {
		return "", err
	}
	jwk, err := g.key.PublicJWKJSON()
	if err != nil {
		return "", err
	}
	tok, err := g.client.Attest(ctx, ch, jwk, sampleEvidence)
	if err != nil {
		return "", err
	}
	return tok, t.fetch(ctx, g, "")
}

// fetch gets the resource (with the session cookie, or bearer) and opens it.
func (t *target) fetch(ctx context.Context, g *guestOf, bearer string) error {
	body, err := g.client.GetResource(ctx, t.resource, bearer)
	if err != nil {
		return err
	}
	pt, err := g.key.DecryptJSON(body)
	if err != nil {
		return err
	}
	if !bytes.Equal(pt, t.secret) {
		return errMismatch
	}
	return nil
}

// sampleEvidence is the sample TEE's evidence for a runtime-data digest.
func sampleEvidence(digest []byte) (json.RawMessage, error) {
	return guest.NewSampleEvidence(digest).JSON(), nil
}

var errMismatch = errors.New("decrypted resource differs from the one stored")

// errorKind names an error for the report: the HTTP status and KBS error
// type, or what failed.
func errorKind(err error) string {
	var ke *kbsclient.Error
	switch {
	case errors.As(err, &ke):
		return strconv.Itoa(ke.Status) + " " + shortType(ke.Type)
	case errors.Is(err, errMismatch):
		return "wrong plaintext"
	case errors.Is(err, guest.ErrDecrypt):
		return "decrypt"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "transport"
}

func shortType(t string) string {
	for i := len(t) - 1; i >= 0; i-- {
		if t[i] == '/' {
			return t[i+1:]
		}
	}
	return t
}

// runLoad drives mode with c workers for n operations (n > 0) or for d,
// after a warm-up, and returns the measured run.
func (t *target) runLoad(ctx context.Context, mode string, c int, n int64, d, warmup time.Duration, prof *profiler) (*LoadRun, error) {
	// Bearer mode: each worker attests once, then fetches with its token.
	type worker struct {
		g    *guestOf
		tok  string
		conn *conn
	}
	workers := make([]worker, c)
	for i := range workers {
		cn, err := newConn(t.url)
		if err != nil {
			return nil, err
		}
		workers[i].conn = cn
		defer cn.close()
	}
	if mode == ModeBearer {
		var wg sync.WaitGroup
		errs := make([]error, c)
		for i := range workers {
			wg.Go(func() {
				g, err := t.newGuest()
				if err != nil {
					errs[i] = err
					return
				}
				ch, err := g.client.Auth(ctx, "sample")
				if err != nil {
					errs[i] = err
					return
				}
				jwk, _ := g.key.PublicJWKJSON()
				tok, err := g.client.Attest(ctx, ch, jwk, sampleEvidence)
				workers[i].g, workers[i].tok = g, tok
				errs[i] = err
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("bearer setup: %w", err)
		}
	}
	op := func(ctx context.Context, w *worker) error {
		if mode == ModeBearer {
			return t.leanFetch(ctx, w.conn, w.g.key, "", w.tok)
		}
		_, err := t.leanHandshake(ctx, w.conn)
		return err
	}

	// Warm-up: connections, the plugins' first calls, the runtime's heap.
	if warmup > 0 {
		wctx, cancel := context.WithTimeout(ctx, warmup)
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() {
				for wctx.Err() == nil {
					_ = op(wctx, &workers[i])
				}
			})
		}
		wg.Wait()
		cancel()
	}

	var (
		done, failed atomic.Int64
		issued       atomic.Int64
		mu           sync.Mutex
		kinds        = map[string]int{}
		lat          = make([][]time.Duration, c)
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if n <= 0 {
		var cancelT context.CancelFunc
		runCtx, cancelT = context.WithTimeout(runCtx, d)
		defer cancelT()
	}
	profDur := d
	if n > 0 {
		profDur = 5 * time.Second
	}
	profWait := prof.start(ctx, mode, profDur)
	start := time.Now()
	cpu0 := t.cpu()
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for runCtx.Err() == nil {
				if n > 0 && issued.Add(1) > n {
					return
				}
				t0 := time.Now()
				err := op(runCtx, &workers[i])
				el := time.Since(t0)
				if err != nil {
					if runCtx.Err() != nil && n <= 0 {
						return // cut off by the end of the run, not a failure
					}
					failed.Add(1)
					mu.Lock()
					kinds[errorKind(err)]++
					mu.Unlock()
					continue
				}
				done.Add(1)
				if len(lat[i]) < maxSamples/c {
					lat[i] = append(lat[i], el)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1 := t.cpu()
	if err := profWait(); err != nil {
		return nil, fmt.Errorf("profiling: %w", err)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	r := &LoadRun{
		Mode: mode, Concurrency: c, Ops: done.Load(), Errors: failed.Load(),
		Seconds: elapsed.Seconds(), Throughput: float64(done.Load()) / elapsed.Seconds(),
		LatencyMS: percentiles(all), LoadAvg: loadAvg(),
	}
	if len(kinds) > 0 {
		r.ErrorKinds = kinds
	}
	if ops := done.Load() + failed.Load(); ops > 0 {
		r.CPUPerOp = map[string]float64{}
		for k, v := range cpu1 {
			r.CPUPerOp[k] = us(v-cpu0[k]) / float64(ops)
		}
	}
	return r, nil
}
