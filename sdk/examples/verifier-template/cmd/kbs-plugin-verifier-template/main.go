// Command kbs-plugin-verifier-template is the plugin binary. Its name must
// be kbs-plugin-<kind>-<name>, and Name below must be <name>: the host
// refuses a plugin that does not say it is what its file name says.
package main

import (
	template "github.com/example/kbs-verifier-template"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:     "template",
		Version:  "0.1.0",
		TEETypes: []string{template.TEE},
		Verifier: template.New(),
	})
}
