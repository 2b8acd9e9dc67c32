package plugins

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gokbs/kbs/sdk"
)

// TestOnCall: every call, failed or not, is reported with the plugin, the
// method and its error.
func TestOnCall(t *testing.T) {
	type seen struct {
		plugin, method string
		err            error
	}
	var mu sync.Mutex
	var calls []seen
	opts := testOptions(t, install(t, "kbs-plugin-verifier-test"))
	opts.OnCall = func(plugin, method string, elapsed time.Duration, err error) {
		if elapsed <= 0 {
			t.Errorf("elapsed %v", elapsed)
		}
		mu.Lock()
		calls = append(calls, seen{plugin, method, err})
		mu.Unlock()
	}
	m := startManager(t, opts, Spec{Kind: "verifier", Name: "test"})
	v, err := m.Verifier("test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := v.Verify(ctx, testRequest("")); err != nil {
		t.Fatal(err)
	}
	bad := testRequest("")
	bad.ReportData = []byte("other")
	if _, err := v.Verify(ctx, bad); !errors.Is(err, sdk.ErrBadEvidence) {
		t.Fatalf("verify with other report data: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 {
		t.Fatalf("OnCall saw %d calls, want 2: %+v", len(calls), calls)
	}
	for i, c := range calls {
		if c.plugin != "verifier/test" || c.method != "Verify" {
			t.Errorf("call %d reported as %s %s", i, c.plugin, c.method)
		}
	}
	if calls[0].err != nil || !errors.Is(calls[1].err, sdk.ErrBadEvidence) {
		t.Errorf("errors reported: %v, %v", calls[0].err, calls[1].err)
	}
}
