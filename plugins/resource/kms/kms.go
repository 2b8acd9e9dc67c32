// Package kms is a resource backend that stores resources on disk only as
// ciphertext, so that a copied disk or backup reveals nothing.
//
// Each resource is sealed with its own fresh 256-bit data key (AES-256-GCM,
// the resource path "repo/type/tag" as additional data, so an envelope moved
// to another path does not open). The data key is wrapped by a key that
// never leaves a key manager, bound to the same path: an AWS KMS key (or a
// KMS-API server) through its Encrypt/Decrypt API, or an AES key in a
// PKCS#11 HSM through AES-GCM. The envelope file records which key wrapped
// its data key; rotation re-wraps data keys under the current key without
// touching the sealed resource.
package kms

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
)

// Config is the plugin's settings. Exactly one of AWS and PKCS11 is set.
type Config struct {
	// Dir holds the envelope files, <dir>/<repo>/<type>/<tag>. Created
	// (0700) when missing, unless ReadOnly.
	Dir    string        `json:"dir"`
	AWS    *AWSConfig    `json:"aws"`
	PKCS11 *PKCS11Config `json:"pkcs11"`
	// Rewrap re-wraps, at Configure, every data key wrapped by another key
	// than the configured one. The old keys must still be usable.
	Rewrap bool `json:"rewrap"`
	// Timeout bounds every call to the key manager. Default 10s.
	Timeout *Duration `json:"timeout"`
	// ReadOnly refuses Put and Delete.
	ReadOnly bool `json:"read_only"`
}

// Duration is a setting written as a Go duration string ("10s").
type Duration = sdk.Duration

const defaultTimeout = 10 * time.Second

// keyProvider wraps data keys with a key it never reveals. aad binds a
// wrapped key to the resource path.
type keyProvider interface {
	// name is recorded in envelopes ("aws-kms", "pkcs11").
	name() string
	// wrap encrypts dataKey under the configured key and returns that
	// key's identifier as it must be recorded for unwrap.
	wrap(ctx context.Context, dataKey, aad []byte) (keyID string, wrapped []byte, err error)
	unwrap(ctx context.Context, keyID string, wrapped, aad []byte) ([]byte, error)
	// current is the identifier wrap records, for deciding what to rewrap.
	current(ctx context.Context) (string, error)
	// rewrap moves a wrapped key under the configured key.
	rewrap(ctx context.Context, keyID string, wrapped, aad []byte) (newKeyID string, rewrapped []byte, err error)
	close()
}

// envelope is the file format. []byte fields are base64 in JSON.
type envelope struct {
	Version  int    `json:"version"`
	Provider string `json:"provider"`
	// Key identifies the key that wrapped WrappedKey: a KMS key ARN, or
	// the label of a PKCS#11 key.
	Key        string `json:"key"`
	WrappedKey []byte `json:"wrapped_key"`
	// Nonce and Ciphertext are the AES-256-GCM sealing of the resource
	// (tag appended) under the data key, with the path as additional data.
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

const envelopeVersion = 1

// Backend is the KMS-encrypted resource backend. The zero value refuses
// every call until Configure succeeds.
type Backend struct {
	st atomic.Pointer[state]
	mu sync.Mutex // serialises Configure
}

type state struct {
	store    *store
	keys     keyProvider
	readOnly bool
	timeout  time.Duration
}

var (
	_ resource.Backend = (*Backend)(nil)
	_ sdk.Configurer   = (*Backend)(nil)
)

// New returns an unconfigured backend.
func New() *Backend { return &Backend{} }

// Configure opens the directory and sets up the key provider; with rewrap
// it then re-wraps what the configured key did not wrap. The AWS provider
// contacts KMS only for rewrap; PKCS#11 opens the token at first use.
func (b *Backend) Configure(ctx context.Context, config []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var cfg Config
	if err := sdk.DecodeConfig(config, &cfg); err != nil {
		return err
	}
	st, err := newState(cfg)
	if err != nil {
		return err
	}
	if cfg.Rewrap {
		if err := st.rewrapAll(ctx); err != nil {
			st.close()
			return err
		}
	}
	if old := b.st.Swap(st); old != nil {
		old.close()
	}
	sdk.Logger().Info("kms backend configured", "provider", st.keys.name(), "read_only", st.readOnly)
	return nil
}

func newState(cfg Config) (*state, error) {
	if cfg.Dir == "" {
		return nil, sdk.InvalidArgument("kms settings: dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, sdk.InvalidArgument("kms settings: dir: %v", err)
	}
	st := &state{readOnly: cfg.ReadOnly, timeout: defaultTimeout}
	if cfg.Timeout != nil {
		if *cfg.Timeout == 0 {
			return nil, sdk.InvalidArgument("kms settings: timeout: a zero duration would never answer")
		}
		st.timeout = time.Duration(*cfg.Timeout)
	}
	switch {
	case (cfg.AWS == nil) == (cfg.PKCS11 == nil):
		return nil, sdk.InvalidArgument("kms settings: set exactly one of aws and pkcs11")
	case cfg.AWS != nil:
		st.keys, err = newAWSProvider(*cfg.AWS, st.timeout)
	default:
		st.keys, err = newPKCS11Provider(*cfg.PKCS11, st.timeout)
	}
	if err != nil {
		return nil, err
	}
	if st.store, err = openStore(dir, !cfg.ReadOnly); err != nil {
		st.keys.close()
		return nil, sdk.InvalidArgument("kms settings: opening dir: %v", err)
	}
	return st, nil
}

func (st *state) close() {
	st.store.close()
	st.keys.close()
}

func (b *Backend) state() (*state, error) {
	st := b.st.Load()
	if st == nil {
		return nil, sdk.Unavailable("kms backend: not configured")
	}
	return st, nil
}

func (b *Backend) writable() (*state, error) {
	st, err := b.state()
	if err != nil {
		return nil, err
	}
	if st.readOnly {
		return nil, sdk.Unsupported("kms backend: read-only")
	}
	return st, nil
}

// Get reads the envelope, unwraps its data key and opens the resource.
func (b *Backend) Get(ctx context.Context, p resource.Path) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	st, err := b.state()
	if err != nil {
		return nil, err
	}
	env, err := st.load(p)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	aad := []byte(p.String())
	dk, err := st.keys.unwrap(ctx, env.Key, env.WrappedKey, aad)
	if err != nil {
		return nil, fmt.Errorf("resource %s: unwrapping its data key: %w", p, err)
	}
	defer clear(dk)
	gcm, err := newGCM(dk)
	if err != nil {
		return nil, sdk.Internal("resource %s: %v", p, err)
	}
	if len(env.Nonce) != gcm.NonceSize() {
		return nil, sdk.Internal("resource %s: envelope nonce has %d bytes, want %d", p, len(env.Nonce), gcm.NonceSize())
	}
	data, err := gcm.Open(nil, env.Nonce, env.Ciphertext, aad)
	if err != nil {
		return nil, sdk.Internal("resource %s: the sealed resource does not open (tampered envelope)", p)
	}
	return data, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

func (st *state) load(p resource.Path) (*envelope, error) {
	raw, err := st.store.read(p)
	if err != nil {
		return nil, err
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, sdk.Internal("resource %s: the envelope file is not valid: %v", p, err)
	}
	switch {
	case env.Version != envelopeVersion:
		return nil, sdk.Internal("resource %s: envelope version %d, want %d", p, env.Version, envelopeVersion)
	case env.Provider != st.keys.name():
		return nil, sdk.Internal("resource %s: its data key was wrapped by provider %q, this backend uses %q", p, env.Provider, st.keys.name())
	case env.Key == "" || len(env.WrappedKey) == 0:
		return nil, sdk.Internal("resource %s: the envelope has no wrapped key", p)
	}
	return &env, nil
}

// Put seals data under a fresh data key, wraps the key and writes the
// envelope atomically. The plaintext never reaches the disk.
func (b *Backend) Put(ctx context.Context, p resource.Path, data []byte) error {
	if err := p.Validate(); err != nil {
		return err
	}
	st, err := b.writable()
	if err != nil {
		return err
	}
	dk := make([]byte, 32)
	defer clear(dk)
	nonce := make([]byte, 12)
	rand.Read(dk)
	rand.Read(nonce)
	gcm, err := newGCM(dk)
	if err != nil {
		return sdk.Internal("resource %s: %v", p, err)
	}
	aad := []byte(p.String())
	env := envelope{Version: envelopeVersion, Provider: st.keys.name(), Nonce: nonce, Ciphertext: gcm.Seal(nil, nonce, data, aad)}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	if env.Key, env.WrappedKey, err = st.keys.wrap(ctx, dk, aad); err != nil {
		return fmt.Errorf("resource %s: wrapping its data key: %w", p, err)
	}
	raw, err := json.Marshal(env)
	if err != nil {
		return sdk.Internal("resource %s: %v", p, err)
	}
	return st.store.write(p, raw)
}

// Delete removes the envelope.
func (b *Backend) Delete(ctx context.Context, p resource.Path) error {
	if err := p.Validate(); err != nil {
		return err
	}
	st, err := b.writable()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return st.store.remove(p)
}

// List returns the resources that have an envelope file.
func (b *Backend) List(ctx context.Context, repo string) ([]resource.Path, error) {
	st, err := b.state()
	if err != nil {
		return nil, err
	}
	if repo != "" {
		if err := resource.ValidateSegment(repo); err != nil {
			return nil, sdk.InvalidArgument("repo: %v", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return st.store.list(repo)
}

// rewrapAll re-wraps every data key not wrapped by the configured key. Each
// envelope is rewritten atomically with only its key fields changed, so an
// interrupted run leaves every envelope readable and the next run picks up
// where it stopped. It runs before the backend serves, so no Put races it.
func (st *state) rewrapAll(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, st.timeout)
	cur, err := st.keys.current(cctx)
	cancel()
	if err != nil {
		return fmt.Errorf("kms rewrap: resolving the configured key: %w", err)
	}
	paths, err := st.store.list("")
	if err != nil {
		return err
	}
	done := 0
	for _, p := range paths {
		env, err := st.load(p)
		if err != nil {
			return fmt.Errorf("kms rewrap: %w", err)
		}
		if env.Key == cur {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, st.timeout)
		key, wrapped, err := st.keys.rewrap(cctx, env.Key, env.WrappedKey, []byte(p.String()))
		cancel()
		if err != nil {
			return fmt.Errorf("kms rewrap: resource %s (wrapped by %s), after %d re-wrapped: %w", p, env.Key, done, err)
		}
		env.Key, env.WrappedKey = key, wrapped
		raw, err := json.Marshal(env)
		if err != nil {
			return sdk.Internal("kms rewrap: %v", err)
		}
		if err := st.store.write(p, raw); err != nil {
			return fmt.Errorf("kms rewrap: %w", err)
		}
		done++
	}
	sdk.Logger().Info("kms rewrap done", "rewrapped", done, "resources", len(paths), "key", cur)
	return nil
}
