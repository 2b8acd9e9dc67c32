// Command kbs-plugin-token-ear is the kbs-host plugin that issues EAR
// attestation tokens.
package main

import (
	"github.com/gokbs/kbs/plugins/token/ear"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:        "ear",
		Version:     ear.Version,
		TokenIssuer: ear.New(),
	})
}
