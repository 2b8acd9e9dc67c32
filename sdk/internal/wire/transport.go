package wire

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/gokbs/kbs/sdk"
)

// Flow-control windows of the plugin connection. Fixing them turns off
// gRPC's bandwidth-delay estimator, which otherwise answers the first DATA
// frame after every quiet moment with a PING and its ACK: on a socket
// between two processes of one machine that is two more writes, reads and
// goroutine wake-ups in each process per call (it doubled the median cost
// of a call), for a window that never needs to grow. 4 MiB per stream and
// 16 MiB per connection let large evidence and resources flow without
// waiting for window updates.
const (
	streamWindow = 4 << 20
	connWindow   = 16 << 20
)

// mdRequestID is the gRPC metadata key that carries sdk.RequestID.
const mdRequestID = "kbs-request-id"

// DialOptions are the host side's gRPC options for a plugin connection.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithStaticStreamWindowSize(streamWindow),
		grpc.WithStaticConnWindowSize(connWindow),
		grpc.WithUnaryInterceptor(sendRequestID),
	}
}

// NewServer is the plugin side's gRPC server; go-plugin passes opts (its
// TLS credentials).
func NewServer(opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts,
		grpc.StaticStreamWindowSize(streamWindow),
		grpc.StaticConnWindowSize(connWindow),
		grpc.UnaryInterceptor(receiveRequestID),
	)
	return grpc.NewServer(opts...)
}

// sendRequestID puts the request ID of ctx into the call's metadata; an ID
// that is not plain is not sent (the host makes its own instead).
func sendRequestID(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if id := sdk.RequestID(ctx); id != "" && sdk.ValidRequestID(id) {
		ctx = metadata.AppendToOutgoingContext(ctx, mdRequestID, id)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// receiveRequestID makes the caller's request ID available to the plugin
// through sdk.RequestID. An ID that is not plain is dropped: plugins log it.
func receiveRequestID(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(mdRequestID); len(v) == 1 && sdk.ValidRequestID(v[0]) {
			ctx = sdk.WithRequestID(ctx, v[0])
		}
	}
	return handler(ctx, req)
}
