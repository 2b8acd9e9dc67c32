package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/gokbs/kbs/host/internal/plugins"
)

func pluginsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "plugins", Short: "Inspect the plugin directory"}
	var dir string
	var start bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List plugin binaries, their manifest check and (with --start) what they report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				dir = besideExecutable("plugins")
			}
			found, err := plugins.Discover(dir)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			if !start {
				fmt.Fprintln(w, "KIND\tNAME\tCHECK\tFILE")
				for _, f := range found {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.Kind, f.Name, f.Status, f.File)
				}
				return w.Flush()
			}
			fmt.Fprintln(w, "KIND\tNAME\tCHECK\tSTARTED\tVERSION\tSDK\tTEE TYPES\tCAPABILITIES\tERROR")
			for _, p := range plugins.Probe(context.Background(), plugins.Options{Dir: dir, Logger: hclog.NewNullLogger()}, found) {
				errText := ""
				if p.Err != nil {
					errText = p.Err.Error()
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%s\t%s\t%v\t%v\t%s\n", p.Kind, p.Name, p.Status, p.Started,
					p.Metadata.Version, p.Metadata.SDKVersion, p.Metadata.TEETypes, p.Metadata.Capabilities, errText)
			}
			return w.Flush()
		},
	}
	list.Flags().StringVar(&dir, "plugin-dir", "", "plugin directory (default: plugins/ beside kbs-host)")
	list.Flags().BoolVar(&start, "start", false, "start each verified plugin to read its metadata")

	manifest := &cobra.Command{
		Use:   "manifest DIR",
		Short: "Write DIR/manifest.sha256 with the SHA-256 of every kbs-plugin-* binary in DIR",
		Long: `Write DIR/manifest.sha256 with the SHA-256 of every kbs-plugin-* binary in DIR.
The host starts only binaries whose digest is in the manifest. The file is in
sha256sum format, so 'sha256sum -c manifest.sha256' checks it by hand.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := plugins.WriteManifest(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "wrote %s/manifest.sha256\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(list, manifest)
	return cmd
}
