// Command kbs-plugin-verifier-csv is the kbs-host plugin for Hygon CSV.
package main

import (
	"github.com/gokbs/kbs/plugins/verifier/csv"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:     "csv",
		Version:  "0.1.0",
		TEETypes: []string{csv.TEE},
		Verifier: csv.New(),
	})
}
