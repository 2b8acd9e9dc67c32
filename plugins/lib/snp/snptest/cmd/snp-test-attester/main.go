// Command snp-test-attester signs SNP evidence with snptest's test chain,
// for end-to-end tests of a broker whose snp plugin was built with the
// kbs_snp_test_roots tag. It is a test tool: never point it at a broker
// that trusts real keys with test roots.
//
// Protocol (line based): it first prints the test roots as a JSON string
// (the value of the plugin's test_roots_pem for Milan); then, for each line
// of stdin holding a hex runtime-data digest (optionally a space and a hex
// init-data digest), it prints one line of evidence JSON.
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/gokbs/kbs/plugins/lib/snp/snptest"
)

func main() {
	s, err := snptest.NewSigner(snptest.Options{Generation: "Milan"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	roots, _ := json.Marshal(string(s.RootsPEM()))
	fmt.Fprintf(out, "%s\n", roots)
	out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fields := strings.Fields(in.Text())
		if len(fields) == 0 {
			continue
		}
		digest, err := hex.DecodeString(fields[0])
		var initData []byte
		if err == nil && len(fields) > 1 {
			initData, err = hex.DecodeString(fields[1])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad digest:", err)
			os.Exit(1)
		}
		ev, err := s.EvidenceFor(digest, initData)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var line bytes.Buffer
		if err := json.Compact(&line, ev); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Fprintf(out, "%s\n", line.Bytes())
		out.Flush()
	}
}
