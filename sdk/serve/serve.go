package serve

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-plugin"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/internal/wire"
)

// Serve runs the plugin until the host stops it. It never returns: a
// misconfigured plugin exits with status 2 and a message on stderr.
func Serve(opts Options) {
	if err := opts.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake,
		Plugins:         wire.PluginSet(opts.Impl()),
		GRPCServer:      wire.NewServer,
		Logger:          sdk.Logger(),
	})
	os.Exit(0)
}
