package ear_test

import (
	"testing"

	"github.com/gokbs/kbs/plugins/token/ear"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/serve"
)

// TestConformance serves the plugin over real gRPC, as kbs-host runs it.
func TestConformance(t *testing.T) {
	for name, config := range map[string]string{
		"ephemeral key": `{}`,
		"key file":      `{"signing_key_path":"testdata/signing-key.pem","duration":"2m"}`,
	} {
		t.Run(name, func(t *testing.T) {
			plugintest.TokenConformance(t, serve.Options{Name: "ear", Version: ear.Version, TokenIssuer: ear.New()}, []byte(config))
		})
	}
}
