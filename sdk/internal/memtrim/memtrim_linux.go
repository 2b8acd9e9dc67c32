package memtrim

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ReleaseStartupPages advises the kernel to page out the read-only
// mappings of the running executable and returns how many bytes it asked
// for. Kernels before 5.4 know no MADV_PAGEOUT: the error says so and
// nothing changes.
func ReleaseStartupPages() (int, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("memtrim: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("memtrim: %w", err)
	}
	total := 0
	for _, r := range readOnlyRanges(maps, exe) {
		// A raw syscall on the address range: the pages are the program's
		// own text and constants, never handed to Go as a slice.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_PAGEOUT); errno != 0 {
			return total, fmt.Errorf("memtrim: madvise %#x-%#x: %w", r.start, r.end, errno)
		}
		total += int(r.end - r.start)
	}
	return total, nil
}

type addrRange struct{ start, end uintptr }

// readOnlyRanges parses /proc/self/maps for the mappings of path that are
// neither writable nor anonymous. Writable ones (the data segment) hold the
// program's state and are left alone.
func readOnlyRanges(maps []byte, path string) []addrRange {
	var out []addrRange
	s := bufio.NewScanner(bytes.NewReader(maps))
	for s.Scan() {
		// address perms offset dev inode path
		f := bytes.Fields(s.Bytes())
		if len(f) < 6 || string(bytes.Join(f[5:], []byte(" "))) != path || len(f[1]) < 2 || f[1][1] == 'w' {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, addrRange{uintptr(start), uintptr(end)})
	}
	return out
}
