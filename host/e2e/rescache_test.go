package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbsclient"
)

// cachedGuest is one attested guest that fetches many times over one
// session, so that a fetch costs a request, not a handshake: the ttl
// checks below need fetches close together.
type cachedGuest struct {
	t *testing.T
	k *guest.Key
	c *kbsclient.Client
}

func newCachedGuest(t *testing.T, url string) *cachedGuest {
	t.Helper()
	k, err := guest.NewKey(guest.KindECP256)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := handshake(t, url, k)
	return &cachedGuest{t: t, k: k, c: c}
}

// get returns the plaintext of path and 200, or "" and the HTTP status.
func (g *cachedGuest) get(path string) (string, int) {
	g.t.Helper()
	body, err := g.c.GetResource(context.Background(), path, "")
	if err != nil {
		if st := kbsclient.StatusOf(err); st != 0 {
			return "", st
		}
		g.t.Fatal(err)
	}
	plain, err := g.k.DecryptJSON(body)
	if err != nil {
		g.t.Fatal(err)
	}
	return string(plain), 200
}

// cacheCounts reads kbs_resource_cache_total.
func cacheCounts(t *testing.T, url string) (hits, misses float64) {
	t.Helper()
	return metric(t, url, `kbs_resource_cache_total{result="hit"}`), metric(t, url, `kbs_resource_cache_total{result="miss"}`)
}

// TestResourceCache: the resource cache through the real daemon and the
// real fs plugin. A change behind the plugin's back is seen after at most
// the ttl; a change through this host's admin API at once; with ttl 0 at
// once; /metrics counts the hits and misses.
func TestResourceCache(t *testing.T) {
	t.Run("out-of-band change seen after the ttl", func(t *testing.T) {
		const ttl = 300 * time.Millisecond
		br := startDevEnv(t, "", []string{"KBS_RESOURCE_CACHE__TTL=" + ttl.String()})
		g := newCachedGuest(t, br.URL)
		if h, m := cacheCounts(t, br.URL); h != 0 || m != 0 {
			t.Fatalf("before any fetch: %v hits, %v misses; want both series at 0", h, m)
		}
		// The second fetch must come within the ttl of the first for its
		// answer to say anything; on a machine too slow for that, try
		// again on a fresh path.
		var path string
		for attempt := 0; ; attempt++ {
			path = "default/key/oob" + strings.Repeat("x", attempt)
			writeResource(t, br.DevDir, path, []byte("old value"))
			start := time.Now()
			if got, st := g.get(path); st != 200 || got != "old value" {
				t.Fatalf("first fetch = %q %d", got, st)
			}
			writeResource(t, br.DevDir, path, []byte("new value"))
			got, st := g.get(path)
			if took := time.Since(start); took >= ttl {
				if attempt == 2 {
					t.Fatalf("two fetches took %s, longer than the %s ttl, three times: the machine is too slow for this test", took, ttl)
				}
				t.Logf("two fetches took %s, longer than the ttl; again", took)
				continue
			}
			if st != 200 || got != "old value" {
				t.Fatalf("fetch within the ttl of a change behind the plugin's back = %q %d, want the cached old value", got, st)
			}
			break
		}
		time.Sleep(ttl + 50*time.Millisecond)
		if got, st := g.get(path); st != 200 || got != "new value" {
			t.Fatalf("fetch after the ttl = %q %d, want the new value", got, st)
		}
		hits, misses := cacheCounts(t, br.URL)
		if hits < 1 || misses < 2 {
			t.Errorf("kbs_resource_cache_total: %v hits, %v misses; want at least 1 and 2", hits, misses)
		}
		// Every release was a hit or a miss, and only a miss asked fs.
		if rel := metric(t, br.URL, `kbs_resource_decisions_total{decision="released"}`); hits+misses != rel {
			t.Errorf("%v hits and %v misses for %v released resources", hits, misses, rel)
		}
		if gets := metric(t, br.URL, fsGets); gets != misses {
			t.Errorf("fs Get calls = %v, want one per miss (%v)", gets, misses)
		}
		if got, st := g.get(path); st != 200 || got != "new value" {
			t.Fatalf("fetch after the refill = %q %d", got, st)
		}
		if h, m := cacheCounts(t, br.URL); h != hits+1 || m != misses {
			t.Errorf("after one more fetch: %v hits, %v misses; want %v and %v", h, m, hits+1, misses)
		}
		for _, v := range []string{"old value", "new value"} {
			if strings.Contains(br.logs.String(), v) {
				t.Errorf("the broker's log holds the value %q", v)
			}
		}
	})

	t.Run("admin writes and deletes seen at once", func(t *testing.T) {
		// A ttl far longer than the test: only invalidation can explain
		// a new value.
		br := startDevEnv(t, "", []string{"KBS_RESOURCE_CACHE__TTL=1h"})
		ctx := context.Background()
		adm := adminClient(t, br)
		g := newCachedGuest(t, br.URL)
		const path = "default/key/admin"
		steps := []struct {
			name   string
			change func() error
			want   string
			status int
		}{
			{"set", func() error { return adm.SetResource(ctx, path, []byte("v1")) }, "v1", 200},
			{"cached", nil, "v1", 200},
			{"set again", func() error { return adm.SetResource(ctx, path, []byte("v2")) }, "v2", 200},
			{"cached again", nil, "v2", 200},
			{"delete", func() error { return adm.DeleteResource(ctx, path) }, "", 404},
			{"not found is not cached", func() error { writeResource(t, br.DevDir, path, []byte("v3")); return nil }, "v3", 200},
		}
		for _, s := range steps {
			if s.change != nil {
				if err := s.change(); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
			}
			if got, st := g.get(path); st != s.status || got != s.want {
				t.Fatalf("%s, then fetch = %q %d; want %q %d", s.name, got, st, s.want, s.status)
			}
		}
		if h, m := cacheCounts(t, br.URL); h != 2 || m != 4 {
			t.Errorf("kbs_resource_cache_total: %v hits, %v misses; want 2 and 4", h, m)
		}
	})

	t.Run("ttl 0 turns the cache off", func(t *testing.T) {
		br := startDevEnv(t, "", []string{"KBS_RESOURCE_CACHE__TTL=0s"})
		g := newCachedGuest(t, br.URL)
		const path = "default/key/uncached"
		for _, v := range []string{"one", "two", "three"} {
			writeResource(t, br.DevDir, path, []byte(v))
			if got, st := g.get(path); st != 200 || got != v {
				t.Fatalf("fetch right after writing %q = %q %d", v, got, st)
			}
		}
		if h, m := cacheCounts(t, br.URL); h != 0 || m != 0 {
			t.Errorf("kbs_resource_cache_total with the cache off: %v hits, %v misses; want 0", h, m)
		}
		if got := metric(t, br.URL, fsGets); got != 3 {
			t.Errorf("fs Get calls = %v, want 3: one per fetch", got)
		}
	})
}

// fsGets counts the fs backend's successful Get calls.
const fsGets = `kbs_plugin_calls_total{method="Get",outcome="ok",plugin="resource/fs"}`
