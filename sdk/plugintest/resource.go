package plugintest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/serve"
)

// ResourceConformance checks a writable resource backend: put, get,
// overwrite, list, delete, not-found and invalid paths. The backend should
// start empty (give it a fresh directory, bucket or prefix in config).
func ResourceConformance(t *testing.T, opts serve.Options, config []byte) {
	t.Helper()
	c := Start(t, opts, config)
	b := c.Resource()
	ctx := context.Background()
	p := resource.Path{Repo: "conformance", Type: "key", Tag: "one"}
	binary := []byte{0, 1, 2, 0xff, '\n', 0}

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"metadata", func(t *testing.T) {
			if m := c.Metadata(); m.Kind != sdk.KindResource || m.Name != opts.Name {
				t.Errorf("metadata = %+v, want kind %q and name %q", m, sdk.KindResource, opts.Name)
			}
		}},
		{"get missing is not found", func(t *testing.T) {
			if _, err := b.Get(ctx, p); !errors.Is(err, sdk.ErrNotFound) {
				t.Errorf("Get(missing) error = %v, want not_found", err)
			}
		}},
		{"put then get returns the same bytes", func(t *testing.T) {
			mustPut(t, b, p, binary)
			mustGet(t, b, p, binary)
		}},
		{"overwrite", func(t *testing.T) {
			mustPut(t, b, p, []byte("second"))
			mustGet(t, b, p, []byte("second"))
		}},
		{"large value", func(t *testing.T) {
			big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
			lp := resource.Path{Repo: "conformance", Type: "key", Tag: "large"}
			mustPut(t, b, lp, big)
			mustGet(t, b, lp, big)
		}},
		{"list", func(t *testing.T) {
			paths, err := b.List(ctx, "conformance")
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if !slices.Contains(paths, p) {
				t.Errorf("List = %v, want it to contain %v", paths, p)
			}
			all, err := b.List(ctx, "")
			if err != nil || !slices.Contains(all, p) {
				t.Errorf("List(all) = %v, %v; want it to contain %v", all, err, p)
			}
		}},
		{"delete", func(t *testing.T) {
			if err := b.Delete(ctx, p); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := b.Get(ctx, p); !errors.Is(err, sdk.ErrNotFound) {
				t.Errorf("Get after Delete error = %v, want not_found", err)
			}
			if err := b.Delete(ctx, p); !errors.Is(err, sdk.ErrNotFound) {
				t.Errorf("Delete(missing) error = %v, want not_found", err)
			}
		}},
		{"invalid paths are refused", func(t *testing.T) {
			for _, bad := range []resource.Path{
				{Repo: "..", Type: "key", Tag: "x"},
				{Repo: "a", Type: "key", Tag: "../../etc/passwd"},
				{Repo: "a", Type: "", Tag: "x"},
				{Repo: "/abs", Type: "key", Tag: "x"},
				{Repo: "a", Type: "k/e", Tag: "x"},
				{Repo: ".hidden", Type: "key", Tag: "x"},
			} {
				if _, err := b.Get(ctx, bad); !errors.Is(err, sdk.ErrInvalidArgument) {
					t.Errorf("Get(%+v) error = %v, want invalid_argument", bad, err)
				}
				if err := b.Put(ctx, bad, []byte("x")); !errors.Is(err, sdk.ErrInvalidArgument) {
					t.Errorf("Put(%+v) error = %v, want invalid_argument", bad, err)
				}
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			return // later steps build on earlier ones
		}
	}
}

func mustPut(t *testing.T, b resource.Backend, p resource.Path, data []byte) {
	t.Helper()
	if err := b.Put(context.Background(), p, data); err != nil {
		t.Fatalf("Put(%v): %v", p, err)
	}
}

func mustGet(t *testing.T, b resource.Backend, p resource.Path, want []byte) {
	t.Helper()
	got, err := b.Get(context.Background(), p)
	if err != nil {
		t.Fatalf("Get(%v): %v", p, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%v) = %d bytes, want %d bytes", p, len(got), len(want))
	}
}
