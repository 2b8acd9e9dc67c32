// Command kbs-plugin-resource-akv is the kbs-host plugin that serves
// resources from Azure Key Vault secrets.
package main

import (
	"github.com/gokbs/kbs/plugins/resource/akv"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:         "akv",
		Version:      "0.1.0",
		Capabilities: []string{"write"},
		Resource:     akv.New(),
	})
}
