package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// children returns the PIDs whose parent is pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so cut at ')'.
		rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
		fields := strings.Fields(rest)
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
			out = append(out, child)
		}
	}
	return out
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestNoPluginOutlivesAKilledHost(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	br := startDev(t, "")
	kids := children(t, br.cmd.Process.Pid)
	if len(kids) != 3 {
		t.Fatalf("kbs-host has %d child processes, want its 3 plugins", len(kids))
	}
	// SIGKILL the host alone, not its process group: no clean-up runs.
	if err := br.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = br.cmd.Process.Wait()
	deadline := time.Now().Add(3 * time.Second)
	for _, pid := range kids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("plugin process %d outlived the SIGKILLed host", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
