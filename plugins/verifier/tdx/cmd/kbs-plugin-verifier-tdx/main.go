// Command kbs-plugin-verifier-tdx is the kbs-host plugin for Intel TDX.
package main

import (
	"github.com/gokbs/kbs/plugins/verifier/tdx"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:     "tdx",
		Version:  "0.1.0",
		TEETypes: []string{tdx.TEE},
		Verifier: tdx.New(),
	})
}
