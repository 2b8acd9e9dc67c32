// Command fake-keyvault runs the fakekv test server as a process, for the
// end-to-end tests of the real daemon. It writes the server's certificate
// to -ca-out, prints the server's URL on stdout, and serves until it is
// signalled or its stdin is closed.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gokbs/kbs/plugins/resource/akv/internal/fakekv"
)

func main() {
	secretFile := flag.String("client-secret-file", "", "file holding the client secret the token endpoint accepts")
	caOut := flag.String("ca-out", "", "write the server's certificate (PEM) here")
	flag.Parse()
	var opts fakekv.Options
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			log.Fatal(err)
		}
		opts.ClientSecret = strings.TrimSpace(string(b))
	}
	s := fakekv.Start(opts)
	defer s.Close()
	if *caOut != "" {
		if err := os.WriteFile(*caOut, s.CAPEM(), 0o600); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println(s.URL)
	done := make(chan struct{}, 2)
	go func() { io.Copy(io.Discard, os.Stdin); done <- struct{}{} }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-done:
	case <-sig:
	}
}
