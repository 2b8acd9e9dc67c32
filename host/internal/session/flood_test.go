package session

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestFullStoreSweepsAtMostOncePerSecond: refusing an auth flood against a
// full store must not walk every session on every call, yet a session that
// expired is swept within fullSweepEvery.
func TestFullStoreSweepsAtMostOncePerSecond(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	m := NewMemory(2, 0)
	m.now = func() time.Time { return now }
	short := &Session{ID: NewID(), ExpiresAt: now.Add(100 * time.Millisecond)}
	long := &Session{ID: NewID(), ExpiresAt: now.Add(time.Hour)}
	for _, s := range []*Session{short, long} {
		if err := m.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name    string
		advance time.Duration
		want    error
	}{
		{"full: sweeps, nothing expired", 0, ErrFull},
		{"expired, but swept 200ms ago", 200 * time.Millisecond, ErrFull},
		{"a second after the last sweep", 800 * time.Millisecond, nil},
		{"full again", 0, ErrFull},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		if err := m.Create(ctx, &Session{ID: NewID(), ExpiresAt: now.Add(time.Hour)}); !errors.Is(err, st.want) {
			t.Fatalf("%s: %v, want %v", st.name, err, st.want)
		}
	}
	if n := m.Len(); n != 2 {
		t.Fatalf("%d sessions held, want 2", n)
	}
}
