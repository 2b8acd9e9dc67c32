package store

import (
	"bytes"
	"context"
	"slices"
	"sync"
)

// Memory is a Store held in memory, for tests and throw-away brokers.
type Memory struct {
	mu   sync.RWMutex
	data map[string]map[string][]byte
	rev  map[string]uint64
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{data: map[string]map[string][]byte{}, rev: map[string]uint64{}}
}

func (m *Memory) Get(ctx context.Context, ns, key string) ([]byte, error) {
	if err := ValidateKey(ns, key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.data[ns][key]
	if !ok {
		return nil, notFound(ns, key)
	}
	return bytes.Clone(v), nil
}

func (m *Memory) Put(ctx context.Context, ns, key string, value []byte) error {
	_, err := m.put(ctx, ns, key, value, true)
	return err
}

func (m *Memory) PutIfAbsent(ctx context.Context, ns, key string, value []byte) (bool, error) {
	return m.put(ctx, ns, key, value, false)
}

func (m *Memory) put(ctx context.Context, ns, key string, value []byte, overwrite bool) (bool, error) {
	if err := ValidateKey(ns, key); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.data[ns]
	if b == nil {
		b = map[string][]byte{}
		m.data[ns] = b
	}
	if _, exists := b[key]; exists && !overwrite {
		return false, nil
	}
	// A nil value is stored as empty, as the durable backends do.
	b[key] = append([]byte{}, value...)
	m.rev[ns]++
	return true, nil
}

func (m *Memory) Delete(ctx context.Context, ns, key string) error {
	if err := ValidateKey(ns, key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.data[ns][key]; !ok {
		return notFound(ns, key)
	}
	delete(m.data[ns], key)
	m.rev[ns]++
	return nil
}

func (m *Memory) List(ctx context.Context, ns string) ([]string, error) {
	if err := validateNamespace(ns); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	keys := make([]string, 0, len(m.data[ns]))
	for k := range m.data[ns] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

func (m *Memory) Revision(ctx context.Context, ns string) (uint64, error) {
	if err := validateNamespace(ns); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rev[ns], nil
}

// Close is a no-op; the data stays readable for tests that reopen nothing.
func (m *Memory) Close() error { return nil }
