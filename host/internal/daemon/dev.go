package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gokbs/kbs/host/internal/adminauth"
	"github.com/gokbs/kbs/host/internal/config"
)

// DevOptions are the few choices of --dev.
type DevOptions struct {
	// Dir holds keys, state and the repository; created when missing.
	Dir       string
	Listen    string
	PluginDir string
	// Environ overrides settings as KBS_* variables do in production.
	Environ []string
}

// DevConfig returns the configuration of `kbs-host --dev`: plain HTTP on
// loopback, the sample verifier, the fs repository at DIR/repository, an
// EAR token key at DIR/token.key that survives restarts, and a permissive
// first resource policy. It creates what it needs under DIR.
func DevConfig(o DevOptions) (*config.Config, error) {
	if err := ensureDir(o.Dir); err != nil {
		return nil, err
	}
	repo := filepath.Join(o.Dir, "repository")
	if err := ensureDir(repo); err != nil {
		return nil, err
	}
	keyPath := filepath.Join(o.Dir, "token.key")
	if err := ensureECKey(keyPath); err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.HTTPServer.Sockets = []string{o.Listen}
	cfg.HTTPServer.InsecureHTTP = true
	cfg.Plugins.Dir = o.PluginDir
	cfg.Plugins.Verifier = []config.PluginSpec{{Name: "sample"}}
	cfg.Plugins.Resource = []config.PluginSpec{{Name: "fs", Config: map[string]any{"dir": repo}}}
	cfg.Plugins.Token = &config.PluginSpec{Name: "ear", Config: map[string]any{"signing_key_path": keyPath}}
	if err := ensureDevAdmin(o.Dir); err != nil {
		return nil, err
	}
	cfg.Admin = adminauth.Config{
		AuthorizationMode: "AuthenticatedAuthorization",
		Authentication: adminauth.Authentication{BearerJWT: adminauth.BearerJWT{
			IdentityProviders: []adminauth.IdentityProvider{{Issuer: DevAdminIssuer, PublicKeyURI: filepath.Join(o.Dir, "admin.pub")}},
		}},
		Authorization: adminauth.Authorization{RegexACL: adminauth.RegexACL{
			ACLs: []adminauth.ACL{{Role: "admin", AllowedEndpoints: "^/kbs/v0/.+$"}},
		}},
	}
	cfg.Storage.Dir = filepath.Join(o.Dir, "state")
	cfg.Policy.DevAllowAll = true
	return config.LoadOver(cfg, "", o.Environ)
}

// DevAdminIssuer is the issuer of dev mode's admin tokens.
const DevAdminIssuer = "kbs-dev"

// DevAdminTokenTTL is how long the admin token written at each dev start
// is valid.
const DevAdminTokenTTL = 24 * time.Hour

// ensureDevAdmin keeps an Ed25519 admin key pair in DIR/admin.key and
// DIR/admin.pub, and writes a fresh admin token to DIR/admin-token at
// every start (tokens expire; the key stays).
func ensureDevAdmin(dir string) error {
	keyPath, pubPath := filepath.Join(dir, "admin.key"), filepath.Join(dir, "admin.pub")
	priv, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		var pub []byte
		if priv, pub, err = adminauth.GenerateKeyPair(); err != nil {
			return fmt.Errorf("dev admin key: %w", err)
		}
		if err := writeFileAtomic(keyPath, priv, 0o600); err != nil {
			return fmt.Errorf("dev admin key: %w", err)
		}
		if err := writeFileAtomic(pubPath, pub, 0o644); err != nil {
			return fmt.Errorf("dev admin key: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("dev admin key: %w", err)
	}
	if _, err := os.Stat(pubPath); err != nil {
		pub, err := adminauth.PublicKeyPEM(priv)
		if err != nil {
			return fmt.Errorf("dev admin key: %w", err)
		}
		if err := writeFileAtomic(pubPath, pub, 0o644); err != nil {
			return fmt.Errorf("dev admin key: %w", err)
		}
	}
	tok, err := adminauth.MintToken(priv, adminauth.TokenClaims{Issuer: DevAdminIssuer, Subject: "dev-admin", Role: "admin"}, DevAdminTokenTTL)
	if err != nil {
		return fmt.Errorf("dev admin token: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, "admin-token"), []byte(tok+"\n"), 0o600)
}

// ensureECKey writes a P-256 private key to path unless one is there.
func ensureECKey(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating the token key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding the token key: %w", err)
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFileAtomic writes through a temporary file and a rename, so that a
// crash leaves the old file or the new one, never half of one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
