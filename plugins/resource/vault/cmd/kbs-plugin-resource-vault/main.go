// Command kbs-plugin-resource-vault is the kbs-host plugin that serves
// resources from a HashiCorp Vault KV secrets engine.
package main

import (
	"github.com/gokbs/kbs/plugins/resource/vault"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:         "vault",
		Version:      "0.1.0",
		Capabilities: []string{"write"},
		Resource:     vault.New(),
	})
}
