// Package serve turns a plugin implementation into a kbs-host plugin
// process. A plugin's main is one call:
//
//	func main() {
//		serve.Serve(serve.Options{Name: "sample", Version: "0.1.0",
//			TEETypes: []string{"sample"}, Verifier: sample.New()})
//	}
package serve

import "github.com/gokbs/kbs/sdk/internal/servecore"

// Options describe one plugin. Set exactly one of Verifier, Resource and
// TokenIssuer. If that implementation also implements sdk.Configurer, the
// host's settings for the plugin reach it through Configure.
//
// Fields: Name, Version, TEETypes (the TEE names a verifier handles),
// Capabilities (free-form feature flags shown in the host's plugin list),
// Verifier, Resource, TokenIssuer.
type Options = servecore.Options
