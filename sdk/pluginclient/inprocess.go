package pluginclient

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gokbs/kbs/sdk/internal/servecore"
	"github.com/gokbs/kbs/sdk/internal/wire"
)

// StartInProcess serves opts over real gRPC on a loopback socket inside this
// process and returns a client to it: the same adapters and error mapping as
// a plugin process, without the process. sdk/plugintest and benchmarks use
// it. Kill stops the server.
func StartInProcess(ctx context.Context, opts *servecore.Options) (*Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("in-process plugin: %w", err)
	}
	srv := wire.NewServer(nil)
	wire.Register(srv, opts.Impl())
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(),
		append(wire.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		srv.Stop()
		return nil, fmt.Errorf("in-process plugin: %w", err)
	}
	c := &Client{conn: wire.NewConn(cc), stop: func() { _ = cc.Close(); srv.Stop() }}
	if err := c.loadMetadata(ctx); err != nil {
		c.Kill()
		return nil, err
	}
	return c, nil
}
