// Command kbs-plugin-verifier-snp is the kbs-host plugin for AMD SEV-SNP
// evidence.
package main

import (
	"github.com/gokbs/kbs/plugins/verifier/snp"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:     "snp",
		Version:  "0.1.0",
		TEETypes: []string{snp.TEE},
		Verifier: snp.New(),
	})
}
