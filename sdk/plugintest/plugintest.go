// Package plugintest tests a plugin the way kbs-host runs it: served over
// real gRPC through the SDK's adapters, so that error classes, claims and
// payloads cross the same encoding as in production. The conformance suites
// check the behaviour every plugin of a kind must have; call them from your
// own tests:
//
//	func TestConformance(t *testing.T) {
//		plugintest.VerifierConformance(t, serve.Options{...}, cases)
//	}
package plugintest

import (
	"context"
	"testing"

	"github.com/gokbs/kbs/sdk/pluginclient"
	"github.com/gokbs/kbs/sdk/serve"
)

// Start serves opts in-process over real gRPC and returns a client. If
// config is not nil it is passed to the plugin's Configure first. The
// plugin is stopped when the test ends.
func Start(t testing.TB, opts serve.Options, config []byte) *pluginclient.Client {
	t.Helper()
	c, err := pluginclient.StartInProcess(context.Background(), &opts)
	if err != nil {
		t.Fatalf("plugintest: starting %q: %v", opts.Name, err)
	}
	t.Cleanup(c.Kill)
	if err := c.Configure(context.Background(), config); err != nil {
		t.Fatalf("plugintest: configuring %q: %v", opts.Name, err)
	}
	return c
}

// ConfigureError starts the plugin as Start does and returns what Configure
// answers, as the host receives it across gRPC: for tests of settings the
// plugin must refuse.
func ConfigureError(t testing.TB, opts serve.Options, config []byte) error {
	t.Helper()
	c, err := pluginclient.StartInProcess(context.Background(), &opts)
	if err != nil {
		t.Fatalf("plugintest: starting %q: %v", opts.Name, err)
	}
	defer c.Kill()
	return c.Configure(context.Background(), config)
}
