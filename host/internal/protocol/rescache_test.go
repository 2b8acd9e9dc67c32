package protocol

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbserr"
	"github.com/gokbs/kbs/host/internal/rescache"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
)

// countingBackend is a fakeBackend that counts Gets and can fail writes
// after making them, as a call that times out after the write landed.
type countingBackend struct {
	mu        sync.Mutex
	vals      fakeBackend
	gets      int
	failWrite bool
}

func (b *countingBackend) Get(ctx context.Context, p resource.Path) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gets++
	return b.vals.Get(ctx, p)
}

func (b *countingBackend) Put(ctx context.Context, p resource.Path, d []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.vals.Put(ctx, p, d)
	if b.failWrite {
		return sdk.Unavailable("timed out after writing")
	}
	return nil
}

func (b *countingBackend) Delete(ctx context.Context, p resource.Path) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.vals[p.String()]; !ok {
		return sdk.NotFound("no %s", p)
	}
	_ = b.vals.Delete(ctx, p)
	if b.failWrite {
		return sdk.Unavailable("timed out after deleting")
	}
	return nil
}

func (b *countingBackend) List(context.Context, string) ([]resource.Path, error) { return nil, nil }

// set changes a value behind the broker's back (another replica, the
// backend itself).
func (b *countingBackend) set(p, v string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.vals[p] = []byte(v)
}

// countingPolicy counts decisions; allow can change between requests.
type countingPolicy struct {
	allow bool
	calls int
}

func (c *countingPolicy) Allow(context.Context, map[string]any, string, []string, map[string]string) (Decision, error) {
	c.calls++
	return Decision{Allowed: c.allow, PolicyID: "test"}, nil
}

type observed struct{ hits, misses, released, denied int }

func (o *observed) Attestation(string, string) {}
func (o *observed) Resource(released bool) {
	if released {
		o.released++
	} else {
		o.denied++
	}
}

func (o *observed) ResourceCache(hit bool) {
	if hit {
		o.hits++
	} else {
		o.misses++
	}
}

// TestGetResourceCache runs one guest's requests, in order, through a
// Service with a cache: every step names what it checks.
func TestGetResourceCache(t *testing.T) {
	s, pl := newService(t)
	ctx := context.Background()
	be := &countingBackend{vals: fakeBackend{"default/key/x": []byte("secret")}}
	pl.backend = be
	pol := &countingPolicy{allow: true}
	obs := &observed{}
	s.ResourcePolicy, s.Observe = pol, obs
	cache, err := rescache.New[resource.Path](rescache.Options{TTL: time.Hour, MaxEntries: 10, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Close)
	s.Cache = cache

	k, _ := guest.NewKey(guest.KindECP256)
	ch, sess, err := s.Auth(ctx, []byte(`{"version":"0.4.0","tee":"sample"}`))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Attest(ctx, sess.ID, attestBody(t, ch.Nonce, k, "", nil))
	if err != nil {
		t.Fatal(err)
	}
	x, _ := ParseResourcePath("default/key/x")
	// get fetches x as the guest and returns the plaintext, or the error's
	// kind.
	get := func() (string, kbserr.Kind) {
		resp, err := s.GetResource(ctx, Credentials{Bearer: tok}, x, nil)
		if err != nil {
			return "", kindOf(err)
		}
		body, _ := json.Marshal(resp)
		plain, err := k.DecryptJSON(body)
		if err != nil {
			t.Fatalf("decrypt: %v", err)
		}
		return string(plain), -1
	}
	type counts struct{ gets, policy, hits, misses int }
	steps := []struct {
		name   string
		action func()
		want   string      // the plaintext, "" on an error
		kind   kbserr.Kind // the error's kind, -1 for none
		counts counts      // totals after the step
	}{
		{"first request asks the backend", nil, "secret", -1, counts{gets: 1, policy: 1, misses: 1}},
		{"second is a hit, policy evaluated again", nil, "secret", -1, counts{gets: 1, policy: 2, hits: 1, misses: 1}},
		{"out-of-band change unseen within ttl", func() { be.set("default/key/x", "changed") }, "secret", -1, counts{gets: 1, policy: 3, hits: 2, misses: 1}},
		{"policy denies a cached value", func() { pol.allow = false }, "", kbserr.Forbidden, counts{gets: 1, policy: 4, hits: 2, misses: 1}},
		{"admin put is seen at once", func() {
			pol.allow = true
			if err := s.PutResource(ctx, x, []byte("v2")); err != nil {
				t.Fatal(err)
			}
		}, "v2", -1, counts{gets: 2, policy: 5, hits: 2, misses: 2}},
		{"and cached again", nil, "v2", -1, counts{gets: 2, policy: 6, hits: 3, misses: 2}},
		{"a put that fails still invalidates", func() {
			be.failWrite = true
			if err := s.PutResource(ctx, x, []byte("v3")); kindOf(err) != kbserr.Unavailable {
				t.Fatalf("failing put: %v", err)
			}
			be.failWrite = false
		}, "v3", -1, counts{gets: 3, policy: 7, hits: 3, misses: 3}},
		{"admin delete is seen at once", func() {
			if err := s.DeleteResource(ctx, x); err != nil {
				t.Fatal(err)
			}
		}, "", kbserr.NotFound, counts{gets: 4, policy: 8, hits: 3, misses: 4}},
		{"not found is not cached", func() { be.set("default/key/x", "back") }, "back", -1, counts{gets: 5, policy: 9, hits: 3, misses: 5}},
		{"a delete that fails still invalidates", func() {
			be.failWrite = true
			if err := s.DeleteResource(ctx, x); kindOf(err) != kbserr.Unavailable {
				t.Fatalf("failing delete: %v", err)
			}
			be.failWrite = false
		}, "", kbserr.NotFound, counts{gets: 6, policy: 10, hits: 3, misses: 6}},
		{"backend down and value not held is 503", func() { pl.down = true }, "", kbserr.Unavailable, counts{gets: 6, policy: 11, hits: 3, misses: 7}},
		{"cache off asks the backend every time", func() {
			pl.down = false
			be.set("default/key/x", "uncached")
			s.Cache = nil
		}, "uncached", -1, counts{gets: 7, policy: 12, hits: 3, misses: 7}},
	}
	// Each step builds on the ones before: stop at the first failure.
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			if st.action != nil {
				st.action()
			}
			got, kind := get()
			if got != st.want || kind != st.kind {
				t.Fatalf("got %q (kind %d), want %q (kind %d)", got, kind, st.want, st.kind)
			}
			if c := (counts{be.gets, pol.calls, obs.hits, obs.misses}); c != st.counts {
				t.Fatalf("backend gets, policy calls, hits, misses = %+v, want %+v", c, st.counts)
			}
		})
		if !ok {
			break
		}
	}
	if obs.denied != 1 {
		t.Errorf("denials observed = %d, want 1", obs.denied)
	}
}
