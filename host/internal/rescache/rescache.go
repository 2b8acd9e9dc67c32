// Package rescache keeps resource values for a few seconds in front of the
// resource backends.
//
// Every backend call crosses into a plugin process (a gRPC call costing
// both processes CPU) and, for remote backends, costs a network round
// trip and a share of the vault's throttling budget. A cluster scaling
// from 0 to 1,000 pods asks for the same few secrets 1,000 times within
// seconds: a short-lived cache turns those into one backend call per
// secret and ttl, and concurrent misses for one secret share one call.
//
// The cache holds only values: the resource policy is evaluated and the
// value sealed to the guest's key on every request, by the caller, and a
// value changed outside this process is served for at most the ttl.
package rescache

import (
	"bytes"
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"
)

// Options bound the cache.
type Options struct {
	// TTL is how long a value is served after the backend call that
	// fetched it began. It must be positive.
	TTL time.Duration
	// MaxEntries and MaxBytes bound the values held; a value larger than
	// MaxBytes/16 is never held, so that one large secret cannot push out
	// all the small ones.
	MaxEntries int
	MaxBytes   int64
	// Now is the clock; nil is time.Now. Tests pass a fake one.
	Now func() time.Time
}

// minSweep is the least delay between two sweeps of expired values, so
// that a clock that does not move (a test's) cannot make the sweeper spin.
const minSweep = 10 * time.Millisecond

// Cache maps keys to byte values for a short time.
//
// Get hands out copies: a caller may clear() what it got, and the cache
// clears a value's own bytes when it drops it (expiry, eviction,
// invalidation, Close), so that a secret does not linger in freed memory.
type Cache[K comparable] struct {
	ttl        time.Duration
	maxEntries int
	maxBytes   int64
	maxValue   int64
	now        func() time.Time

	mu      sync.Mutex
	entries map[K]*entry[K]
	// lru holds the entries most recently used first; byExpiry holds them
	// soonest to expire first, so that expired ones go before any live one
	// and the sweeper finds them without a scan.
	lru      list.List
	byExpiry list.List
	bytes    int64
	flights  map[K]*flight
	armed    bool // a sweep is scheduled
	sweeper  *time.Timer
	closed   bool
}

type entry[K comparable] struct {
	key     K
	value   []byte
	expires time.Time
	lruEl   *list.Element
	expEl   *list.Element
}

// flight is one backend call that concurrent misses for one key share.
type flight struct {
	done chan struct{}
	// val and err are set before done is closed and not changed after.
	val []byte
	err error
	// Guarded by Cache.mu:
	// stale is set when the key is invalidated during the call: the value
	// may predate a write, so it is handed to the callers already waiting
	// (their requests overlapped the write) but not kept.
	stale bool
	// refs counts the waiters plus the call itself; the last one to let
	// go clears val.
	refs int
}

// New returns an empty cache.
func New[K comparable](o Options) (*Cache[K], error) {
	if o.TTL <= 0 || o.MaxEntries <= 0 || o.MaxBytes <= 0 {
		return nil, fmt.Errorf("rescache: ttl (%s), max entries (%d) and max bytes (%d) must be positive", o.TTL, o.MaxEntries, o.MaxBytes)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &Cache[K]{
		ttl:        o.TTL,
		maxEntries: o.MaxEntries,
		maxBytes:   o.MaxBytes,
		maxValue:   o.MaxBytes / 16,
		now:        now,
		entries:    make(map[K]*entry[K]),
		flights:    make(map[K]*flight),
	}, nil
}

// Get returns a copy of k's value if it is held and unexpired. It never
// calls the backend: on a miss the caller goes on to Fetch.
func (c *Cache[K]) Get(k K) ([]byte, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil, false
	}
	if !now.Before(e.expires) {
		c.remove(e)
		return nil, false
	}
	c.lru.MoveToFront(e.lruEl)
	// Copied under the lock: an eviction clears the held bytes.
	return bytes.Clone(e.value), true
}

// Fetch returns a copy of k's value, calling fetch on a miss. Concurrent
// Fetches of one key share one call. fetch runs detached from the caller's
// cancellation (it keeps ctx's values), so that one caller giving up does
// not fail the others who wait for the same call; fetch must therefore
// bound itself (the plugin proxy applies plugins.call_timeout). A caller
// whose ctx ends stops waiting and gets ctx's error.
//
// Only successful values are kept: an error (not found included) reaches
// the callers of that call and is not remembered.
func (c *Cache[K]) Fetch(ctx context.Context, k K, fetch func(context.Context) ([]byte, error)) ([]byte, error) {
	now := c.now()
	c.mu.Lock()
	if e, ok := c.entries[k]; ok {
		// Filled by a call that ended since the caller's Get.
		if now.Before(e.expires) {
			c.lru.MoveToFront(e.lruEl)
			v := bytes.Clone(e.value)
			c.mu.Unlock()
			return v, nil
		}
		c.remove(e)
	}
	f, ok := c.flights[k]
	if !ok {
		f = &flight{done: make(chan struct{}), refs: 1}
		c.flights[k] = f
		go c.run(context.WithoutCancel(ctx), k, f, fetch, now)
	}
	f.refs++
	c.mu.Unlock()

	select {
	case <-f.done:
		var v []byte
		if f.err == nil {
			v = bytes.Clone(f.val)
		}
		c.release(f)
		return v, f.err
	case <-ctx.Done():
		c.release(f)
		return nil, fmt.Errorf("waiting for the resource backend: %w", context.Cause(ctx))
	}
}

// run makes a flight's call and publishes its outcome. started is when the
// call began: a value is served for ttl from then, since the backend may
// have read it at any moment of the call.
func (c *Cache[K]) run(ctx context.Context, k K, f *flight, fetch func(context.Context) ([]byte, error), started time.Time) {
	val, err := call(ctx, fetch)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flights[k] == f {
		delete(c.flights, k)
	}
	if err == nil && !f.stale && !c.closed && int64(len(val)) <= c.maxValue {
		c.insert(k, bytes.Clone(val), started.Add(c.ttl))
	}
	f.val, f.err = val, err
	close(f.done)
	c.unref(f)
}

// call runs fetch, turning a panic into an error: it runs on a goroutine
// of its own, where a panic would end the process rather than one request.
func call(ctx context.Context, fetch func(context.Context) ([]byte, error)) (val []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			val, err = nil, fmt.Errorf("rescache: resource fetch panicked: %v", r)
		}
	}()
	return fetch(ctx)
}

func (c *Cache[K]) release(f *flight) {
	c.mu.Lock()
	c.unref(f)
	c.mu.Unlock()
}

// unref drops one reference to f; the call holds one until it has
// published, so the last reference is always dropped after done.
func (c *Cache[K]) unref(f *flight) {
	f.refs--
	if f.refs == 0 {
		clear(f.val)
	}
}

// Invalidate drops k's value and makes a call for k that is under way
// unable to store what it read. A writer calls it both before and after
// writing to the backend: the call before stops reads of the old value
// that start before the write from being kept, the call after those that
// raced with the write. A Fetch after Invalidate returns makes a call of
// its own.
func (c *Cache[K]) Invalidate(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		c.remove(e)
	}
	if f, ok := c.flights[k]; ok {
		f.stale = true
		delete(c.flights, k)
	}
}

// Len and Bytes report what is held (expired values included until they
// are swept).
func (c *Cache[K]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Bytes is the total size of the values held.
func (c *Cache[K]) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Close clears and drops every value and stops the sweeper; the cache
// keeps nothing afterwards (Fetch still works, uncached).
func (c *Cache[K]) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.sweeper != nil {
		c.sweeper.Stop()
	}
	for _, e := range c.entries {
		c.remove(e)
	}
}

// insert holds v for k until expires, making room first: expired values,
// then the least recently used. Called with c.mu held.
func (c *Cache[K]) insert(k K, v []byte, expires time.Time) {
	if old, ok := c.entries[k]; ok {
		c.remove(old)
	}
	now := c.now()
	if !now.Before(expires) {
		clear(v) // the call outlasted the ttl
		return
	}
	c.expire(now)
	size := int64(len(v))
	for len(c.entries) > 0 && (len(c.entries) >= c.maxEntries || c.bytes+size > c.maxBytes) {
		c.remove(c.lru.Back().Value.(*entry[K]))
	}
	e := &entry[K]{key: k, value: v, expires: expires}
	e.lruEl = c.lru.PushFront(e)
	// Calls that began earlier usually end earlier: the right place is
	// almost always the back.
	at := c.byExpiry.Back()
	for at != nil && at.Value.(*entry[K]).expires.After(expires) {
		at = at.Prev()
	}
	if at == nil {
		e.expEl = c.byExpiry.PushFront(e)
	} else {
		e.expEl = c.byExpiry.InsertAfter(e, at)
	}
	c.entries[k] = e
	c.bytes += size
	c.arm(now)
}

// expire drops the values expired at now. Called with c.mu held.
func (c *Cache[K]) expire(now time.Time) {
	for el := c.byExpiry.Front(); el != nil; el = c.byExpiry.Front() {
		e := el.Value.(*entry[K])
		if now.Before(e.expires) {
			return
		}
		c.remove(e)
	}
}

// remove drops e and clears its bytes. Called with c.mu held.
func (c *Cache[K]) remove(e *entry[K]) {
	delete(c.entries, e.key)
	c.lru.Remove(e.lruEl)
	c.byExpiry.Remove(e.expEl)
	c.bytes -= int64(len(e.value))
	clear(e.value)
	e.value = nil
}

// arm schedules a sweep for when the soonest value expires, so that an
// expired secret is cleared from memory even if nobody asks for it again.
// Called with c.mu held.
func (c *Cache[K]) arm(now time.Time) {
	front := c.byExpiry.Front()
	if c.armed || c.closed || front == nil {
		return
	}
	d := max(front.Value.(*entry[K]).expires.Sub(now), minSweep)
	c.armed = true
	if c.sweeper == nil {
		c.sweeper = time.AfterFunc(d, c.sweep)
	} else {
		c.sweeper.Reset(d)
	}
}

func (c *Cache[K]) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	now := c.now()
	c.expire(now)
	c.arm(now)
}
