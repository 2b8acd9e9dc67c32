package rescache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokbs/kbs/sdk/resource"
)

// clock is a fake clock that moves only when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var errDown = errors.New("backend down")

// backend is a fake resource backend: a map of values, a count of calls
// per key, an error to fail with, and a time each call takes on the fake
// clock.
type backend struct {
	mu    sync.Mutex
	clk   *clock
	vals  map[string]string
	calls map[string]int
	err   error
	took  time.Duration
}

func newBackend(clk *clock) *backend {
	return &backend{clk: clk, vals: map[string]string{}, calls: map[string]int{}}
}

func (b *backend) fetcher(k string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		b.mu.Lock()
		b.calls[k]++
		v, ok := b.vals[k]
		err, took := b.err, b.took
		b.mu.Unlock()
		b.clk.advance(took)
		switch {
		case err != nil:
			return nil, err
		case !ok:
			return nil, fmt.Errorf("%s: not found", k)
		}
		return []byte(v), nil
	}
}

func (b *backend) set(k, v string) {
	b.mu.Lock()
	b.vals[k] = v
	b.mu.Unlock()
}

// op is one step of a TestCache case.
type op struct {
	do  string // get, fetch, set, fail, heal, slow, advance, invalidate, sweep, close
	key string
	// val is the value of set, or the value get and fetch must return.
	val string
	// miss: get must miss; err: fetch must fail.
	miss, err bool
	d         time.Duration
}

func get(k, want string) op      { return op{do: "get", key: k, val: want} }
func miss(k string) op           { return op{do: "get", key: k, miss: true} }
func fetch(k, want string) op    { return op{do: "fetch", key: k, val: want} }
func fetchFails(k string) op     { return op{do: "fetch", key: k, err: true} }
func set(k, v string) op         { return op{do: "set", key: k, val: v} }
func advance(d time.Duration) op { return op{do: "advance", d: d} }
func invalidate(k string) op     { return op{do: "invalidate", key: k} }
func slow(d time.Duration) op    { return op{do: "slow", d: d} }
func fill(k, v string) []op      { return []op{set(k, v), fetch(k, v)} }

// fillN fills k<from>..k<to-1> with 4-byte values v-<i>.
func fillN(from, to int) []op {
	var ops []op
	for i := from; i < to; i++ {
		ops = append(ops, fill(fmt.Sprintf("k%02d", i), fmt.Sprintf("v-%02d", i))...)
	}
	return ops
}

func concat(ops ...[]op) []op {
	var all []op
	for _, o := range ops {
		all = append(all, o...)
	}
	return all
}

const ttl = 5 * time.Second

func TestCache(t *testing.T) {
	small := Options{TTL: ttl, MaxEntries: 2, MaxBytes: 1 << 20}
	tests := map[string]struct {
		opts  Options // zero: ttl, 1024 entries, 16 MiB
		ops   []op
		calls map[string]int // backend calls per key at the end
		len   int            // values held at the end
		bytes int64
	}{
		"miss, then hits without a backend call": {
			ops:   concat(fill("a", "v1"), []op{get("a", "v1"), get("a", "v1"), fetch("a", "v1")}),
			calls: map[string]int{"a": 1}, len: 1, bytes: 2,
		},
		"served until ttl, then asked again": {
			ops: concat(fill("a", "v1"), []op{set("a", "v2"),
				advance(ttl - time.Nanosecond), get("a", "v1"),
				advance(time.Nanosecond), miss("a"), fetch("a", "v2"), get("a", "v2")}),
			calls: map[string]int{"a": 2}, len: 1, bytes: 2,
		},
		"ttl counts from the start of the backend call": {
			ops: concat([]op{slow(2 * time.Second)}, fill("a", "v1"), []op{
				advance(ttl - 2*time.Second - time.Nanosecond), get("a", "v1"),
				advance(time.Nanosecond), miss("a")}),
			calls: map[string]int{"a": 1}, len: 0,
		},
		"a call that outlasts the ttl is not kept": {
			ops:   concat([]op{slow(ttl)}, fill("a", "v1"), []op{miss("a")}),
			calls: map[string]int{"a": 1}, len: 0,
		},
		"not found is not cached": {
			ops:   []op{fetchFails("a"), miss("a"), set("a", "v1"), fetch("a", "v1"), get("a", "v1")},
			calls: map[string]int{"a": 2}, len: 1, bytes: 2,
		},
		"an error is not cached": {
			ops: []op{set("a", "v1"), {do: "fail"}, fetchFails("a"), fetchFails("a"), miss("a"),
				{do: "heal"}, fetch("a", "v1"), get("a", "v1")},
			calls: map[string]int{"a": 3}, len: 1, bytes: 2,
		},
		"invalidate drops the value": {
			ops:   concat(fill("a", "v1"), fill("b", "w1"), []op{set("a", "v2"), invalidate("a"), miss("a"), get("b", "w1"), fetch("a", "v2")}),
			calls: map[string]int{"a": 2, "b": 1}, len: 2, bytes: 4,
		},
		"invalidate of a key not held": {
			ops:   concat([]op{invalidate("a")}, fill("a", "v1"), []op{get("a", "v1")}),
			calls: map[string]int{"a": 1}, len: 1, bytes: 2,
		},
		"least recently used goes at max_entries": {
			opts: small,
			ops: concat(fill("a", "v1"), fill("b", "w1"), []op{get("a", "v1")}, fill("c", "x1"),
				[]op{miss("b"), get("a", "v1"), get("c", "x1")}),
			calls: map[string]int{"a": 1, "b": 1, "c": 1}, len: 2, bytes: 4,
		},
		"expired go before the least recently used": {
			// a is the most recently used but expired; b the least
			// recently used but live: a goes.
			opts: small,
			ops: concat(fill("a", "v1"), []op{advance(time.Second)}, fill("b", "w1"), []op{advance(time.Second), get("a", "v1"),
				advance(ttl - 2*time.Second)}, fill("c", "x1"), []op{get("b", "w1"), get("c", "x1")}),
			calls: map[string]int{"a": 1, "b": 1, "c": 1}, len: 2, bytes: 4,
		},
		"max_bytes evicts the least recently used": {
			// 64 bytes: values up to 4 bytes; sixteen of them fill it.
			// k00 is used again, so k01 is the least recently used when
			// k16 comes, and the only one to go.
			opts: Options{TTL: ttl, MaxEntries: 100, MaxBytes: 64},
			ops: concat(fillN(0, 16), []op{get("k00", "v-00")}, fillN(16, 17),
				[]op{miss("k01"), get("k00", "v-00"), get("k02", "v-02"), get("k16", "v-16")}),
			calls: map[string]int{"k00": 1, "k01": 1, "k16": 1}, len: 16, bytes: 64,
		},
		"a value over max_bytes/16 is never kept": {
			opts:  Options{TTL: ttl, MaxEntries: 100, MaxBytes: 64},
			ops:   concat(fill("a", "aaaa"), fill("big", "12345"), []op{miss("big"), fetch("big", "12345"), get("a", "aaaa")}),
			calls: map[string]int{"a": 1, "big": 2}, len: 1, bytes: 4,
		},
		"an empty value is a value": {
			ops:   concat(fill("a", ""), []op{get("a", "")}),
			calls: map[string]int{"a": 1}, len: 1, bytes: 0,
		},
		"sweep drops expired values": {
			ops:   concat(fill("a", "v1"), []op{advance(time.Second)}, fill("b", "w1"), []op{advance(ttl - time.Second), {do: "sweep"}}),
			calls: map[string]int{"a": 1, "b": 1}, len: 1, bytes: 2,
		},
		"close drops everything and keeps nothing after": {
			ops:   concat(fill("a", "v1"), []op{{do: "close"}, miss("a"), fetch("a", "v1"), miss("a")}),
			calls: map[string]int{"a": 2}, len: 0,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clk := newClock()
			o := tc.opts
			if o.TTL == 0 {
				o = Options{TTL: ttl, MaxEntries: 1024, MaxBytes: 16 << 20}
			}
			o.Now = clk.Now
			c, err := New[string](o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			b := newBackend(clk)
			for i, op := range tc.ops {
				step := fmt.Sprintf("step %d (%s %s)", i, op.do, op.key)
				switch op.do {
				case "get":
					v, ok := c.Get(op.key)
					if ok == op.miss || ok && string(v) != op.val {
						t.Fatalf("%s: %q %v, want %q, hit %v", step, v, ok, op.val, !op.miss)
					}
				case "fetch":
					v, err := c.Fetch(context.Background(), op.key, b.fetcher(op.key))
					if (err != nil) != op.err || err == nil && string(v) != op.val {
						t.Fatalf("%s: %q %v, want %q, error %v", step, v, err, op.val, op.err)
					}
				case "set":
					b.set(op.key, op.val)
				case "fail":
					b.err = errDown
				case "heal":
					b.err = nil
				case "slow":
					b.took = op.d
				case "advance":
					clk.advance(op.d)
				case "invalidate":
					c.Invalidate(op.key)
				case "sweep":
					c.sweep()
				case "close":
					c.Close()
				default:
					t.Fatalf("%s: unknown op", step)
				}
			}
			for k, n := range tc.calls {
				if b.calls[k] != n {
					t.Errorf("backend calls for %s = %d, want %d (all: %v)", k, b.calls[k], n, b.calls)
				}
			}
			if c.Len() != tc.len || c.Bytes() != tc.bytes {
				t.Errorf("held %d values, %d bytes; want %d, %d", c.Len(), c.Bytes(), tc.len, tc.bytes)
			}
		})
	}
}

func TestNewRefusesNonPositive(t *testing.T) {
	for name, o := range map[string]Options{
		"ttl":         {MaxEntries: 1, MaxBytes: 1},
		"max entries": {TTL: time.Second, MaxBytes: 1},
		"max bytes":   {TTL: time.Second, MaxEntries: 1},
		"negative":    {TTL: -time.Second, MaxEntries: 1, MaxBytes: 1},
	} {
		if _, err := New[string](o); err == nil {
			t.Errorf("%s: New(%+v) succeeded", name, o)
		}
	}
}

// TestCopies: what Get and Fetch return is the caller's (GetResource
// clears it after sealing), and what the cache drops it clears.
func TestCopies(t *testing.T) {
	clk := newClock()
	c, _ := New[string](Options{TTL: ttl, MaxEntries: 10, MaxBytes: 1 << 20, Now: clk.Now})
	defer c.Close()
	b := newBackend(clk)
	b.set("a", "secret")
	tests := map[string]func() ([]byte, error){
		"fetch": func() ([]byte, error) { return c.Fetch(context.Background(), "a", b.fetcher("a")) },
		"get": func() ([]byte, error) {
			v, ok := c.Get("a")
			if !ok {
				return nil, errors.New("miss")
			}
			return v, nil
		},
	}
	for _, name := range []string{"fetch", "get"} {
		t.Run(name, func(t *testing.T) {
			v, err := tests[name]()
			if err != nil {
				t.Fatal(err)
			}
			clear(v)
			if again, ok := c.Get("a"); !ok || string(again) != "secret" {
				t.Fatalf("after the caller cleared its copy the cache holds %q (hit %v)", again, ok)
			}
		})
	}

	drops := []struct {
		name string
		drop func()
	}{
		{"expiry", func() { clk.advance(ttl); c.Get("a") }},
		{"invalidation", func() { c.Invalidate("a") }},
		{"eviction", func() {
			for i := range 10 {
				k := fmt.Sprint("k", i)
				b.set(k, "x")
				_, _ = c.Fetch(context.Background(), k, b.fetcher(k))
			}
		}},
		{"close", c.Close}, // last: nothing is held after it
	}
	for _, d := range drops {
		t.Run(d.name, func(t *testing.T) {
			if _, err := c.Fetch(context.Background(), "a", b.fetcher("a")); err != nil {
				t.Fatal(err)
			}
			held := c.entries["a"].value
			d.drop()
			if !bytes.Equal(held, make([]byte, len("secret"))) {
				t.Errorf("%s left the dropped value's bytes as %q, want them zeroed", d.name, held)
			}
		})
	}
}

// gate is a backend call that blocks until released, reading the value it
// returns when it begins (as a backend reads a file before a slow reply).
type gate struct {
	mu      sync.Mutex
	val     string
	calls   atomic.Int32
	started chan struct{} // one send per call
	release chan struct{}
	ctxErr  atomic.Value // the call's ctx.Err() when released
}

func newGate(val string) *gate {
	return &gate{val: val, started: make(chan struct{}, 100), release: make(chan struct{})}
}

func (g *gate) fetch(ctx context.Context) ([]byte, error) {
	g.calls.Add(1)
	g.mu.Lock()
	v := g.val
	g.mu.Unlock()
	g.started <- struct{}{}
	<-g.release
	g.ctxErr.Store(fmt.Sprint(ctx.Err()))
	return []byte(v), nil
}

func (g *gate) set(v string) {
	g.mu.Lock()
	g.val = v
	g.mu.Unlock()
}

// waiters blocks until n callers wait on k's call.
func waiters[K comparable](t *testing.T, c *Cache[K], k K, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		f := c.flights[k]
		got := 0
		if f != nil {
			got = f.refs - 1
		}
		c.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers wait for the call, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

type result struct {
	val string
	err error
}

func TestConcurrentMisses(t *testing.T) {
	tests := map[string]struct {
		callers int
		// cancel is how many callers (the first one, which started the
		// call, among them) give up before the call ends.
		cancel int
	}{
		"one call for many":                       {callers: 50},
		"the caller that started the call leaves": {callers: 5, cancel: 1},
		"all but one leave":                       {callers: 5, cancel: 4},
		"all leave":                               {callers: 3, cancel: 3},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, _ := New[string](Options{TTL: time.Minute, MaxEntries: 10, MaxBytes: 1 << 20})
			defer c.Close()
			g := newGate("v1")
			results := make(chan result, tc.callers)
			cancels := make([]context.CancelFunc, tc.callers)
			for i := range tc.callers {
				ctx, cancel := context.WithCancel(context.Background())
				cancels[i] = cancel
				go func() {
					v, err := c.Fetch(ctx, "a", g.fetch)
					results <- result{string(v), err}
				}()
				if i == 0 {
					<-g.started // the first caller starts the call
				}
			}
			waiters(t, c, "a", tc.callers)
			for i := range tc.cancel {
				cancels[i]()
			}
			for range tc.cancel {
				if r := <-results; !errors.Is(r.err, context.Canceled) {
					t.Errorf("a caller that gave up got %q, %v; want context.Canceled", r.val, r.err)
				}
			}
			close(g.release)
			for range tc.callers - tc.cancel {
				if r := <-results; r.err != nil || r.val != "v1" {
					t.Errorf("a waiting caller got %q, %v; want v1", r.val, r.err)
				}
			}
			if n := g.calls.Load(); n != 1 {
				t.Errorf("%d backend calls, want 1", n)
			}
			// The call finishes for the cache even if every caller left.
			deadline := time.Now().Add(5 * time.Second)
			for c.Len() == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if v, ok := c.Get("a"); !ok || string(v) != "v1" {
				t.Errorf("after the call the cache holds %q (hit %v), want v1", v, ok)
			}
			if e := g.ctxErr.Load(); e != "<nil>" {
				t.Errorf("the shared call's context ended (%v) when a caller left", e)
			}
			for _, cancel := range cancels {
				cancel()
			}
		})
	}
}

// TestInvalidateDuringFetch: a write through this host invalidates before
// and after writing; a read that began before the write, and read the old
// value, must not leave it in the cache.
func TestInvalidateDuringFetch(t *testing.T) {
	tests := map[string]struct {
		// before and after say which of the writer's two invalidations
		// happen; the read started before the write and ends after it.
		before, after bool
		wantHeld      string // "" for nothing held
	}{
		"before and after": {before: true, after: true},
		"before only":      {before: true},
		"after only":       {after: true},
		// Without invalidation the stale read would be kept: this case
		// shows that the test can fail.
		"neither": {wantHeld: "old"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, _ := New[string](Options{TTL: time.Minute, MaxEntries: 10, MaxBytes: 1 << 20})
			defer c.Close()
			g := newGate("old")
			stale := make(chan result, 1)
			go func() {
				v, err := c.Fetch(context.Background(), "a", g.fetch)
				stale <- result{string(v), err}
			}()
			<-g.started // the read has fetched "old"
			if tc.before {
				c.Invalidate("a")
			}
			g.set("new") // the backend write
			if tc.after {
				c.Invalidate("a")
			}
			// A read after the write does not join the stale call.
			fresh := make(chan result, 1)
			if tc.before || tc.after {
				go func() {
					v, err := c.Fetch(context.Background(), "a", g.fetch)
					fresh <- result{string(v), err}
				}()
				<-g.started
			}
			close(g.release)
			if r := <-stale; r.err != nil || r.val != "old" {
				t.Fatalf("the read that overlapped the write got %q, %v; want old", r.val, r.err)
			}
			if tc.before || tc.after {
				if r := <-fresh; r.err != nil || r.val != "new" {
					t.Fatalf("the read after the write got %q, %v; want new", r.val, r.err)
				}
				if n := g.calls.Load(); n != 2 {
					t.Errorf("%d backend calls, want 2 (the read after the write makes its own)", n)
				}
				if v, ok := c.Get("a"); !ok || string(v) != "new" {
					t.Errorf("held %q (hit %v), want new", v, ok)
				}
				return
			}
			if v, _ := c.Get("a"); string(v) != tc.wantHeld {
				t.Errorf("held %q, want %q", v, tc.wantHeld)
			}
		})
	}
}

// TestInvalidateRacesWithReads hammers one key with reads and writes
// (for the race detector), and checks that once a writer's second
// invalidation returns no read ever sees an older value.
func TestInvalidateRacesWithReads(t *testing.T) {
	c, _ := New[string](Options{TTL: time.Minute, MaxEntries: 10, MaxBytes: 1 << 20})
	defer c.Close()
	var version atomic.Int64 // the backend's value
	var written atomic.Int64 // the last version whose write has fully returned
	fetch := func(context.Context) ([]byte, error) {
		v := version.Load()
		time.Sleep(time.Duration(v%3) * 100 * time.Microsecond)
		return []byte(fmt.Sprint(v)), nil
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bad atomic.Value
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				floor := written.Load()
				v, ok := c.Get("a")
				if !ok {
					var err error
					if v, err = c.Fetch(context.Background(), "a", fetch); err != nil {
						bad.Store(err.Error())
						return
					}
				}
				var got int64
				fmt.Sscan(string(v), &got)
				if got < floor {
					bad.Store(fmt.Sprintf("read version %d after version %d was written", got, floor))
				}
			}
		})
	}
	for i := int64(1); i <= 300; i++ {
		c.Invalidate("a")
		version.Store(i)
		c.Invalidate("a")
		written.Store(i)
		time.Sleep(50 * time.Microsecond)
	}
	close(stop)
	wg.Wait()
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
}

func TestSweeperClearsUnaskedValues(t *testing.T) {
	c, _ := New[string](Options{TTL: 30 * time.Millisecond, MaxEntries: 10, MaxBytes: 1 << 20})
	defer c.Close()
	if _, err := c.Fetch(context.Background(), "a", func(context.Context) ([]byte, error) { return []byte("v"), nil }); err != nil {
		t.Fatal(err)
	}
	held := c.entries["a"].value
	deadline := time.Now().Add(5 * time.Second)
	for c.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("an expired value nobody asked for is still held after 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if held[0] != 0 {
		t.Errorf("the swept value was not cleared: %q", held)
	}
}

func TestFetchPanicIsAnError(t *testing.T) {
	c, _ := New[string](Options{TTL: time.Minute, MaxEntries: 10, MaxBytes: 1 << 20})
	defer c.Close()
	_, err := c.Fetch(context.Background(), "a", func(context.Context) ([]byte, error) { panic("boom") })
	if err == nil || c.Len() != 0 {
		t.Fatalf("a panicking fetch: %v, %d held; want an error and nothing held", err, c.Len())
	}
}

func BenchmarkGetHit(b *testing.B) {
	c, _ := New[resource.Path](Options{TTL: time.Hour, MaxEntries: 1024, MaxBytes: 16 << 20})
	defer c.Close()
	p := resource.Path{Repo: "default", Type: "key", Tag: "disk-passphrase"}
	val := bytes.Repeat([]byte("s"), 64)
	if _, err := c.Fetch(context.Background(), p, func(context.Context) ([]byte, error) { return bytes.Clone(val), nil }); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		v, ok := c.Get(p)
		if !ok {
			b.Fatal("miss")
		}
		clear(v)
	}
}
