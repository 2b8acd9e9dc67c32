package session

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokbs/kbs/host/internal/redisconn"
	"github.com/gokbs/kbs/host/internal/redistest"
	"github.com/gokbs/kbs/sdk"
)

// stores runs a test against every Store, each given a way to open a
// second handle on the same sessions (another replica; Memory has one).
func stores(t *testing.T, f func(t *testing.T, s Store, replica func() Store)) {
	t.Helper()
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		m := NewMemory(1000, 0)
		f(t, m, func() Store { return m })
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t, redistest.Options{})
		f(t, newRedis(t, srv.URL), func() Store { return newRedis(t, srv.URL) })
	})
}

const testTimeout = 500 * time.Millisecond

func newRedis(t *testing.T, url string) *Redis {
	t.Helper()
	c, err := redisconn.Open(url, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return NewRedis(c, "kbs-test:")
}

// TestStoreLifecycle walks a session through the handshake, each step on
// another replica, and lets it expire on the real clock.
func TestStoreLifecycle(t *testing.T) {
	stores(t, func(t *testing.T, first Store, replica func() Store) {
		ctx := context.Background()
		second, third := replica(), replica()
		s := &Session{ID: NewID(), TEE: "sample", Nonce: "n0nce", HashAlg: "sha384", ExtraParams: "x",
			ExpiresAt: time.Now().Add(700 * time.Millisecond)}
		if err := first.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			name string
			run  func() error
			want error
		}{
			{"get on another replica", func() error {
				got, err := second.Get(ctx, s.ID)
				if err == nil && (got.TEE != "sample" || got.Nonce != "n0nce" || got.HashAlg != "sha384" ||
					got.ExtraParams != "x" || got.State != Authed || got.ExpiresAt.UnixMilli() != s.ExpiresAt.UnixMilli()) {
					return errors.New("session read back differs")
				}
				return err
			}, nil},
			{"get unknown", func() error { _, err := second.Get(ctx, NewID()); return err }, ErrNotFound},
			{"consume unknown", func() error { _, err := second.ConsumeNonce(ctx, NewID()); return err }, ErrNotFound},
			{"attest unknown", func() error { return second.Attest(ctx, NewID(), "t") }, ErrNotFound},
			{"consume once", func() error {
				got, err := second.ConsumeNonce(ctx, s.ID)
				if err == nil && got.Nonce != "n0nce" {
					return errors.New("consumed session lacks its nonce")
				}
				return err
			}, nil},
			{"consume twice", func() error { _, err := third.ConsumeNonce(ctx, s.ID); return err }, ErrNonceUsed},
			{"attest", func() error { return second.Attest(ctx, s.ID, "tok") }, nil},
			{"consume after attest", func() error { _, err := first.ConsumeNonce(ctx, s.ID); return err }, ErrNonceUsed},
			{"token on a third replica", func() error {
				got, err := third.Get(ctx, s.ID)
				if err == nil && (got.State != Attested || got.Token != "tok") {
					return errors.New("token not recorded")
				}
				return err
			}, nil},
			{"expired", func() error {
				time.Sleep(time.Until(s.ExpiresAt) + 50*time.Millisecond)
				_, err := third.Get(ctx, s.ID)
				return err
			}, ErrNotFound},
			{"attest after expiry", func() error { return first.Attest(ctx, s.ID, "late") }, ErrNotFound},
		}
		for _, st := range steps {
			if err := st.run(); !errors.Is(err, st.want) {
				t.Fatalf("%s: error = %v, want %v", st.name, err, st.want)
			}
		}
		delID := NewID()
		_ = first.Create(ctx, &Session{ID: delID, ExpiresAt: time.Now().Add(time.Minute)})
		if err := second.Delete(ctx, delID); err != nil {
			t.Fatal(err)
		}
		if _, err := first.Get(ctx, delID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted session: %v", err)
		}
	})
}

// TestStoreConsumeNonceAcrossReplicas: of many attests racing on the same
// session from several replicas, exactly one gets the nonce.
func TestStoreConsumeNonceAcrossReplicas(t *testing.T) {
	stores(t, func(t *testing.T, s Store, replica func() Store) {
		ctx := context.Background()
		id := NewID()
		if err := s.Create(ctx, &Session{ID: id, ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		reps := []Store{s, replica(), replica()}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 60 {
			wg.Go(func() {
				_, err := reps[i%len(reps)].ConsumeNonce(ctx, id)
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, ErrNonceUsed):
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d concurrent consumers succeeded, want exactly 1", wins.Load())
		}
	})
}

// TestRedisDown: with Redis gone, every call fails fast with an
// unavailable error, never ErrNotFound (which would tell a guest its
// session expired), and the same store works again when Redis is back.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	r := newRedis(t, srv.URL)
	ctx := context.Background()
	id := NewID()
	if err := r.Create(ctx, &Session{ID: id, ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	ops := map[string]func() error{
		"create":  func() error { return r.Create(ctx, &Session{ID: NewID(), ExpiresAt: time.Now().Add(time.Minute)}) },
		"get":     func() error { _, err := r.Get(ctx, id); return err },
		"consume": func() error { _, err := r.ConsumeNonce(ctx, id); return err },
		"attest":  func() error { return r.Attest(ctx, id, "t") },
		"delete":  func() error { return r.Delete(ctx, id) },
		"ping":    func() error { return r.Ping(ctx) },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			err := op()
			if took := time.Since(start); took > 2*testTimeout {
				t.Errorf("took %v, want at most %v", took, 2*testTimeout)
			}
			if sdk.ClassOf(err) != sdk.ClassUnavailable || errors.Is(err, ErrNotFound) || errors.Is(err, ErrNonceUsed) {
				t.Fatalf("error %v, want an unavailable error", err)
			}
		})
	}
	srv.Restart(t)
	deadline := time.Now().Add(5 * time.Second)
	_, err := r.ConsumeNonce(ctx, id)
	for err != nil && time.Now().Before(deadline) && sdk.ClassOf(err) == sdk.ClassUnavailable {
		time.Sleep(50 * time.Millisecond)
		_, err = r.ConsumeNonce(ctx, id)
	}
	if err != nil {
		t.Fatalf("session after Redis came back: %v", err)
	}
}

// TestRedisFull: when Redis refuses writes for lack of memory (maxmemory
// with noeviction), Create is ErrFull (auth answers 503, retry later).
func TestRedisFull(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	r := newRedis(t, srv.URL)
	ctx := context.Background()
	if err := r.c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.c.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	err := r.Create(ctx, &Session{ID: NewID(), ExpiresAt: time.Now().Add(time.Minute)})
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Create on a full Redis: %v, want ErrFull", err)
	}
}
