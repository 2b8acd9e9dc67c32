package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/gokbs/kbs/host/internal/config"
	"github.com/gokbs/kbs/host/internal/redisconn"
	"github.com/gokbs/kbs/host/internal/session"
	"github.com/gokbs/kbs/host/internal/store"
	"github.com/gokbs/kbs/sdk"
)

// openRedis returns the Redis client when sessions or state live in
// Redis, and nil otherwise.
func openRedis(cfg *config.Config, log hclog.Logger) (*redis.Client, error) {
	st := cfg.Storage
	if st.StorageType != config.StorageRedis && cfg.Session.StorageType != config.SessionRedis {
		return nil, nil
	}
	redis.SetLogger(redisLogger{log.Named("redis")})
	c, err := redisconn.Open(st.RedisURL, st.Timeout)
	if err != nil {
		return nil, fmt.Errorf("storage.redis_url: %w", err)
	}
	log.Info("using redis", "url", redisconn.Redacted(st.RedisURL), "state", st.StorageType == config.StorageRedis,
		"sessions", cfg.Session.StorageType == config.SessionRedis, "key_prefix", st.KeyPrefix)
	if st.StorageType == config.StorageRedis && cfg.Session.StorageType != config.SessionRedis {
		log.Warn("state is shared in redis but sessions are kept in memory: replicas behind a load balancer then need sticky sessions; set [session] storage_type = \"redis\"")
	}
	return c, nil
}

// redisLogger sends go-redis's own messages (one per refused dial during
// an outage) to debug; the broker logs outages itself, once.
type redisLogger struct{ l hclog.Logger }

func (r redisLogger) Printf(_ context.Context, format string, v ...any) {
	r.l.Debug(fmt.Sprintf(format, v...))
}

// openStateStore opens the configured durable store.
func openStateStore(cfg *config.Config, rc *redis.Client) (store.Store, error) {
	if cfg.Storage.StorageType == config.StorageRedis {
		return store.NewRedis(rc, cfg.Storage.KeyPrefix), nil
	}
	if err := ensureDir(cfg.Storage.Dir); err != nil {
		return nil, fmt.Errorf("storage.dir: %w", err)
	}
	st, err := store.OpenBolt(filepath.Join(cfg.Storage.Dir, "kbs.db"))
	if err != nil {
		return nil, fmt.Errorf("opening the state store: %w", err)
	}
	return st, nil
}

// newSessions returns the configured session store and its closer.
func newSessions(cfg *config.Config, rc *redis.Client) (session.Store, func()) {
	if cfg.Session.StorageType == config.SessionRedis {
		return session.NewRedis(rc, cfg.Storage.KeyPrefix), func() {}
	}
	m := session.NewMemory(cfg.Session.MaxSessions, time.Minute)
	return m, m.Close
}

// refresher keeps a replica's policies and reference values in step with
// the shared store: every interval it compares the store's revisions with
// those it loaded and reloads what changed (policy.Engine.Refresh,
// refvalues.Registry.Refresh). It also tells whether its view may be
// stale: when no check succeeded for staleAfter, an admin change made
// through another replica may be missing here.
type refresher struct {
	pol        *policies
	interval   time.Duration
	staleAfter time.Duration
	log        hclog.Logger

	lastOK  atomic.Int64 // UnixNano of the last successful check
	down    atomic.Bool  // the last check failed (for logging transitions)
	lastErr atomic.Pointer[string]
	logged  string // last reload error logged; used by run's goroutine only

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func newRefresher(pol *policies, cfg config.Storage, log hclog.Logger) *refresher {
	r := &refresher{
		pol:        pol,
		interval:   cfg.RefreshInterval,
		staleAfter: 3*cfg.RefreshInterval + cfg.Timeout,
		log:        log.Named("refresh"),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	// policies were loaded just now, by newPolicies.
	r.lastOK.Store(time.Now().UnixNano())
	go r.run()
	return r
}

func (r *refresher) run() {
	defer close(r.done)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.check()
		}
	}
}

// check refreshes once; a failure leaves the previous policies in place.
func (r *refresher) check() {
	ctx, cancel := context.WithTimeout(context.Background(), r.staleAfter)
	defer cancel()
	err := errors.Join(r.pol.engine.Refresh(ctx), r.pol.refvalues.Refresh(ctx))
	if err != nil && !errors.Is(err, sdk.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		// The store answered, but a stored policy did not compile here
		// (the others were loaded): not an outage, so not stale either.
		if msg := err.Error(); msg != r.logged {
			r.logged = msg
			r.log.Error("reloading changed policies", "error", err)
		}
		err = nil
	}
	if err != nil {
		msg := err.Error()
		r.lastErr.Store(&msg)
		if !r.down.Swap(true) {
			r.log.Error("cannot check the state store for changes; keeping the loaded policies", "error", err)
		}
		return
	}
	r.lastOK.Store(time.Now().UnixNano())
	if r.down.Swap(false) {
		r.log.Info("state store reachable again; policies and reference values are up to date")
	}
}

// Fresh returns nil while the loaded policies are known to be at most
// staleAfter behind the store, and an Unavailable error (HTTP 503)
// otherwise.
func (r *refresher) Fresh() error {
	age := time.Since(time.Unix(0, r.lastOK.Load()))
	if age <= r.staleAfter {
		return nil
	}
	why := "no successful check yet"
	if p := r.lastErr.Load(); p != nil {
		why = *p
	}
	return sdk.Unavailable("state store unavailable for %s, policies may be stale: %s", age.Round(time.Second), why)
}

func (r *refresher) Close() {
	r.stopOnce.Do(func() { close(r.stop) })
	<-r.done
}

// readiness is /readyz: the plugins run, Redis (if used) answers, and the
// policies are current.
func (d *Daemon) readiness(pol *policies) func() error {
	type pinger interface{ Ping(context.Context) error }
	var pingers []pinger
	for _, x := range []any{d.sessions, pol.store} {
		if p, ok := x.(pinger); ok {
			pingers = append(pingers, p)
			break // one Redis client serves both
		}
	}
	return func() error {
		if err := d.plugins.Ready(); err != nil {
			return err
		}
		for _, p := range pingers {
			ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Storage.Timeout)
			err := p.Ping(ctx)
			cancel()
			if err != nil {
				return err
			}
		}
		return pol.fresh()
	}
}
