// Command kbs-plugin-verifier-ita is the kbs-host plugin that verifies SGX
// and TDX quotes with Intel Trust Authority.
package main

import (
	"github.com/gokbs/kbs/plugins/verifier/ita"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:         "ita",
		Version:      "0.1.0",
		TEETypes:     []string{ita.TEETDX, ita.TEESGX},
		Capabilities: []string{"remote"},
		Verifier:     ita.New(),
	})
}
