// Command kbs-plugin-verifier-cca is the kbs-host plugin for Arm CCA.
package main

import (
	"github.com/gokbs/kbs/plugins/verifier/cca"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:     "cca",
		Version:  "0.1.0",
		TEETypes: []string{cca.TEE},
		Verifier: cca.New(),
	})
}
