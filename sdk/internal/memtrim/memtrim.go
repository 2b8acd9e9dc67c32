// Package memtrim gives back to the kernel the pages of a plugin's
// executable that only its start-up used.
//
// A plugin process maps its whole binary, and on Linux with large page-cache
// folios (ext4 and xfs since 6.x) the first fault maps whole folios, so a
// plugin that has just started holds nearly all of its 15-20 MB binary
// resident although a call runs through a few hundred KiB of it. A broker
// runs a dozen plugins, most of them idle (one verifier per TEE type, of
// which a cluster uses one or two), so this is most of the broker's memory.
// Once the plugin is configured and serving, ReleaseStartupPages asks the
// kernel to reclaim the executable's read-only mappings (MADV_PAGEOUT); the
// pages a call needs fault back in from the page cache or the disk on
// first use.
package memtrim

import (
	"sync"
	"time"
)

// Delay is how long after configuration the pages are released: long
// enough for the host's first calls (its health check and metadata) to run
// on the start-up pages, short enough that a broker is lean soon after it
// is ready.
const Delay = 2 * time.Second

var once sync.Once

// ReleaseAfterStart releases the start-up pages once per process, Delay
// after its first call.
func ReleaseAfterStart() {
	once.Do(func() {
		time.AfterFunc(Delay, func() { _, _ = ReleaseStartupPages() })
	})
}
