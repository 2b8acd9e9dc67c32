package session

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMemoryLifecycle(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	m := NewMemory(10, 0)
	m.now = func() time.Time { return now }
	s := &Session{ID: NewID(), TEE: "sample", Nonce: "n", ExpiresAt: now.Add(time.Minute)}
	if err := m.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		run  func() error
		want error
	}{
		{"get live", func() error { _, err := m.Get(ctx, s.ID); return err }, nil},
		{"get unknown", func() error { _, err := m.Get(ctx, NewID()); return err }, ErrNotFound},
		{"consume once", func() error { _, err := m.ConsumeNonce(ctx, s.ID); return err }, nil},
		{"consume twice", func() error { _, err := m.ConsumeNonce(ctx, s.ID); return err }, ErrNonceUsed},
		{"attest", func() error { return m.Attest(ctx, s.ID, "tok") }, nil},
		{"consume after attest", func() error { _, err := m.ConsumeNonce(ctx, s.ID); return err }, ErrNonceUsed},
		{"token kept", func() error {
			got, err := m.Get(ctx, s.ID)
			if err == nil && (got.State != Attested || got.Token != "tok") {
				return errors.New("token not recorded")
			}
			return err
		}, nil},
		{"expired", func() error { now = now.Add(time.Minute); _, err := m.Get(ctx, s.ID); return err }, ErrNotFound},
	}
	for _, st := range steps {
		if err := st.run(); !errors.Is(err, st.want) {
			t.Fatalf("%s: error = %v, want %v", st.name, err, st.want)
		}
	}
}

func TestMemoryBound(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	m := NewMemory(3, 0)
	m.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if err := m.Create(ctx, &Session{ID: NewID(), ExpiresAt: now.Add(time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Create(ctx, &Session{ID: NewID(), ExpiresAt: now.Add(time.Second)}); !errors.Is(err, ErrFull) {
		t.Fatalf("4th session: %v, want ErrFull", err)
	}
	now = now.Add(2 * time.Second)
	if err := m.Create(ctx, &Session{ID: NewID(), ExpiresAt: now.Add(time.Second)}); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if n := m.Sweep(); n != 1 {
		t.Fatalf("after sweep %d sessions, want 1", n)
	}
}

func TestConsumeNonceIsAtomic(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(10, 0)
	id := NewID()
	_ = m.Create(ctx, &Session{ID: id, ExpiresAt: time.Now().Add(time.Minute)})
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.ConsumeNonce(ctx, id); err == nil {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d concurrent consumers succeeded, want exactly 1", wins.Load())
	}
}

func TestIDs(t *testing.T) {
	tests := map[string]struct {
		id   string
		want bool
	}{
		"generated": {NewID(), true},
		"uppercase": {"ABCDEF0123456789abcdef0123456789", false},
		"short":     {"abc", false},
		"with dash": {"abcdef01-2345-6789-abcd-ef0123456789", false},
		"injection": {"../../../../../../../../etc/pass", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := ValidID(tc.id); got != tc.want {
				t.Errorf("ValidID(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}
