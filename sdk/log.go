package sdk

import (
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"
)

var (
	logOnce sync.Once
	logger  hclog.Logger
)

// Logger returns the plugin's logger. It writes JSON lines to stderr, which
// the host reads and re-logs under the plugin's name. A plugin must never
// write to stdout: go-plugin uses it for the handshake.
func Logger() hclog.Logger {
	logOnce.Do(func() {
		logger = hclog.New(&hclog.LoggerOptions{
			Output:     os.Stderr,
			JSONFormat: true,
			Level:      hclog.Trace, // the host filters by its own level
		})
	})
	return logger
}
