package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"
)

// profiler writes CPU profiles of a run: the guests' (this process) and,
// for a broker kbs-bench started, the host's (through its opt-in
// debug.pprof_listen endpoint). Plugins are not profiled.
type profiler struct {
	dir   string
	pprof string // host profiler address, or ""
}

// start profiles for d from now; wait returns once the profiles are
// written.
func (p *profiler) start(ctx context.Context, name string, d time.Duration) (wait func() error) {
	if p == nil || p.dir == "" {
		return func() error { return nil }
	}
	errc := make(chan error, 2)
	go func() {
		f, err := os.Create(filepath.Join(p.dir, "guests-"+name+".pprof"))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			errc <- err
			return
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		pprof.StopCPUProfile()
		errc <- nil
	}()
	go func() {
		if p.pprof == "" {
			errc <- nil
			return
		}
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.pprof, max(1, int(d/time.Second)))
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			errc <- err
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(p.dir, "host-"+name+".pprof"))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		_, err = io.Copy(f, resp.Body)
		errc <- err
	}()
	return func() error {
		return errorsJoin(<-errc, <-errc)
	}
}
