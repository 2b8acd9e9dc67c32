package akv

import (
	"sync"
	"time"
)

// cache holds recently read secret values for a short time, so that a
// burst of guests asking for the same secret costs one Key Vault call (and
// stays under Key Vault's request throttling).
type cache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[string]entry
}

type entry struct {
	data    []byte
	expires time.Time
}

func newCache(ttl time.Duration, max int) *cache {
	return &cache{ttl: ttl, max: max, now: time.Now, entries: map[string]entry{}}
}

// get returns a copy: callers may clear what they are given.
func (c *cache) get(name string) ([]byte, bool) {
	if c.ttl <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[name]
	if !ok {
		return nil, false
	}
	if !c.now().Before(e.expires) {
		clear(e.data)
		delete(c.entries, name)
		return nil, false
	}
	return append([]byte(nil), e.data...), true
}

func (c *cache) put(name string, data []byte) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				clear(e.data)
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			for k, e := range c.entries {
				clear(e.data)
				delete(c.entries, k)
			}
		}
	}
	c.entries[name] = entry{data: append([]byte(nil), data...), expires: now.Add(c.ttl)}
}

func (c *cache) drop(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[name]; ok {
		clear(e.data)
		delete(c.entries, name)
	}
}
