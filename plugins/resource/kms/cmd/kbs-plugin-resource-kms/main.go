// Command kbs-plugin-resource-kms is the kbs-host plugin that stores
// resources encrypted at rest under keys held by AWS KMS or a PKCS#11 HSM.
package main

import (
	"github.com/gokbs/kbs/plugins/resource/kms"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:         "kms",
		Version:      "0.1.0",
		Capabilities: []string{"write", "rewrap"},
		Resource:     kms.New(),
	})
}
