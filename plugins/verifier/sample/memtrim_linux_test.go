package sample

import (
	"bufio"
	"context"
	"encoding/base64"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TestProcessReleasesStartupPages checks, on a real plugin process, that
// the SDK gives back the executable's start-up pages once the host has
// configured the plugin, and that the plugin still serves afterwards.
func TestProcessReleasesStartupPages(t *testing.T) {
	bin := plugintest.Binary(t, "kbs-plugin-verifier-sample")
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	c := plugintest.StartProcess(t, bin, nil)
	pid := c.Pid()
	start := exeResidentKiB(t, pid, bin)
	deadline := time.Now().Add(10 * time.Second)
	now := start
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		if now = exeResidentKiB(t, pid, bin); now < start/2 {
			break
		}
	}
	t.Logf("binary %d KiB; resident: %d KiB at start, %d KiB later", st.Size()>>10, start, now)
	if now >= start/2 {
		t.Fatalf("the plugin still holds %d KiB of its executable resident (%d KiB at start)", now, start)
	}
	// The pages a call needs come back.
	if _, err := c.Verifier().Verify(context.Background(), &verifier.Request{
		TEE:        "sample",
		Evidence:   evidenceJSON("1", base64.StdEncoding.EncodeToString(digest)),
		ReportData: digest,
	}); err != nil {
		t.Fatalf("verify after releasing pages: %v", err)
	}
}

// exeResidentKiB sums Rss over the process's mappings of path.
func exeResidentKiB(t *testing.T, pid int, path string) int {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		t.Skipf("no smaps for the plugin: %v", err)
	}
	defer f.Close()
	total, in := 0, false
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && len(fields[0]) > 8:
			in = len(fields) >= 6 && strings.Join(fields[5:], " ") == path
		case in && len(fields) >= 2 && fields[0] == "Rss:":
			kb, _ := strconv.Atoi(fields[1])
			total += kb
		}
	}
	return total
}
