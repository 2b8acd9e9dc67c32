package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterr "go.etcd.io/bbolt/errors"
)

// Bolt is the embedded default Store: one bbolt file, one bucket per
// namespace. Every write is a transaction committed with fsync, and bbolt's
// copy-on-write pages make a commit all-or-nothing, so a SIGKILL or a power
// cut leaves either the old or the new value, never a torn one.
type Bolt struct {
	db *bolt.DB
}

var _ Store = (*Bolt)(nil)

// lockTimeout bounds the wait for bbolt's file lock: a second broker started
// on the same file fails fast instead of hanging.
const lockTimeout = 2 * time.Second

// OpenBolt opens (creating if needed) the database file at path. Its parent
// directory is created with mode 0700 and the file with mode 0600: the file
// holds admin material.
func OpenBolt(path string) (*Bolt, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		if errors.Is(err, bolterr.ErrTimeout) {
			return nil, fmt.Errorf("store: %s is locked by another process", path)
		}
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

func (s *Bolt) Get(ctx context.Context, ns, key string) ([]byte, error) {
	if err := ValidateKey(ns, key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(ns))
		if b == nil {
			return notFound(ns, key)
		}
		v := b.Get([]byte(key))
		if v == nil {
			return notFound(ns, key)
		}
		// bbolt's slice is only valid inside the transaction.
		out = bytes.Clone(v)
		return nil
	})
	return out, err
}

func (s *Bolt) Put(ctx context.Context, ns, key string, value []byte) error {
	_, err := s.put(ctx, ns, key, value, true)
	return err
}

func (s *Bolt) PutIfAbsent(ctx context.Context, ns, key string, value []byte) (bool, error) {
	return s.put(ctx, ns, key, value, false)
}

func (s *Bolt) put(ctx context.Context, ns, key string, value []byte, overwrite bool) (bool, error) {
	if err := ValidateKey(ns, key); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if value == nil {
		// bbolt reads a nil value back as "absent".
		value = []byte{}
	}
	wrote := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(ns))
		if err != nil {
			return err
		}
		if !overwrite && b.Get([]byte(key)) != nil {
			return nil
		}
		if err := b.Put([]byte(key), value); err != nil {
			return err
		}
		if _, err := b.NextSequence(); err != nil {
			return err
		}
		wrote = true
		return nil
	})
	return wrote, wrap("put", err)
}

func (s *Bolt) Delete(ctx context.Context, ns, key string) error {
	if err := ValidateKey(ns, key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(ns))
		if b == nil || b.Get([]byte(key)) == nil {
			return notFound(ns, key)
		}
		if err := b.Delete([]byte(key)); err != nil {
			return wrap("delete", err)
		}
		_, err := b.NextSequence()
		return wrap("delete", err)
	})
}

func (s *Bolt) List(ctx context.Context, ns string) ([]string, error) {
	if err := validateNamespace(ns); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	keys := []string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(ns))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	return keys, wrap("list", err)
}

func (s *Bolt) Revision(ctx context.Context, ns string) (uint64, error) {
	if err := validateNamespace(ns); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var rev uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte(ns)); b != nil {
			rev = b.Sequence()
		}
		return nil
	})
	return rev, wrap("revision", err)
}

func (s *Bolt) Close() error { return wrap("close", s.db.Close()) }
