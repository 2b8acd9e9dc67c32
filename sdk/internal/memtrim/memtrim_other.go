//go:build !linux

package memtrim

// ReleaseStartupPages does nothing where MADV_PAGEOUT does not exist.
func ReleaseStartupPages() (int, error) { return 0, nil }
