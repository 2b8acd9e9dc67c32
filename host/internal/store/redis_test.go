package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gokbs/kbs/host/internal/redisconn"
	"github.com/gokbs/kbs/host/internal/redistest"
	"github.com/gokbs/kbs/sdk"
)

const testTimeout = 500 * time.Millisecond

func newRedisStore(t *testing.T, url, prefix string) *Redis {
	t.Helper()
	c, err := redisconn.Open(url, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return NewRedis(c, prefix)
}

// TestRedisReplicasShareState: two clients (two replicas) see each other's
// writes and revisions; another key prefix is another store.
func TestRedisReplicasShareState(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a := newRedisStore(t, srv.URL, "kbs:")
	b := newRedisStore(t, srv.URL, "kbs:")
	other := newRedisStore(t, srv.URL, "other:")
	ctx := context.Background()
	if err := a.Put(ctx, NamespaceResourcePolicy, "/", []byte("p1")); err != nil {
		t.Fatal(err)
	}
	if err := wantValue(b, NamespaceResourcePolicy, "/", "p1"); err != nil {
		t.Fatal(err)
	}
	if r, _ := b.Revision(ctx, NamespaceResourcePolicy); r != 1 {
		t.Fatalf("revision seen by the other replica %d, want 1", r)
	}
	if ok, err := b.PutIfAbsent(ctx, NamespaceResourcePolicy, "/", []byte("p2")); ok || err != nil {
		t.Fatalf("put-if-absent over another replica's value: wrote=%v err=%v", ok, err)
	}
	if _, err := other.Get(ctx, NamespaceResourcePolicy, "/"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another prefix sees the value: %v", err)
	}
}

// TestRedisConcurrentPutIfAbsent: replicas starting together seed a default
// once; exactly one of them writes.
func TestRedisConcurrentPutIfAbsent(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	wins := make(chan bool, 10)
	for i := range 10 {
		s := newRedisStore(t, srv.URL, "kbs:")
		go func() {
			ok, err := s.PutIfAbsent(ctx, "ns", "seed", fmt.Appendf(nil, "from %d", i))
			if err != nil {
				t.Error(err)
			}
			wins <- ok
		}()
	}
	n := 0
	for range 10 {
		if <-wins {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d replicas wrote the seed, want exactly 1", n)
	}
	if r, _ := newRedisStore(t, srv.URL, "kbs:").Revision(ctx, "ns"); r != 1 {
		t.Fatalf("revision %d, want 1", r)
	}
}

// TestRedisOutage: with Redis killed, every operation fails within the
// timeout with an Unavailable error (HTTP 503), not a not-found; once Redis
// is back on its append-only file, the same client works again and every
// acknowledged write is there.
func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	s := newRedisStore(t, srv.URL, "kbs:")
	ctx := context.Background()
	for i := range 20 {
		if err := s.Put(ctx, NamespaceReferenceValue, fmt.Sprintf("rv%02d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	srv.Kill()

	ops := map[string]func() error{
		"get":           func() error { _, err := s.Get(ctx, NamespaceReferenceValue, "rv00"); return err },
		"put":           func() error { return s.Put(ctx, NamespaceReferenceValue, "new", []byte("x")) },
		"put if absent": func() error { _, err := s.PutIfAbsent(ctx, NamespaceReferenceValue, "new", nil); return err },
		"delete":        func() error { return s.Delete(ctx, NamespaceReferenceValue, "rv00") },
		"list":          func() error { _, err := s.List(ctx, NamespaceReferenceValue); return err },
		"revision":      func() error { _, err := s.Revision(ctx, NamespaceReferenceValue); return err },
		"ping":          func() error { return s.Ping(ctx) },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			err := op()
			if took := time.Since(start); took > 2*testTimeout {
				t.Errorf("took %v with Redis down, want at most %v", took, 2*testTimeout)
			}
			if sdk.ClassOf(err) != sdk.ClassUnavailable || errors.Is(err, ErrNotFound) {
				t.Fatalf("error %v (class %q), want an unavailable error", err, sdk.ClassOf(err))
			}
		})
	}

	srv.Restart(t)
	// The client's pool probes a refused address once a second before it
	// dials for callers again; recovery takes at most that long.
	back := time.Now()
	keys, err := s.List(ctx, NamespaceReferenceValue)
	for err != nil && time.Since(back) < 5*time.Second {
		time.Sleep(50 * time.Millisecond)
		keys, err = s.List(ctx, NamespaceReferenceValue)
	}
	if err != nil {
		t.Fatalf("5 s after Redis is back: %v", err)
	}
	t.Logf("the store answered again %v after Redis was back", time.Since(back).Round(time.Millisecond))
	want := make([]string, 20)
	for i := range want {
		want[i] = fmt.Sprintf("rv%02d", i)
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("after restart keys %q, want %q", keys, want)
	}
	if r, _ := s.Revision(ctx, NamespaceReferenceValue); r != 20 {
		t.Fatalf("revision after restart %d, want 20", r)
	}
	if err := s.Put(ctx, NamespaceReferenceValue, "after", []byte("ok")); err != nil {
		t.Fatalf("write after restart: %v", err)
	}
}
