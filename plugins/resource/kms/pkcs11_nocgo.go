//go:build !cgo

package kms

import (
	"time"

	"github.com/gokbs/kbs/sdk"
)

// PKCS11Config selects an AES key in a PKCS#11 token (see pkcs11.go). This
// build has no cgo, hence no PKCS#11.
type PKCS11Config struct {
	Module     string            `json:"module"`
	TokenLabel string            `json:"token_label"`
	PinFile    string            `json:"pin_file"`
	KeyLabel   string            `json:"key_label"`
	ModuleEnv  map[string]string `json:"module_env"`
}

func newPKCS11Provider(PKCS11Config, time.Duration) (keyProvider, error) {
	return nil, sdk.Unsupported("kms settings: this plugin was built without cgo and cannot load PKCS#11 modules; rebuild with CGO_ENABLED=1")
}
