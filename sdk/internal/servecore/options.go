// Package servecore holds the plugin options shared by sdk/serve and
// sdk/plugintest, so that both build the server side the same way.
package servecore

import (
	"fmt"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/internal/wire"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/token"
	"github.com/gokbs/kbs/sdk/verifier"
)

// Options describe one plugin. Set exactly one of Verifier, Resource and
// TokenIssuer. If that implementation also implements sdk.Configurer, the
// host's settings for the plugin reach it through Configure.
type Options struct {
	Name    string
	Version string
	// TEETypes lists the TEE names a verifier handles ("snp", "az-snp-vtpm").
	TEETypes []string
	// Capabilities are free-form feature flags shown in the host's plugin
	// list (for example "write" for a resource backend that accepts Put).
	Capabilities []string

	Verifier    verifier.Verifier
	Resource    resource.Backend
	TokenIssuer token.Issuer
}

// Kind returns the plugin kind that opts describe.
func (o *Options) Kind() string {
	switch {
	case o.Verifier != nil:
		return sdk.KindVerifier
	case o.Resource != nil:
		return sdk.KindResource
	case o.TokenIssuer != nil:
		return sdk.KindToken
	}
	return ""
}

// Validate checks that opts describe exactly one plugin.
func (o *Options) Validate() error {
	n := 0
	for _, set := range []bool{o.Verifier != nil, o.Resource != nil, o.TokenIssuer != nil} {
		if set {
			n++
		}
	}
	switch {
	case o.Name == "":
		return fmt.Errorf("serve: Options.Name is empty")
	case n != 1:
		return fmt.Errorf("serve: plugin %q must set exactly one of Verifier, Resource, TokenIssuer (has %d)", o.Name, n)
	case o.Verifier != nil && len(o.TEETypes) == 0:
		return fmt.Errorf("serve: verifier %q declares no TEETypes", o.Name)
	}
	return nil
}

// Impl builds the server side that serve.Serve runs.
func (o *Options) Impl() *wire.Impl {
	return wire.NewImpl(wire.Metadata{
		Name:          o.Name,
		Kind:          o.Kind(),
		Version:       o.Version,
		SDKVersion:    sdk.Version,
		ProtocolMinor: sdk.ProtocolMinor,
		Capabilities:  o.Capabilities,
		TEETypes:      o.TEETypes,
	}, o.Verifier, o.Resource, o.TokenIssuer)
}
