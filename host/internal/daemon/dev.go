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
	cfg.Admin.Mode = "InsecureAllowAll"
	cfg.Storage.Dir = filepath.Join(o.Dir, "state")
	cfg.Policy.DevAllowAll = true
	return config.LoadOver(cfg, "", o.Environ)
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
