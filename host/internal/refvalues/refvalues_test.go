package refvalues

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gokbs/kbs/host/internal/store"
	"github.com/gokbs/kbs/sdk"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newRegistry(t *testing.T, st store.Store) (*Registry, *clock) {
	t.Helper()
	c := &clock{t: t0}
	r, err := New(context.Background(), st, Options{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

func message(typ, payloadJSON string) []byte {
	b, _ := json.Marshal(Message{Version: MessageVersion, Type: typ, Payload: base64.StdEncoding.EncodeToString([]byte(payloadJSON))})
	return b
}

func TestRegister(t *testing.T) {
	tests := map[string]struct {
		msg       []byte
		wantNames []string
		wantErr   string // substring; empty means success
	}{
		"sample arrays": {
			msg:       message("sample", `{"svn":["1"],"launch_digest":["abcde"]}`),
			wantNames: []string{"launch_digest", "svn"},
		},
		"scalars and objects": {
			msg:       message("sample", `{"major_version":1,"minimum_minor_version":4,"cfg":{"a":true}}`),
			wantNames: []string{"cfg", "major_version", "minimum_minor_version"},
		},
		"unpadded base64": {
			msg:       []byte(`{"version":"0.1.0","type":"sample","payload":"` + base64.RawStdEncoding.EncodeToString([]byte(`{"ab":["x"]}`)) + `"}`),
			wantNames: []string{"ab"},
		},
		"missing version means 0.1.0": {
			msg:       []byte(`{"type":"sample","payload":"` + base64.StdEncoding.EncodeToString([]byte(`{"x":[1]}`)) + `"}`),
			wantNames: []string{"x"},
		},
		"not JSON":             {msg: []byte(`{`), wantErr: "reference value message"},
		"unknown field":        {msg: []byte(`{"version":"0.1.0","type":"sample","provenance":"e30="}`), wantErr: `unknown field "provenance"`},
		"trailing data":        {msg: []byte(`{"version":"0.1.0","type":"sample","payload":"e30="} {}`), wantErr: "trailing data"},
		"bad version":          {msg: []byte(`{"version":"0.2.0","type":"sample","payload":"e30="}`), wantErr: `unsupported version "0.2.0"`},
		"missing type":         {msg: []byte(`{"version":"0.1.0","payload":"e30="}`), wantErr: "missing type"},
		"unsupported type":     {msg: []byte(`{"version":"0.1.0","type":"swid","payload":"e30="}`), wantErr: `unsupported type "swid"`},
		"empty payload":        {msg: []byte(`{"version":"0.1.0","type":"sample","payload":""}`), wantErr: "sample payload: empty"},
		"payload not base64":   {msg: []byte(`{"version":"0.1.0","type":"sample","payload":"%%%"}`), wantErr: "not standard base64"},
		"payload not object":   {msg: message("sample", `["a"]`), wantErr: "want a JSON object"},
		"payload empty object": {msg: message("sample", `{}`), wantErr: "no reference values"},
		"null value":           {msg: message("sample", `{"a":null}`), wantErr: `"a" is null`},
		"bad name":             {msg: message("sample", `{"a b":[1]}`), wantErr: `name "a b"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, _ := newRegistry(t, store.NewMemory())
			names, err := r.Register(context.Background(), tc.msg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if !errors.Is(err, sdk.ErrInvalidArgument) {
					t.Fatalf("error %v is not an invalid-argument error", err)
				}
				if r.Snapshot().Len() != 0 {
					t.Fatal("a refused message changed the snapshot")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(names, tc.wantNames) {
				t.Fatalf("names %q, want %q", names, tc.wantNames)
			}
			for _, n := range names {
				if _, ok := r.Snapshot().Lookup(n, t0); !ok {
					t.Errorf("%s missing from the snapshot", n)
				}
			}
		})
	}
}

func TestStoredRecordShape(t *testing.T) {
	st := store.NewMemory()
	r, _ := newRegistry(t, st)
	if _, err := r.Register(context.Background(), message("sample", `{"svn":["1"],"big":12345678901234567890}`)); err != nil {
		t.Fatal(err)
	}
	tests := map[string]string{
		"svn": `{"version":"0.1.0","name":"svn","expiration":"2027-03-01T12:00:00Z","value":["1"]}`,
		"big": `{"version":"0.1.0","name":"big","expiration":"2027-03-01T12:00:00Z","value":12345678901234567890}`,
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			raw, err := st.Get(context.Background(), store.NamespaceReferenceValue, name)
			if err != nil {
				t.Fatal(err)
			}
			if string(raw) != want {
				t.Fatalf("record\n%s\nwant\n%s", raw, want)
			}
		})
	}
}

func TestGetAndExpiry(t *testing.T) {
	ctx := context.Background()
	r, c := newRegistry(t, store.NewMemory())
	if _, err := r.Register(ctx, message("sample", `{"svn":["1"],"n":7}`)); err != nil {
		t.Fatal(err)
	}
	c.t = t0.AddDate(0, 6, 0)
	if _, err := r.Register(ctx, message("sample", `{"later":["x"]}`)); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		at     time.Time
		name   string
		want   any
		wantOK bool
	}{
		"array":                           {at: t0, name: "svn", want: []any{"1"}, wantOK: true},
		"number stays exact":              {at: t0, name: "n", want: json.Number("7"), wantOK: true},
		"unknown":                         {at: t0, name: "nope", wantOK: false},
		"just before expiry":              {at: t0.AddDate(1, 0, 0).Add(-time.Second), name: "svn", want: []any{"1"}, wantOK: true},
		"expired at expiration":           {at: t0.AddDate(1, 0, 0), name: "svn", wantOK: false},
		"registered later, expires later": {at: t0.AddDate(1, 1, 0), name: "later", want: []any{"x"}, wantOK: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c.t = tc.at
			got, ok, err := r.Get(ctx, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.wantOK || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Get = %#v, %v; want %#v, %v", got, ok, tc.want, tc.wantOK)
			}
			sgot, sok := r.Snapshot().Lookup(tc.name, tc.at)
			if sok != tc.wantOK || !reflect.DeepEqual(sgot, tc.want) {
				t.Fatalf("Lookup = %#v, %v; want %#v, %v", sgot, sok, tc.want, tc.wantOK)
			}
		})
	}
	t.Run("bad name", func(t *testing.T) {
		if _, _, err := r.Get(ctx, "a b"); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Fatalf("error %v, want invalid argument", err)
		}
	})
	t.Run("All skips expired", func(t *testing.T) {
		c.t = t0.AddDate(1, 1, 0)
		all, err := r.All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 || all[0].Name != "later" || all[0].Version != RecordVersion {
			t.Fatalf("All = %+v, want only the later record", all)
		}
	})
}

func TestReplaceValue(t *testing.T) {
	ctx := context.Background()
	r, _ := newRegistry(t, store.NewMemory())
	for _, payload := range []string{`{"svn":["1"]}`, `{"svn":["2","3"]}`} {
		if _, err := r.Register(ctx, message("sample", payload)); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := r.Snapshot().Lookup("svn", t0)
	if !reflect.DeepEqual(got, []any{"2", "3"}) {
		t.Fatalf("svn = %v, want the second registration", got)
	}
}

func TestReplicasConverge(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	a, _ := newRegistry(t, st)
	b, _ := newRegistry(t, st)

	snap := b.Snapshot()
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Snapshot() != snap {
		t.Fatal("Refresh without a change replaced the snapshot")
	}
	if _, err := a.Register(ctx, message("sample", `{"mr_td":["aa"]}`)); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Snapshot().Lookup("mr_td", t0); ok {
		t.Fatal("replica saw the value before refreshing")
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Snapshot().Lookup("mr_td", t0); !ok {
		t.Fatal("replica did not see the value after Refresh")
	}
}

func TestSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kbs.db")
	st, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := newRegistry(t, st)
	if _, err := r.Register(ctx, message("sample", `{"snp_launch_measurement":["ab"]}`)); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st, err = store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, _ = newRegistry(t, st)
	got, ok := r.Snapshot().Lookup("snp_launch_measurement", t0)
	if !ok || !reflect.DeepEqual(got, []any{"ab"}) {
		t.Fatalf("after restart: %v %v", got, ok)
	}
}

func TestCorruptRecordFailsLoad(t *testing.T) {
	st := store.NewMemory()
	if err := st.Put(context.Background(), store.NamespaceReferenceValue, "x", []byte("{")); err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), st, Options{}); err == nil || !strings.Contains(err.Error(), "corrupt record") {
		t.Fatalf("error %v, want a corrupt-record error", err)
	}
}
