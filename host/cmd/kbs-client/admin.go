package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gokbs/kbs/host/internal/adminauth"
	"github.com/gokbs/kbs/host/internal/kbsclient"
)

type adminFlags struct {
	key      string
	issuer   string
	subject  string
	role     string
	audience string
}

var adm adminFlags

func addAdminFlags(cmd *cobra.Command, g *globalFlags) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.adminTokenFile, "admin-token-file", os.Getenv("KBS_ADMIN_TOKEN_FILE"), "admin commands: file holding the admin Bearer token; env KBS_ADMIN_TOKEN_FILE")
	pf.StringVar(&adm.key, "admin-key", os.Getenv("KBS_ADMIN_KEY"), "admin commands: Ed25519 private key (PEM) to mint a 5-minute admin token with; env KBS_ADMIN_KEY")
	pf.StringVar(&adm.issuer, "admin-issuer", "", "iss of a minted admin token")
	pf.StringVar(&adm.subject, "admin-subject", "kbs-client", "sub of a minted admin token")
	pf.StringVar(&adm.role, "admin-role", "admin", "role of a minted admin token")
	pf.StringVar(&adm.audience, "admin-audience", "", "aud of a minted admin token")
}

// adminClient authenticates with --admin-token-file, or a token minted
// from --admin-key.
func adminClient(g *globalFlags) (*kbsclient.Client, error) {
	c := kbsclient.New(g.url)
	switch {
	case g.adminTokenFile != "" && adm.key != "":
		return nil, errors.New("use --admin-token-file or --admin-key, not both")
	case g.adminTokenFile != "":
		b, err := os.ReadFile(g.adminTokenFile)
		if err != nil {
			return nil, err
		}
		c.AdminToken = strings.TrimSpace(string(b))
	case adm.key != "":
		priv, err := os.ReadFile(adm.key)
		if err != nil {
			return nil, err
		}
		claims := adminauth.TokenClaims{Issuer: adm.issuer, Subject: adm.subject, Role: adm.role}
		if adm.audience != "" {
			claims.Audience = []string{adm.audience}
		}
		if c.AdminToken, err = adminauth.MintToken(priv, claims, 5*time.Minute); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func readInput(cmd *cobra.Command, file string) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	return os.ReadFile(file)
}

func adminCmds(g *globalFlags) []*cobra.Command {
	var policyFile, scope, id, name, value, messageFile string

	setRP := &cobra.Command{
		Use:   "set-resource-policy --policy-file F [--scope repo[/type]]",
		Short: "Set the resource policy (Rego), globally or for a path prefix",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rego, err := readInput(cmd, policyFile)
			if err != nil {
				return err
			}
			c, err := adminClient(g)
			if err != nil {
				return err
			}
			return c.SetResourcePolicy(cmd.Context(), rego, scope)
		},
	}
	setRP.Flags().StringVar(&policyFile, "policy-file", "", "Rego file (- for stdin)")
	setRP.Flags().StringVar(&scope, "scope", "", `path prefix "repo" or "repo/type"; empty = the global policy`)
	_ = setRP.MarkFlagRequired("policy-file")

	getRP := &cobra.Command{
		Use:   "get-resource-policy [--scope repo[/type]]",
		Short: "Print the resource policy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := adminClient(g)
			if err != nil {
				return err
			}
			rego, err := c.GetResourcePolicy(cmd.Context(), scope)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(rego)
			return err
		},
	}
	getRP.Flags().StringVar(&scope, "scope", "", "path prefix of a scoped policy")

	setAP := &cobra.Command{
		Use:   "set-attestation-policy --policy-file F [--id default_cpu]",
		Short: "Set an attestation policy (Rego) by ID",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rego, err := readInput(cmd, policyFile)
			if err != nil {
				return err
			}
			c, err := adminClient(g)
			if err != nil {
				return err
			}
			return c.SetAttestationPolicy(cmd.Context(), id, rego)
		},
	}
	setAP.Flags().StringVar(&policyFile, "policy-file", "", "Rego file (- for stdin)")
	setAP.Flags().StringVar(&id, "id", "default_cpu", "policy ID: default_cpu, default_gpu, ...")
	_ = setAP.MarkFlagRequired("policy-file")

	setRV := &cobra.Command{
		Use:   "set-reference-value --name N --value JSON | --message-file F",
		Short: "Register a reference value (sample extractor), or post an RVPS message",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := adminClient(g)
			if err != nil {
				return err
			}
			if messageFile != "" {
				msg, err := readInput(cmd, messageFile)
				if err != nil {
					return err
				}
				return c.PostReferenceValueMessage(cmd.Context(), msg)
			}
			if name == "" || !json.Valid([]byte(value)) {
				return errors.New("give --name and a JSON --value (for example '[\"abcde\"]'), or --message-file")
			}
			return c.SetReferenceValue(cmd.Context(), name, json.RawMessage(value))
		},
	}
	setRV.Flags().StringVar(&name, "name", "", "reference value name")
	setRV.Flags().StringVar(&value, "value", "", "JSON value, usually an array of accepted values")
	setRV.Flags().StringVar(&messageFile, "message-file", "", "an RVPS message {version,type,payload} to post as is")

	getRV := &cobra.Command{
		Use:   "get-reference-value --name N",
		Short: "Print a reference value",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := adminClient(g)
			if err != nil {
				return err
			}
			v, err := c.GetReferenceValue(cmd.Context(), name)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(v))
			return nil
		},
	}
	getRV.Flags().StringVar(&name, "name", "", "reference value name")
	_ = getRV.MarkFlagRequired("name")

	var privOut, pubOut, tokenOut, issuer, role string
	var ttl time.Duration
	keygen := &cobra.Command{
		Use:   "admin-keygen --private-key F --public-key F [--token-file F]",
		Short: "Create an Ed25519 admin key pair (and optionally a token signed with it)",
		Long: `Create an Ed25519 admin key pair. Configure the broker with the public key
([admin] auth_public_key, a persona's public_key_path, or an identity provider's
public_key_uri) and keep the private key to mint tokens (--admin-key) or write a
long-lived token with --token-file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			priv, pub, err := adminauth.GenerateKeyPair()
			if err != nil {
				return err
			}
			if err := writeNew(privOut, priv, 0o600); err != nil {
				return err
			}
			if err := writeNew(pubOut, pub, 0o644); err != nil {
				return err
			}
			if tokenOut != "" {
				tok, err := adminauth.MintToken(priv, adminauth.TokenClaims{Issuer: issuer, Subject: "admin", Role: role}, ttl)
				if err != nil {
					return err
				}
				return writeNew(tokenOut, []byte(tok+"\n"), 0o600)
			}
			return nil
		},
	}
	keygen.Flags().StringVar(&privOut, "private-key", "admin.key", "where to write the private key")
	keygen.Flags().StringVar(&pubOut, "public-key", "admin.pub", "where to write the public key")
	keygen.Flags().StringVar(&tokenOut, "token-file", "", "also write an admin token here")
	keygen.Flags().StringVar(&issuer, "issuer", "", "iss of the token")
	keygen.Flags().StringVar(&role, "role", "admin", "role of the token")
	keygen.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime of the token")

	return []*cobra.Command{setRP, getRP, setAP, setRV, getRV, keygen}
}

// writeNew refuses to overwrite: a key file is never replaced by accident.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
