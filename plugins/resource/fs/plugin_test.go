package fs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokbs/kbs/plugins/resource/fs"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/serve"
)

func options() serve.Options {
	return serve.Options{Name: "fs", Version: "0.1.0", Capabilities: []string{"write"}, Resource: fs.New()}
}

// TestConformance serves the plugin over real gRPC, as kbs-host runs it.
func TestConformance(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repository")
	plugintest.ResourceConformance(t, options(), fmt.Appendf(nil, `{"dir":%q}`, dir))
}

// TestCSIOverGRPC serves a CSI-style Key Vault mount and checks that the
// error classes of a read-only repository and an escaping symlink cross the
// process boundary.
func TestCSIOverGRPC(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repository")
	akv := filepath.Join(dir, "default", "akv")
	for _, step := range []func() error{
		func() error { return os.MkdirAll(filepath.Join(akv, "..2026_11_28_10_00_00.123"), 0o700) },
		func() error {
			return os.WriteFile(filepath.Join(akv, "..2026_11_28_10_00_00.123", "coco_one"), []byte("kv secret"), 0o600)
		},
		func() error { return os.Symlink("..2026_11_28_10_00_00.123", filepath.Join(akv, "..data")) },
		func() error { return os.Symlink("..data/coco_one", filepath.Join(akv, "coco_one")) },
		func() error { return os.Symlink("/etc/passwd", filepath.Join(akv, "passwd")) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	b := plugintest.Start(t, options(), fmt.Appendf(nil, `{"dir":%q,"read_only":true}`, dir)).Resource()
	ctx := context.Background()

	got, err := b.Get(ctx, resource.Path{Repo: "default", Type: "akv", Tag: "coco_one"})
	if err != nil || string(got) != "kv secret" {
		t.Fatalf("Get(default/akv/coco_one) = %q, %v", got, err)
	}
	if _, err := b.Get(ctx, resource.Path{Repo: "default", Type: "akv", Tag: "passwd"}); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Get(escaping symlink) error = %v, want invalid_argument", err)
	}
	if err := b.Put(ctx, resource.Path{Repo: "default", Type: "akv", Tag: "new"}, []byte("x")); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Put(read-only) error = %v, want unsupported", err)
	}
	list, err := b.List(ctx, "")
	if err != nil || len(list) != 1 || list[0].String() != "default/akv/coco_one" {
		t.Errorf("List = %v, %v; want [default/akv/coco_one]", list, err)
	}
}

func TestConfigureErrorOverGRPC(t *testing.T) {
	err := plugintest.ConfigureError(t, options(), []byte(`{"directory":"/tmp"}`))
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("Configure(unknown key) = %v, want invalid_argument naming the key", err)
	}
}
