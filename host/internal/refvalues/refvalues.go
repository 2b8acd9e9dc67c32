// Package refvalues keeps the reference values that attestation policies
// compare claims against (trustee's RVPS, built in): named JSON values with
// an expiry, registered with trustee's RVPS message and read by policies
// through query_reference_value.
//
// Records live in the durable store (namespace "reference-value", one key
// per name, trustee's record shape). Policies read an immutable in-memory
// Snapshot instead, swapped atomically on every write and on Reload, so the
// hot path takes no lock and touches no disk.
package refvalues

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gokbs/kbs/host/internal/store"
	"github.com/gokbs/kbs/sdk"
)

const (
	// MessageVersion is the only RVPS message version trustee defines.
	MessageVersion = "0.1.0"
	// RecordVersion is the version written into stored records.
	RecordVersion = "0.1.0"
	// TypeSample is the provenance type whose payload is the values
	// themselves, unsigned: std-base64 of {"name": value, ...}.
	TypeSample = "sample"
	// MaxNameLen bounds reference value names.
	MaxNameLen = 256
)

// Message is trustee's RVPS message, the body of
// POST /kbs/v0/reference-value.
type Message struct {
	Version string `json:"version"`
	Type    string `json:"type"`
	Payload string `json:"payload"`
}

// Record is one stored reference value, in trustee's RVPS record shape.
type Record struct {
	Version    string    `json:"version"`
	Name       string    `json:"name"`
	Expiration time.Time `json:"expiration"`
	Value      any       `json:"value"`
}

// Options tune a Registry; the zero value is the default.
type Options struct {
	// Validity is how long a registered value lives (default: 12 months,
	// as trustee's sample extractor).
	Validity time.Duration
	// Now is the clock (default time.Now); tests replace it.
	Now func() time.Time
}

// Registry registers, stores and serves reference values.
type Registry struct {
	st       store.Store
	now      func() time.Time
	validity time.Duration

	snap atomic.Pointer[Snapshot]
	// mu serialises writers and reloads, so that a snapshot built from the
	// store never replaces a newer one built by a concurrent Register.
	mu  sync.Mutex
	rev uint64 // namespace revision the snapshot was loaded at
}

// New returns a Registry over st, loaded with the values already stored.
func New(ctx context.Context, st store.Store, opts Options) (*Registry, error) {
	r := &Registry{st: st, now: opts.Now, validity: opts.Validity}
	if r.now == nil {
		r.now = time.Now
	}
	r.snap.Store(&Snapshot{})
	if err := r.Reload(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Register processes one RVPS message and stores the values it carries,
// replacing values of the same name. It returns the registered names,
// sorted. Malformed messages are sdk.InvalidArgument errors whose text
// says what to fix.
func (r *Registry) Register(ctx context.Context, message []byte) ([]string, error) {
	var msg Message
	if err := decodeStrict(message, &msg); err != nil {
		return nil, sdk.InvalidArgument("reference value message: %v", err)
	}
	// trustee defaults a missing version to 0.1.0.
	if msg.Version != "" && msg.Version != MessageVersion {
		return nil, sdk.InvalidArgument("reference value message: unsupported version %q (supported: %s)", msg.Version, MessageVersion)
	}
	var values map[string]json.RawMessage
	switch msg.Type {
	case TypeSample:
		var err error
		if values, err = extractSample(msg.Payload); err != nil {
			return nil, err
		}
	case "":
		return nil, sdk.InvalidArgument("reference value message: missing type (supported: %s)", TypeSample)
	default:
		return nil, sdk.InvalidArgument("reference value message: unsupported type %q (supported: %s)", msg.Type, TypeSample)
	}

	validity := r.validity
	exp := r.now().UTC().Truncate(time.Second)
	if validity > 0 {
		exp = exp.Add(validity)
	} else {
		exp = exp.AddDate(0, 12, 0)
	}
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)

	r.mu.Lock()
	defer r.mu.Unlock()
	added := make(map[string]entry, len(names))
	for _, name := range names {
		rec := storedRecord{Version: RecordVersion, Name: name, Expiration: exp, Value: values[name]}
		raw, err := json.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("reference value %q: %w", name, err)
		}
		if err := r.st.Put(ctx, store.NamespaceReferenceValue, name, raw); err != nil {
			// Values stored before the failure stay stored; publish them too
			// so that the snapshot matches the store.
			r.publishLocked(added)
			return nil, fmt.Errorf("storing reference value %q: %w", name, err)
		}
		v, err := decodeValue(values[name])
		if err != nil {
			return nil, err
		}
		added[name] = entry{value: v, expires: exp}
	}
	r.publishLocked(added)
	return names, nil
}

func (r *Registry) publishLocked(added map[string]entry) {
	if len(added) == 0 {
		return
	}
	old := r.snap.Load()
	next := make(map[string]entry, len(old.values)+len(added))
	for k, v := range old.values {
		next[k] = v
	}
	for k, v := range added {
		next[k] = v
	}
	r.snap.Store(&Snapshot{values: next})
}

// Get reads one value from the store (not the snapshot, so that an admin
// sees what is stored even before this replica reloads). An expired or
// unknown name is (nil, false, nil).
func (r *Registry) Get(ctx context.Context, name string) (any, bool, error) {
	if err := validateName(name); err != nil {
		return nil, false, err
	}
	raw, err := r.st.Get(ctx, store.NamespaceReferenceValue, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading reference value %q: %w", name, err)
	}
	rec, err := parseRecord(raw)
	if err != nil {
		return nil, false, fmt.Errorf("reference value %q: %w", name, err)
	}
	if !r.now().Before(rec.Expiration) {
		return nil, false, nil
	}
	return rec.Value, true, nil
}

// All returns every unexpired record in the store, sorted by name.
func (r *Registry) All(ctx context.Context) ([]Record, error) {
	recs, _, err := r.load(ctx)
	if err != nil {
		return nil, err
	}
	now := r.now()
	out := make([]Record, 0, len(recs))
	for _, rec := range recs {
		if now.Before(rec.Expiration) {
			out = append(out, rec)
		}
	}
	return out, nil
}

// Snapshot returns the current immutable view for policy evaluation.
func (r *Registry) Snapshot() *Snapshot { return r.snap.Load() }

// Now is the registry's clock, so that callers of Snapshot.Lookup judge
// expiry the same way.
func (r *Registry) Now() time.Time { return r.now() }

// Reload rebuilds the snapshot from the store, picking up writes made by
// other replicas.
func (r *Registry) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	recs, rev, err := r.load(ctx)
	if err != nil {
		return err
	}
	next := make(map[string]entry, len(recs))
	for _, rec := range recs {
		next[rec.Name] = entry{value: rec.Value, expires: rec.Expiration}
	}
	r.snap.Store(&Snapshot{values: next})
	r.rev = rev
	return nil
}

// Refresh reloads only if the store changed since the last load: cheap
// enough to call on a short timer.
func (r *Registry) Refresh(ctx context.Context) error {
	rev, err := r.st.Revision(ctx, store.NamespaceReferenceValue)
	if err != nil {
		return fmt.Errorf("reference values: %w", err)
	}
	r.mu.Lock()
	same := rev == r.rev
	r.mu.Unlock()
	if same {
		return nil
	}
	return r.Reload(ctx)
}

// load reads every record. The revision is read first: a write that lands
// during the listing makes the next Refresh load again.
func (r *Registry) load(ctx context.Context) ([]Record, uint64, error) {
	rev, err := r.st.Revision(ctx, store.NamespaceReferenceValue)
	if err != nil {
		return nil, 0, fmt.Errorf("reference values: %w", err)
	}
	names, err := r.st.List(ctx, store.NamespaceReferenceValue)
	if err != nil {
		return nil, 0, fmt.Errorf("reference values: %w", err)
	}
	recs := make([]Record, 0, len(names))
	for _, name := range names {
		raw, err := r.st.Get(ctx, store.NamespaceReferenceValue, name)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted while listing
		}
		if err != nil {
			return nil, 0, fmt.Errorf("reference value %q: %w", name, err)
		}
		rec, err := parseRecord(raw)
		if err != nil {
			return nil, 0, fmt.Errorf("reference value %q: %w", name, err)
		}
		recs = append(recs, rec)
	}
	return recs, rev, nil
}

// Snapshot is an immutable set of reference values. Values are shared:
// callers must not modify them.
type Snapshot struct {
	values map[string]entry
}

type entry struct {
	value   any
	expires time.Time
}

// Lookup returns the value of name unless it is unknown or expired at now.
func (s *Snapshot) Lookup(name string, now time.Time) (any, bool) {
	e, ok := s.values[name]
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	return e.value, true
}

// Len is the number of values, expired ones included.
func (s *Snapshot) Len() int { return len(s.values) }

// storedRecord keeps the value as raw JSON so that numbers round-trip
// exactly.
type storedRecord struct {
	Version    string          `json:"version"`
	Name       string          `json:"name"`
	Expiration time.Time       `json:"expiration"`
	Value      json.RawMessage `json:"value"`
}

func parseRecord(raw []byte) (Record, error) {
	var sr storedRecord
	if err := json.Unmarshal(raw, &sr); err != nil {
		return Record{}, fmt.Errorf("corrupt record: %w", err)
	}
	v, err := decodeValue(sr.Value)
	if err != nil {
		return Record{}, fmt.Errorf("corrupt record: %w", err)
	}
	return Record{Version: sr.Version, Name: sr.Name, Expiration: sr.Expiration, Value: v}, nil
}

// extractSample decodes a sample payload: std-base64 (padded or not) of a
// JSON object mapping names to values. trustee once required arrays of
// strings; any JSON value but null is accepted now, as trustee does today.
func extractSample(payload string) (map[string]json.RawMessage, error) {
	if payload == "" {
		return nil, sdk.InvalidArgument("sample payload: empty")
	}
	raw, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		var err2 error
		if raw, err2 = base64.RawStdEncoding.DecodeString(payload); err2 != nil {
			return nil, sdk.InvalidArgument("sample payload: not standard base64: %v", err)
		}
	}
	var values map[string]json.RawMessage
	if err := decodeStrict(raw, &values); err != nil {
		return nil, sdk.InvalidArgument("sample payload: want a JSON object of name to value: %v", err)
	}
	if len(values) == 0 {
		return nil, sdk.InvalidArgument("sample payload: no reference values")
	}
	for name, v := range values {
		if err := validateName(name); err != nil {
			return nil, err
		}
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return nil, sdk.InvalidArgument("sample payload: reference value %q is null", name)
		}
	}
	return values, nil
}

func validateName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return sdk.InvalidArgument("reference value name must be 1 to %d characters", MaxNameLen)
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-' || c == '.' || c == ':' || c == '/' || c == '@' || c == '+'
		if !ok {
			return sdk.InvalidArgument("reference value name %q: only letters, digits and _-.:/@+ are allowed", name)
		}
	}
	return nil
}

// decodeValue keeps numbers as json.Number: reference values are often
// large integers or exact version numbers.
func decodeValue(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
