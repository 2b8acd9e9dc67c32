// Command kbs-plugin-verifier-sgx is the kbs-host plugin for Intel SGX.
package main

import (
	"github.com/gokbs/kbs/plugins/verifier/sgx"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:     "sgx",
		Version:  "0.1.0",
		TEETypes: []string{sgx.TEE},
		Verifier: sgx.New(),
	})
}
