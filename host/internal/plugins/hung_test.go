package plugins

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// TestStoppedPluginIsReplaced: a plugin that stops answering (SIGSTOP: no
// crash, no exit, a socket that stays open) fails its ping and is replaced;
// killing it does not wait forever on a shutdown it will never answer.
func TestStoppedPluginIsReplaced(t *testing.T) {
	opts := testOptions(t, install(t, "kbs-plugin-verifier-test"))
	opts.CallTimeout = 500 * time.Millisecond
	m := startManager(t, opts, Spec{Kind: "verifier", Name: "test"})
	old := statusOf(m, "verifier", "test").PID
	if err := syscall.Kill(old, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(old, syscall.SIGKILL) })
	v, _ := m.Verifier("test")
	start := time.Now()
	if _, err := v.Verify(context.Background(), testRequest("")); err == nil {
		t.Fatal("a call into a stopped plugin succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the call into a stopped plugin took %s; the deadline is 500ms", took)
	}
	waitFor(t, pingTimeout+killGrace+10*time.Second, "the stopped plugin to be replaced", func() bool {
		st := statusOf(m, "verifier", "test")
		return st.State == StateRunning && st.PID != 0 && st.PID != old
	})
	if !pidGone(old) {
		t.Errorf("the stopped plugin %d is still there", old)
	}
	if _, err := v.Verify(context.Background(), testRequest("")); err != nil {
		t.Fatalf("call after the replacement: %v", err)
	}
}

// killGrace mirrors sdk/pluginclient's bound on a graceful shutdown.
const killGrace = 2 * time.Second
