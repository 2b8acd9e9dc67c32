package session

import (
	"context"
	"sync"
	"time"
)

// Memory is an in-process Store with expiry and a bound on live sessions.
type Memory struct {
	mu       sync.Mutex
	sessions map[string]*entry
	max      int
	now      func() time.Time
	stop     chan struct{}
	stopOnce sync.Once
	// lastFullSweep is when Create last swept because the store was full.
	lastFullSweep time.Time
}

// fullSweepEvery bounds how often Create sweeps a full store: a sweep walks
// every session under the lock, and an auth flood against a full store
// must not pay that walk on every refused call.
const fullSweepEvery = time.Second

type entry struct {
	s        Session
	consumed bool
}

// NewMemory returns a store that holds at most max sessions and sweeps
// expired ones every sweepEvery.
func NewMemory(max int, sweepEvery time.Duration) *Memory {
	m := &Memory{sessions: make(map[string]*entry), max: max, now: time.Now, stop: make(chan struct{})}
	if sweepEvery > 0 {
		go m.sweepLoop(sweepEvery)
	}
	return m
}

// Close stops the sweeper.
func (m *Memory) Close() { m.stopOnce.Do(func() { close(m.stop) }) }

func (m *Memory) sweepLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.Sweep()
		}
	}
}

// Sweep drops expired sessions and returns how many are left.
func (m *Memory) Sweep() int {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, e := range m.sessions {
		if !now.Before(e.s.ExpiresAt) {
			delete(m.sessions, id)
		}
	}
	return len(m.sessions)
}

// Len returns the number of sessions held, expired ones included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

func (m *Memory) Create(_ context.Context, s *Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.sessions) >= m.max {
		// Expired sessions still count until swept; sweep inline (at most
		// once per fullSweepEvery) before refusing, so a burst after a
		// quiet period is not refused.
		now := m.now()
		if now.Sub(m.lastFullSweep) < fullSweepEvery {
			return ErrFull
		}
		m.lastFullSweep = now
		for id, e := range m.sessions {
			if !now.Before(e.s.ExpiresAt) {
				delete(m.sessions, id)
			}
		}
		if len(m.sessions) >= m.max {
			return ErrFull
		}
	}
	m.sessions[s.ID] = &entry{s: *s}
	return nil
}

// live returns the entry for id if it has not expired; m.mu must be held.
func (m *Memory) live(id string) (*entry, bool) {
	e, ok := m.sessions[id]
	if !ok {
		return nil, false
	}
	if !m.now().Before(e.s.ExpiresAt) {
		delete(m.sessions, id)
		return nil, false
	}
	return e, true
}

func (m *Memory) Get(_ context.Context, id string) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.live(id)
	if !ok {
		return nil, ErrNotFound
	}
	s := e.s
	return &s, nil
}

func (m *Memory) ConsumeNonce(_ context.Context, id string) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.live(id)
	if !ok {
		return nil, ErrNotFound
	}
	if e.consumed || e.s.State != Authed {
		return nil, ErrNonceUsed
	}
	e.consumed = true
	s := e.s
	return &s, nil
}

func (m *Memory) Attest(_ context.Context, id, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.live(id)
	if !ok {
		return ErrNotFound
	}
	e.s.State = Attested
	e.s.Token = token
	return nil
}

func (m *Memory) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, id)
	return nil
}
