// Command kbs-plugin-resource-fs is the kbs-host plugin that serves
// resources from a repository directory.
package main

import (
	"github.com/gokbs/kbs/plugins/resource/fs"
	"github.com/gokbs/kbs/sdk/serve"
)

func main() {
	serve.Serve(serve.Options{
		Name:         "fs",
		Version:      "0.1.0",
		Capabilities: []string{"write"},
		Resource:     fs.New(),
	})
}
