// Command kbs-plugin-verifier-az-tdx-vtpm is the kbs-host plugin for Azure
// TDX confidential VMs (vTPM evidence).
package main

import (
	aztdxvtpm "github.com/gokbs/kbs/plugins/verifier/az-tdx-vtpm"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:     "az-tdx-vtpm",
		Version:  "0.1.0",
		TEETypes: []string{aztdxvtpm.TEE},
		Verifier: aztdxvtpm.New(),
	})
}
