package policy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gokbs/kbs/host/internal/refvalues"
	"github.com/gokbs/kbs/host/internal/store"
)

var update = flag.Bool("update", false, "rewrite golden files")

// evidenceDir is the shared real-hardware evidence (see its INDEX.md).
const evidenceDir = "../../../../shared/evidence"

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

type fixture struct {
	st  store.Store
	rv  *refvalues.Registry
	clk *clock
	e   *Engine
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureOn(t, store.NewMemory(), Options{})
}

func newFixtureOn(t testing.TB, st store.Store, opts Options) *fixture {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: t0}
	rv, err := refvalues.New(ctx, st, refvalues.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(ctx, st, rv, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{st: st, rv: rv, clk: clk, e: e}
}

// register stores reference values through the RVPS sample message, as
// the admin endpoint does.
func (f *fixture) register(t testing.TB, values map[string]any) {
	t.Helper()
	if len(values) == 0 {
		return
	}
	payload, err := json.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := json.Marshal(refvalues.Message{Version: "0.1.0", Type: "sample", Payload: base64.StdEncoding.EncodeToString(payload)})
	if _, err := f.rv.Register(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

func loadJSON(t testing.TB, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return decodeJSON(t, b)
}

func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// claims returns the annotated evidence of testdata/claims/<name>.json.
func claims(t testing.TB, name string) map[string]any {
	t.Helper()
	return loadJSON(t, filepath.Join("testdata", "claims", name+".json"))
}

// evidenceClaims wraps a claims file of the shared evidence under its TEE
// name, skipping the test when the evidence is not there.
func evidenceClaims(t testing.TB, tee, rel string) map[string]any {
	t.Helper()
	path := filepath.Join(evidenceDir, rel)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("evidence not available: %v", err)
	}
	return map[string]any{tee: loadJSON(t, path)}
}

// with returns a deep copy of m with the value at a dotted path replaced.
func with(t testing.TB, m map[string]any, path []string, v any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(m)
	cp := decodeJSON(t, b)
	cur := cp
	for _, k := range path[:len(path)-1] {
		next, ok := cur[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[k] = next
		}
		cur = next
	}
	cur[path[len(path)-1]] = v
	return cp
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the golden file:\n%s", name, got)
	}
}
