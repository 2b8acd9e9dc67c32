// Command kbs-client acts as a confidential guest (attest, get-resource)
// and as an operator (set-resource, delete-resource) against a KBS.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbsclient"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "kbs-client:", err)
		os.Exit(1)
	}
}

type globalFlags struct {
	url            string
	timeout        time.Duration
	adminTokenFile string
}

type guestFlags struct {
	teeKeyFile string
	keyKind    string
	evidence   string
	tee        string
}

func rootCmd() *cobra.Command {
	var g globalFlags
	cmd := &cobra.Command{
		Use:           "kbs-client",
		Short:         "Talk to a Key Broker Service as a guest or as an admin",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.url, "url", envOr("KBS_URL", "http://127.0.0.1:8080"), "broker URL; env KBS_URL")
	pf.DurationVar(&g.timeout, "timeout", time.Minute, "overall timeout")
	addAdminFlags(cmd, &g)
	cmd.AddCommand(attestCmd(&g), getResourceCmd(&g), setResourceCmd(&g), deleteResourceCmd(&g), listResourcesCmd(&g))
	cmd.AddCommand(adminCmds(&g)...)
	cmd.AddCommand(verifyCmd())
	cmd.AddCommand(keygenCmd())
	return cmd
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func addGuestFlags(c *cobra.Command, f *guestFlags) {
	c.Flags().StringVar(&f.teeKeyFile, "tee-key-file", "", "the TEE private key (PEM); created if the file does not exist; default: a fresh key in memory")
	c.Flags().StringVar(&f.keyKind, "tee-key-type", guest.KindECP256, "type of a new TEE key: ec-p256, ec-p521, rsa-oaep-256, rsa1_5")
	c.Flags().StringVar(&f.evidence, "evidence", "", "send the primary evidence in this JSON file instead of sample evidence")
	c.Flags().StringVar(&f.tee, "tee", "sample", "the TEE type to claim in auth")
}

// teeKey loads the key file, or creates it (or an in-memory key).
func teeKey(f *guestFlags) (*guest.Key, error) {
	rsaKind := f.keyKind
	if !strings.HasPrefix(rsaKind, "rsa") {
		rsaKind = guest.KindRSAOAEP
	}
	if f.teeKeyFile != "" {
		k, err := guest.LoadFile(f.teeKeyFile, rsaKind)
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	k, err := guest.NewKey(f.keyKind)
	if err != nil {
		return nil, err
	}
	if f.teeKeyFile != "" {
		if err := k.SaveFile(f.teeKeyFile); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// attest runs the handshake and returns the token.
func attest(ctx context.Context, c *kbsclient.Client, f *guestFlags, k *guest.Key) (string, error) {
	jwk, err := k.PublicJWKJSON()
	if err != nil {
		return "", err
	}
	ch, err := c.Auth(ctx, f.tee)
	if err != nil {
		return "", err
	}
	ev := func(digest []byte) (json.RawMessage, error) {
		if f.evidence != "" {
			b, err := os.ReadFile(f.evidence)
			if err != nil {
				return nil, err
			}
			if !json.Valid(b) {
				return nil, fmt.Errorf("%s is not JSON", f.evidence)
			}
			return b, nil
		}
		return guest.NewSampleEvidence(digest).JSON(), nil
	}
	return c.Attest(ctx, ch, jwk, ev)
}

func attestCmd(g *globalFlags) *cobra.Command {
	var f guestFlags
	c := &cobra.Command{
		Use:   "attest",
		Short: "Attest as a guest and print the attestation token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			k, err := teeKey(&f)
			if err != nil {
				return err
			}
			tok, err := attest(ctx, kbsclient.New(g.url), &f, k)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	addGuestFlags(c, &f)
	return c
}

func getResourceCmd(g *globalFlags) *cobra.Command {
	var f guestFlags
	var path, tok, tokFile string
	c := &cobra.Command{
		Use:   "get-resource --path repo/type/tag",
		Short: "Fetch a resource as a guest and write its plaintext to stdout",
		Long: `Fetch a resource as a guest and write its plaintext to stdout.

Without --token, attest first (sample evidence, or --evidence) and fetch with the
session cookie. With --token (passport mode), fetch with that token as Bearer; the
token must carry the public key of --tee-key-file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			if tokFile != "" {
				b, err := os.ReadFile(tokFile)
				if err != nil {
					return err
				}
				tok = strings.TrimSpace(string(b))
			}
			if tok != "" && f.teeKeyFile == "" {
				return errors.New("--token needs --tee-key-file: the key the token was issued for")
			}
			k, err := teeKey(&f)
			if err != nil {
				return err
			}
			c := kbsclient.New(g.url)
			if tok == "" {
				if _, err := attest(ctx, c, &f, k); err != nil {
					return err
				}
			}
			body, err := c.GetResource(ctx, path, tok)
			if err != nil {
				return err
			}
			plain, err := k.DecryptJSON(body)
			if err != nil {
				return fmt.Errorf("decrypting the resource: %w", err)
			}
			_, err = cmd.OutOrStdout().Write(plain)
			return err
		},
	}
	addGuestFlags(c, &f)
	c.Flags().StringVar(&path, "path", "", "resource path repo/type/tag")
	c.Flags().StringVar(&tok, "token", "", "attestation token to send as Bearer (passport mode)")
	c.Flags().StringVar(&tokFile, "token-file", "", "file holding the attestation token")
	_ = c.MarkFlagRequired("path")
	return c
}

func setResourceCmd(g *globalFlags) *cobra.Command {
	var path, file string
	c := &cobra.Command{
		Use:   "set-resource --path repo/type/tag --resource-file F",
		Short: "Store a resource (admin); - reads stdin",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return err
			}
			c, err := adminClient(g)
			if err != nil {
				return err
			}
			return c.SetResource(ctx, path, data)
		},
	}
	c.Flags().StringVar(&path, "path", "", "resource path repo/type/tag")
	c.Flags().StringVar(&file, "resource-file", "", "file with the resource's bytes")
	_ = c.MarkFlagRequired("path")
	_ = c.MarkFlagRequired("resource-file")
	return c
}

func listResourcesCmd(g *globalFlags) *cobra.Command {
	var repo string
	c := &cobra.Command{
		Use:   "list-resources [--repo R]",
		Short: "List resource paths (admin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			c, err := adminClient(g)
			if err != nil {
				return err
			}
			paths, err := c.ListResources(ctx, repo)
			if err != nil {
				return err
			}
			for _, p := range paths {
				fmt.Fprintln(cmd.OutOrStdout(), p)
			}
			return nil
		},
	}
	c.Flags().StringVar(&repo, "repo", "", "only this repository")
	return c
}

func deleteResourceCmd(g *globalFlags) *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "delete-resource --path repo/type/tag",
		Short: "Delete a resource (admin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			c, err := adminClient(g)
			if err != nil {
				return err
			}
			return c.DeleteResource(ctx, path)
		},
	}
	c.Flags().StringVar(&path, "path", "", "resource path repo/type/tag")
	_ = c.MarkFlagRequired("path")
	return c
}
