// Command kbs-plugin-verifier-test is the plugin manager's test verifier.
package main

import (
	"github.com/gokbs/kbs/host/internal/plugins/testplugins"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:     "test",
		Version:  "0.0.1",
		TEETypes: []string{testplugins.TEE},
		Verifier: &testplugins.Verifier{},
	})
}
