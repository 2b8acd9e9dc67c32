// Package store is the broker's durable key/value state: policies,
// reference values and admin material, grouped by namespace.
//
// The interface is deliberately small (get, put, put-if-absent, delete,
// list, and a per-namespace revision) so that it maps onto an embedded
// database (bbolt, the default), Redis or PostgreSQL without emulation.
// Values are opaque bytes; callers own their encoding.
package store

import (
	"context"
	"fmt"
	"unicode/utf8"

	"github.com/gokbs/kbs/sdk"
)

// Namespaces used by the host. A backend accepts any valid namespace; these
// constants keep the callers consistent.
const (
	NamespaceAttestationPolicy = "attestation-policy"
	NamespaceResourcePolicy    = "resource-policy"
	NamespaceReferenceValue    = "reference-value"
	NamespaceAdmin             = "admin"
)

// ErrNotFound matches (with errors.Is) every "no such key" error of every
// backend. It is the SDK's not-found class, so the API layer maps it to 404
// without knowing about this package.
var ErrNotFound = sdk.ErrNotFound

// Store is a durable key/value store. Every method is safe for concurrent
// use. A write that returned nil is durable: it survives a crash of the
// process (and, for the embedded backend, of the machine).
type Store interface {
	// Get returns the value of key, or an error matching ErrNotFound.
	Get(ctx context.Context, namespace, key string) ([]byte, error)
	// Put creates or replaces key.
	Put(ctx context.Context, namespace, key string, value []byte) error
	// PutIfAbsent creates key unless it exists, atomically; it reports
	// whether it wrote. Built-in defaults are written this way so that a
	// starting replica never overwrites what an admin set.
	PutIfAbsent(ctx context.Context, namespace, key string, value []byte) (bool, error)
	// Delete removes key, or returns an error matching ErrNotFound.
	Delete(ctx context.Context, namespace, key string) error
	// List returns the keys of a namespace in ascending byte order. An
	// unknown namespace is empty.
	List(ctx context.Context, namespace string) ([]string, error)
	// Revision is a counter that grows with every write to the namespace
	// (0 for a namespace never written). Replicas poll it to learn that
	// another replica changed something and reload.
	Revision(ctx context.Context, namespace string) (uint64, error)
	// Close releases the backend. The Store must not be used afterwards.
	Close() error
}

// MaxKeyLen bounds keys so that every backend can index them.
const MaxKeyLen = 512

// ValidateKey checks a namespace and key pair the same way for every
// backend: namespaces are short lowercase names, keys are non-empty UTF-8
// without control characters.
func ValidateKey(namespace, key string) error {
	if err := validateNamespace(namespace); err != nil {
		return err
	}
	if key == "" {
		return sdk.InvalidArgument("store: empty key")
	}
	if len(key) > MaxKeyLen {
		return sdk.InvalidArgument("store: key longer than %d bytes", MaxKeyLen)
	}
	if !utf8.ValidString(key) {
		return sdk.InvalidArgument("store: key is not valid UTF-8")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return sdk.InvalidArgument("store: key contains a control character")
		}
	}
	return nil
}

func validateNamespace(ns string) error {
	if ns == "" || len(ns) > 64 {
		return sdk.InvalidArgument("store: namespace must be 1 to 64 characters")
	}
	for _, c := range []byte(ns) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return sdk.InvalidArgument("store: namespace %q: only a-z, 0-9, '-' and '_' are allowed", ns)
		}
	}
	return nil
}

func notFound(namespace, key string) error {
	return sdk.NotFound("%s %q not found", namespace, key)
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s: %w", op, err)
}
