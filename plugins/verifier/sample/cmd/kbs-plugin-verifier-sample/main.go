// Command kbs-plugin-verifier-sample is the kbs-host plugin for the sample TEE.
package main

import (
	"github.com/gokbs/kbs/plugins/verifier/sample"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:     "sample",
		Version:  "0.1.0",
		TEETypes: []string{sample.TEE},
		Verifier: sample.New(),
	})
}
