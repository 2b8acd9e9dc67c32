//go:build cgo

package kms

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ThalesGroup/crypto11"

	"github.com/gokbs/kbs/sdk"
)

// PKCS11Config selects an AES key in a PKCS#11 token.
type PKCS11Config struct {
	// Module is the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so.
	Module string `json:"module"`
	// TokenLabel selects the token.
	TokenLabel string `json:"token_label"`
	// PinFile holds the user PIN.
	PinFile string `json:"pin_file"`
	// KeyLabel is the AES key (CKA_LABEL) that wraps new data keys. It
	// must allow CKM_AES_GCM encryption and decryption.
	KeyLabel string `json:"key_label"`
	// ModuleEnv is set in the plugin's environment before the module is
	// loaded, for modules configured through variables (SOFTHSM2_CONF, a
	// vendor's configuration path): kbs-host gives plugins no environment.
	ModuleEnv map[string]string `json:"module_env"`
}

const gcmNonceSize = 12

type pkcs11Provider struct {
	cfg     PKCS11Config
	pin     string
	timeout time.Duration

	mu   sync.Mutex
	ctx  *crypto11.Context
	keys map[string]cipher.AEAD // by label
}

func newPKCS11Provider(cfg PKCS11Config, timeout time.Duration) (keyProvider, error) {
	if cfg.Module == "" || cfg.TokenLabel == "" || cfg.PinFile == "" || cfg.KeyLabel == "" {
		return nil, sdk.InvalidArgument("kms settings: pkcs11 needs module, token_label, pin_file and key_label")
	}
	if _, err := os.Stat(cfg.Module); err != nil {
		return nil, sdk.InvalidArgument("kms settings: pkcs11.module: %v", err)
	}
	b, err := os.ReadFile(cfg.PinFile)
	if err != nil {
		return nil, sdk.InvalidArgument("kms settings: pkcs11.pin_file: %v", err)
	}
	pin := strings.TrimSpace(string(b))
	if pin == "" {
		return nil, sdk.InvalidArgument("kms settings: pkcs11.pin_file is empty")
	}
	for k, v := range cfg.ModuleEnv {
		if err := os.Setenv(k, v); err != nil {
			return nil, sdk.InvalidArgument("kms settings: pkcs11.module_env %s: %v", k, err)
		}
	}
	return &pkcs11Provider{cfg: cfg, pin: pin, timeout: timeout, keys: map[string]cipher.AEAD{}}, nil
}

func (p *pkcs11Provider) name() string { return "pkcs11" }

func (p *pkcs11Provider) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx != nil {
		p.ctx.Close()
		p.ctx, p.keys = nil, map[string]cipher.AEAD{}
	}
}

// aead returns the HSM-backed AES-GCM of the key labelled label, opening
// the token on first use (and again after a failed open).
func (p *pkcs11Provider) aead(label string) (cipher.AEAD, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a := p.keys[label]; a != nil {
		return a, nil
	}
	if p.ctx == nil {
		c, err := crypto11.Configure(&crypto11.Config{
			Path: p.cfg.Module, TokenLabel: p.cfg.TokenLabel, Pin: p.pin,
			GCMIVLength: gcmNonceSize, PoolWaitTimeout: p.timeout,
		})
		if err != nil {
			// crypto11's messages name the module and token, not the PIN.
			return nil, sdk.Unavailable("pkcs11 token %q: %v", p.cfg.TokenLabel, err)
		}
		p.ctx = c
	}
	k, err := p.ctx.FindKey(nil, []byte(label))
	if err != nil {
		return nil, sdk.Unavailable("pkcs11 token %q: no usable AES key labelled %q: %v", p.cfg.TokenLabel, label, err)
	}
	a, err := k.NewGCM()
	if err != nil {
		return nil, sdk.Unavailable("pkcs11 key %q: %v", label, err)
	}
	p.keys[label] = a
	return a, nil
}

// seal runs Seal in the HSM; crypto11 panics when the token fails.
func seal(a cipher.AEAD, nonce, plain, aad []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return a.Seal(nonce, nonce, plain, aad), nil
}

// wrap returns nonce || AES-GCM(dataKey) computed by the HSM.
func (p *pkcs11Provider) wrap(_ context.Context, dataKey, aad []byte) (string, []byte, error) {
	a, err := p.aead(p.cfg.KeyLabel)
	if err != nil {
		return "", nil, err
	}
	nonce := make([]byte, gcmNonceSize, gcmNonceSize+len(dataKey)+a.Overhead())
	rand.Read(nonce)
	out, err := seal(a, nonce, dataKey, aad)
	if err != nil {
		return "", nil, sdk.Unavailable("pkcs11 key %q: wrapping: %v", p.cfg.KeyLabel, err)
	}
	return p.cfg.KeyLabel, out, nil
}

func (p *pkcs11Provider) unwrap(_ context.Context, label string, wrapped, aad []byte) ([]byte, error) {
	if len(wrapped) <= gcmNonceSize {
		return nil, sdk.Internal("pkcs11: wrapped data key too short")
	}
	a, err := p.aead(label)
	if err != nil {
		return nil, err
	}
	dk, err := a.Open(nil, wrapped[:gcmNonceSize], wrapped[gcmNonceSize:], aad)
	if err != nil {
		return nil, sdk.Internal("pkcs11 key %q: the wrapped data key does not decrypt (damaged or forged envelope): %v", label, err)
	}
	return dk, nil
}

func (p *pkcs11Provider) current(context.Context) (string, error) {
	if _, err := p.aead(p.cfg.KeyLabel); err != nil {
		return "", err
	}
	return p.cfg.KeyLabel, nil
}

func (p *pkcs11Provider) rewrap(ctx context.Context, label string, wrapped, aad []byte) (string, []byte, error) {
	dk, err := p.unwrap(ctx, label, wrapped, aad)
	if err != nil {
		return "", nil, err
	}
	defer clear(dk)
	return p.wrap(ctx, dk, aad)
}
