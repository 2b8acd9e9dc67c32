package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"

	"github.com/gokbs/kbs/host/internal/config"
	"github.com/gokbs/kbs/host/internal/metrics"
	"github.com/gokbs/kbs/host/internal/plugins"
)

// authLimiter is the session.auth_rate limit, or nil when it is off.
func authLimiter(cfg *config.Config) *rate.Limiter {
	if cfg.Session.AuthRate <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(cfg.Session.AuthRate), cfg.Session.AuthBurst)
}

// watch exposes the plugins' states and the number of sessions held.
func (d *Daemon) watch(m *metrics.Metrics) {
	m.WatchPlugins(func() []metrics.PluginState {
		st := d.plugins.Status()
		out := make([]metrics.PluginState, len(st))
		for i, s := range st {
			out[i] = metrics.PluginState{ID: s.Kind + "/" + s.Name, Up: s.State == plugins.StateRunning && s.PID != 0, Restarts: s.Restarts}
		}
		return out
	})
	if n, ok := d.sessions.(interface{ Len() int }); ok {
		m.WatchSessions(n.Len)
	}
}

// listenPprof serves net/http/pprof on debug.pprof_listen (a loopback
// address; config checks it), on its own mux so that nothing else is
// reachable there and the profiler is never on the broker's sockets.
func (d *Daemon) listenPprof() error {
	addr := d.cfg.Debug.PprofListen
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("debug.pprof_listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          d.log.Named("pprof").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("pprof server stopped", "error", err)
		}
	}()
	d.closers = append(d.closers, func() { _ = srv.Close() })
	d.log.Warn("the Go profiler is on (debug.pprof_listen); it shows the broker's internals to whoever reaches it", "listen", ln.Addr().String())
	return nil
}
