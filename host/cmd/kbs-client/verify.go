package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/gokbs/kbs/host/internal/plugins"
	"github.com/gokbs/kbs/host/internal/protocol"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// verifyCmd runs a verifier plugin on an evidence file, offline: what an
// operator uses to find out why a guest's evidence is refused.
func verifyCmd() *cobra.Command {
	var tee, evidence, reportData, initDigest, pluginDir, configFile, hashAlg string
	var verbose bool
	c := &cobra.Command{
		Use:   "verify --tee TEE --evidence FILE [--report-data HEX] [--init-data-digest HEX]",
		Short: "Verify evidence offline with the verifier plugin for its TEE and print the claims",
		Long: `Verify evidence offline with the verifier plugin for its TEE and print the claims.

The plugin comes from --plugin-dir (default: plugins/ beside kbs-client, where
'make build' puts them) and must pass the manifest check, as in kbs-host. The
exit status is non-zero, with the reason, when verification fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			canon, ok := protocol.CanonicalTEE(tee)
			if !ok {
				return fmt.Errorf("unknown TEE %q", tee)
			}
			ev, err := os.ReadFile(evidence)
			if err != nil {
				return err
			}
			if !json.Valid(ev) {
				return fmt.Errorf("%s is not JSON: give the TEE's primary evidence as the guest sends it", evidence)
			}
			req := &verifier.Request{TEE: canon, Evidence: ev, HashAlgorithm: hashAlg}
			if req.ReportData, err = hex.DecodeString(reportData); err != nil {
				return fmt.Errorf("--report-data: %w", err)
			}
			if initDigest != "" {
				if req.InitDataDigest, err = hex.DecodeString(initDigest); err != nil {
					return fmt.Errorf("--init-data-digest: %w", err)
				}
			}
			var settings json.RawMessage
			if configFile != "" {
				if settings, err = os.ReadFile(configFile); err != nil {
					return err
				}
			}
			if pluginDir == "" {
				pluginDir = besideExecutable("plugins")
			}
			log := hclog.NewNullLogger()
			if verbose {
				log = hclog.New(&hclog.LoggerOptions{Name: "verify", Output: os.Stderr, Level: hclog.Debug})
			}
			name, err := findVerifier(cmd, pluginDir, canon, log)
			if err != nil {
				return err
			}
			m, err := plugins.New(cmd.Context(), plugins.Options{Dir: pluginDir, Logger: log},
				[]plugins.Spec{{Kind: sdk.KindVerifier, Name: name, Config: settings}})
			if err != nil {
				return err
			}
			defer m.Close()
			v, err := m.Verifier(canon)
			if err != nil {
				return err
			}
			claims, err := v.Verify(cmd.Context(), req)
			if err != nil {
				return fmt.Errorf("verification failed (%s): %w", sdk.ClassOf(err), err)
			}
			out, _ := json.MarshalIndent(claims, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(out))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&tee, "tee", "", "TEE type of the evidence (snp, tdx, sgx, az-snp-vtpm, ...)")
	f.StringVar(&evidence, "evidence", "", "file with the primary evidence JSON")
	f.StringVar(&reportData, "report-data", "", "expected runtime-data digest, hex")
	f.StringVar(&hashAlg, "hash-algorithm", "sha384", "hash that produced --report-data")
	f.StringVar(&initDigest, "init-data-digest", "", "expected init-data digest, hex")
	f.StringVar(&pluginDir, "plugin-dir", "", "plugin directory (default: plugins/ beside kbs-client)")
	f.StringVar(&configFile, "plugin-config", "", "the plugin's settings, a JSON file")
	f.BoolVar(&verbose, "verbose", false, "show the plugin's log")
	_ = c.MarkFlagRequired("tee")
	_ = c.MarkFlagRequired("evidence")
	return c
}

// findVerifier returns the name of the verifier plugin that declares tee.
func findVerifier(cmd *cobra.Command, dir, tee string, log hclog.Logger) (string, error) {
	found, err := plugins.Discover(dir)
	if err != nil {
		return "", err
	}
	var verifiers []plugins.Found
	for _, f := range found {
		if f.Kind == sdk.KindVerifier {
			verifiers = append(verifiers, f)
		}
	}
	for _, p := range plugins.Probe(cmd.Context(), plugins.Options{Dir: dir, Logger: log}, verifiers) {
		if p.Started && slices.Contains(p.Metadata.TEETypes, tee) {
			return p.Name, nil
		}
	}
	return "", errors.New("no verified verifier plugin for TEE " + tee + " in " + filepath.Clean(dir) + " (see kbs-host plugins list --start)")
}

func besideExecutable(name string) string {
	exe, err := os.Executable()
	if err != nil {
		return name
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Join(filepath.Dir(exe), name)
}
