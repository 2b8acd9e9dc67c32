// Command kbs-plugin-verifier-az-snp-vtpm is the kbs-host plugin for
// Azure SEV-SNP confidential VMs (vTPM evidence).
package main

import (
	azsnpvtpm "github.com/gokbs/kbs/plugins/verifier/az-snp-vtpm"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:     "az-snp-vtpm",
		Version:  "0.1.0",
		TEETypes: []string{azsnpvtpm.TEE},
		Verifier: azsnpvtpm.New(),
	})
}
