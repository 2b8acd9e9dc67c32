// Package sdk is what a kbs-host plugin imports: the error classes that
// survive the process boundary, the plugin descriptor, and strict decoding of
// a plugin's own settings. The plugin kinds live in sdk/verifier,
// sdk/resource and sdk/token; sdk/serve turns an implementation into a plugin
// process with one call; sdk/plugintest tests it over real gRPC.
//
// Nothing here exposes go-plugin, gRPC or protobuf types: the wire protocol
// is an implementation detail that can change without breaking plugins.
package sdk

// Version is the SDK version reported by every plugin in its metadata.
const Version = "0.1.0"

// ProtocolMinor is the minor version of the kbs.plugin.v1 protocol that this
// SDK speaks. It grows when RPCs or fields are added.
const ProtocolMinor = 0

// Plugin kinds.
const (
	KindVerifier = "verifier"
	KindResource = "resource"
	KindToken    = "token"
)
