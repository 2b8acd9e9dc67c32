package memtrim

import (
	"bufio"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestReadOnlyRanges(t *testing.T) {
	maps, err := os.ReadFile("testdata/maps.txt")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want []addrRange
	}{
		{"text and constants, not data or heap", "/opt/kbs/plugins/kbs-plugin-verifier-sample",
			[]addrRange{{0x400000, 0x996000}, {0x996000, 0x1017000}}},
		{"a path with a space", "/opt/my plugins/kbs-plugin-x", []addrRange{{0x7fd3c5500000, 0x7fd3c5501000}}},
		{"no prefix match", "/opt/kbs/plugins/kbs-plugin-verifier", nil},
		{"not mapped", "/nowhere", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := readOnlyRanges(maps, tt.path); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("readOnlyRanges(%q) = %#v, want %#v", tt.path, got, tt.want)
			}
		})
	}
}

// TestReleaseStartupPages pages out the test binary's own text and
// constants: the process keeps running, and the resident share of its
// executable shrinks.
func TestReleaseStartupPages(t *testing.T) {
	before := exeResidentKiB(t)
	n, err := ReleaseStartupPages()
	if err != nil {
		t.Skipf("kernel refuses MADV_PAGEOUT: %v", err)
	}
	if n == 0 {
		t.Fatal("no read-only mapping of the executable found in /proc/self/maps")
	}
	after := exeResidentKiB(t)
	t.Logf("executable resident: %d KiB before, %d KiB after releasing %d KiB", before, after, n>>10)
	if after >= before {
		t.Errorf("resident pages of the executable did not shrink: %d KiB before, %d KiB after", before, after)
	}
}

// exeResidentKiB sums Rss over the mappings of the running executable.
func exeResidentKiB(t *testing.T) int {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	total, inExe := 0, false
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 6 && strings.Contains(fields[0], "-"):
			inExe = strings.Join(fields[5:], " ") == exe
		case len(fields) >= 5 && strings.Contains(fields[0], "-"):
			inExe = false
		case inExe && fields[0] == "Rss:":
			kb, _ := strconv.Atoi(fields[1])
			total += kb
		}
	}
	return total
}
