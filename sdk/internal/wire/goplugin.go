package wire

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Handshake is fixed for protocol major 1. The cookie only stops a plugin
// binary from being run by hand by mistake; it is not a security measure.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "KBS_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "9f3c1a4e8b7d2f60kbs-plugin-v1",
}

// PluginName is the single go-plugin entry each plugin process serves; the
// kind is told by which gRPC services it registers and by its metadata.
const PluginName = "kbs"

// GRPCPlugin is the go-plugin glue. On the server side Impl is set; on the
// host side GRPCClient returns a *Conn.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl *Impl
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the plugin's services.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	Register(s, p.Impl)
	return nil
}

// GRPCClient returns a *Conn over the plugin's connection.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return NewConn(cc), nil
}

// PluginSet is the set both sides agree on.
func PluginSet(impl *Impl) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}}
}
