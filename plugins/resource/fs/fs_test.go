package fs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
)

var ctx = context.Background()

// open returns a writable backend on a fresh repository directory.
func open(t *testing.T) (*Backend, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repository")
	return configure(t, Config{Dir: dir}), dir
}

func configure(t *testing.T, cfg Config) *Backend {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := New()
	if err := b.Configure(ctx, raw); err != nil {
		t.Fatalf("Configure(%s): %v", raw, err)
	}
	t.Cleanup(func() { b.st.Load().root.Close() })
	return b
}

func write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

func mustPath(t *testing.T, s string) resource.Path {
	t.Helper()
	p, err := resource.ParsePath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sorted(ps []resource.Path) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}

func wantClass(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v (class %q), want class %q", err, sdk.ClassOf(err), sdk.ClassOf(want))
	}
}

func TestConfigure(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	write(t, file, "x")
	tests := map[string]struct {
		config  string
		wantErr bool
	}{
		"existing dir":           {config: fmt.Sprintf(`{"dir":%q}`, tmp)},
		"missing dir is created": {config: fmt.Sprintf(`{"dir":%q}`, filepath.Join(tmp, "new", "repo"))},
		"read-only existing dir": {config: fmt.Sprintf(`{"dir":%q,"read_only":true}`, tmp)},
		"read-only missing dir":  {config: fmt.Sprintf(`{"dir":%q,"read_only":true}`, filepath.Join(tmp, "absent")), wantErr: true},
		"dir is a file":          {config: fmt.Sprintf(`{"dir":%q}`, file), wantErr: true},
		"no settings":            {config: ``, wantErr: true},
		"empty object":           {config: `{}`, wantErr: true},
		"unknown key":            {config: fmt.Sprintf(`{"dir":%q,"readonly":true}`, tmp), wantErr: true},
		"read_only wrong type":   {config: fmt.Sprintf(`{"dir":%q,"read_only":"yes"}`, tmp), wantErr: true},
		"trailing data":          {config: fmt.Sprintf(`{"dir":%q}{}`, tmp), wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := New().Configure(ctx, []byte(tc.config))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Configure(%s) = %v, want error %v", tc.config, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("class = %q, want invalid_argument", sdk.ClassOf(err))
			}
		})
	}
	if _, err := os.Stat(filepath.Join(tmp, "new", "repo")); err != nil {
		t.Errorf("missing dir not created: %v", err)
	}
}

func TestUnconfigured(t *testing.T) {
	b := New()
	_, err := b.Get(ctx, mustPath(t, "a/b/c"))
	wantClass(t, err, sdk.ErrUnavailable)
	_, err = b.List(ctx, "")
	wantClass(t, err, sdk.ErrUnavailable)
}

func TestPutGetDeleteList(t *testing.T) {
	b, dir := open(t)
	p := mustPath(t, "default/key/one")
	if _, err := b.Get(ctx, p); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Get before Put: err = %v, want not found", err)
	}
	for _, content := range []string{"first", "second, longer than the first", ""} {
		if err := b.Put(ctx, p, []byte(content)); err != nil {
			t.Fatalf("Put: %v", err)
		}
		got, err := b.Get(ctx, p)
		if err != nil || string(got) != content {
			t.Fatalf("Get = %q, %v; want %q", got, err, content)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "default", "key", "one"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode = %v, want 0600", perm)
	}
	for _, d := range []string{"default", "default/key"} {
		fi, err := os.Stat(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("%s mode = %v, want 0700", d, perm)
		}
	}
	if err := b.Put(ctx, mustPath(t, "other/cert/a.pem"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	all, err := b.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sorted(all), []string{"default/key/one", "other/cert/a.pem"}; !slices.Equal(got, want) {
		t.Errorf("List(\"\") = %v, want %v", got, want)
	}
	one, err := b.List(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sorted(one), []string{"other/cert/a.pem"}; !slices.Equal(got, want) {
		t.Errorf("List(other) = %v, want %v", got, want)
	}
	none, err := b.List(ctx, "absent")
	if err != nil || len(none) != 0 {
		t.Errorf("List(absent) = %v, %v; want empty", none, err)
	}
	if err := b.Delete(ctx, p); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err = b.Get(ctx, p)
	wantClass(t, err, sdk.ErrNotFound)
	wantClass(t, b.Delete(ctx, p), sdk.ErrNotFound)
	// No temporary files are left behind.
	left, _ := os.ReadDir(filepath.Join(dir, "default", "key"))
	if len(left) != 0 {
		t.Errorf("entries left in default/key: %v", left)
	}
}

func TestNotFound(t *testing.T) {
	b, dir := open(t)
	write(t, filepath.Join(dir, "r", "t", "file"), "x")
	write(t, filepath.Join(dir, "rootfile"), "x")
	write(t, filepath.Join(dir, "r", "typefile"), "x")
	if err := os.MkdirAll(filepath.Join(dir, "r", "t", "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "r", "t", "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	symlink(t, "nowhere", filepath.Join(dir, "r", "t", "dangling"))
	tests := map[string]string{
		"missing repo":       "nope/t/x",
		"missing type":       "r/nope/x",
		"missing tag":        "r/t/nope",
		"tag is a directory": "r/t/subdir",
		"repo is a file":     "rootfile/t/x",
		"type is a file":     "r/typefile/x",
		"fifo":               "r/t/fifo",
		"dangling symlink":   "r/t/dangling",
	}
	for name, s := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := b.Get(ctx, mustPath(t, s))
			wantClass(t, err, sdk.ErrNotFound)
		})
	}
	// A directory is not deleted as if it were a resource.
	wantClass(t, b.Delete(ctx, mustPath(t, "r/t/subdir")), sdk.ErrNotFound)
	if _, err := os.Stat(filepath.Join(dir, "r", "t", "subdir")); err != nil {
		t.Errorf("Delete removed a directory: %v", err)
	}
	got, err := b.List(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"r/t/file"}; !slices.Equal(sorted(got), want) {
		t.Errorf("List = %v, want %v", sorted(got), want)
	}
}

func TestInvalidPaths(t *testing.T) {
	b, dir := open(t)
	outside := filepath.Dir(dir)
	write(t, filepath.Join(outside, "secret"), "outside")
	write(t, filepath.Join(dir, "r", "t", "ok"), "inside")
	paths := map[string]resource.Path{
		"dotdot repo":    {Repo: "..", Type: "t", Tag: "secret"},
		"dotdot type":    {Repo: "r", Type: "..", Tag: "ok"},
		"dotdot tag":     {Repo: "r", Type: "t", Tag: ".."},
		"dot segment":    {Repo: ".", Type: "t", Tag: "ok"},
		"absolute repo":  {Repo: "/etc", Type: "t", Tag: "passwd"},
		"absolute tag":   {Repo: "r", Type: "t", Tag: "/etc/passwd"},
		"slash in tag":   {Repo: "r", Type: "t", Tag: "../../../secret"},
		"encoded dotdot": {Repo: "r", Type: "t", Tag: "%2e%2e"},
		"encoded slash":  {Repo: "r", Type: "t%2F..", Tag: "ok"},
		"backslash":      {Repo: "r", Type: "t", Tag: `..\..\secret`},
		"hidden tag":     {Repo: "r", Type: "t", Tag: ".hidden"},
		"csi data dir":   {Repo: "r", Type: "t", Tag: "..data"},
		"empty tag":      {Repo: "r", Type: "t", Tag: ""},
		"NUL byte":       {Repo: "r", Type: "t", Tag: "ok\x00"},
		"space":          {Repo: "r", Type: "t", Tag: "o k"},
		"too long":       {Repo: "r", Type: "t", Tag: strings.Repeat("a", resource.MaxSegmentLen+1)},
	}
	for name, p := range paths {
		t.Run(name, func(t *testing.T) {
			_, err := b.Get(ctx, p)
			wantClass(t, err, sdk.ErrInvalidArgument)
			wantClass(t, b.Put(ctx, p, []byte("pwned")), sdk.ErrInvalidArgument)
			wantClass(t, b.Delete(ctx, p), sdk.ErrInvalidArgument)
		})
	}
	t.Run("List", func(t *testing.T) {
		for _, repo := range []string{"..", "/", "a/b", ".hidden"} {
			_, err := b.List(ctx, repo)
			wantClass(t, err, sdk.ErrInvalidArgument)
		}
	})
	if got, _ := os.ReadFile(filepath.Join(outside, "secret")); string(got) != "outside" {
		t.Errorf("file outside the repository changed: %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "r", "t", "ok")); string(got) != "inside" {
		t.Errorf("r/t/ok changed: %q", got)
	}
}

func TestSymlinkEscapes(t *testing.T) {
	b, dir := open(t)
	outside := filepath.Join(filepath.Dir(dir), "outside")
	write(t, filepath.Join(outside, "secret"), "outside secret")
	// Symlinks out of the repository, in every shape.
	symlink(t, "/etc/passwd", filepath.Join(dir, "r", "t", "abs"))
	symlink(t, filepath.Join(outside, "secret"), filepath.Join(dir, "r", "t", "abs-outside"))
	symlink(t, "../../../outside/secret", filepath.Join(dir, "r", "t", "rel"))
	symlink(t, "../../outside", filepath.Join(dir, "r", "escdir"))
	symlink(t, outside, filepath.Join(dir, "escrepo"))
	symlink(t, filepath.Join(dir, "r", "t", "inside"), filepath.Join(dir, "r", "t", "abs-inside"))
	write(t, filepath.Join(dir, "r", "t", "inside"), "inside")

	tests := map[string]string{
		"absolute symlink to /etc/passwd":          "r/t/abs",
		"absolute symlink outside":                 "r/t/abs-outside",
		"relative symlink climbing out":            "r/t/rel",
		"type dir symlinked outside":               "r/escdir/secret",
		"repo dir symlinked outside":               "escrepo/x/secret",
		"absolute symlink even if it stays inside": "r/t/abs-inside",
	}
	for name, s := range tests {
		t.Run(name, func(t *testing.T) {
			p := mustPath(t, s)
			got, err := b.Get(ctx, p)
			wantClass(t, err, sdk.ErrInvalidArgument)
			if got != nil {
				t.Errorf("Get returned %q", got)
			}
		})
	}
	t.Run("Put through a dir symlink", func(t *testing.T) {
		wantClass(t, b.Put(ctx, mustPath(t, "r/escdir/planted"), []byte("x")), sdk.ErrInvalidArgument)
		if _, err := os.Stat(filepath.Join(outside, "planted")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Put wrote outside the repository: %v", err)
		}
		wantClass(t, b.Put(ctx, mustPath(t, "escrepo/new/planted"), []byte("x")), sdk.ErrInvalidArgument)
		if _, err := os.Stat(filepath.Join(outside, "new")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Put created a directory outside the repository: %v", err)
		}
	})
	t.Run("Delete through a dir symlink", func(t *testing.T) {
		wantClass(t, b.Delete(ctx, mustPath(t, "r/escdir/secret")), sdk.ErrInvalidArgument)
		if _, err := os.Stat(filepath.Join(outside, "secret")); err != nil {
			t.Errorf("Delete removed a file outside the repository: %v", err)
		}
	})
	t.Run("List skips escapes", func(t *testing.T) {
		got, err := b.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"r/t/inside"}; !slices.Equal(sorted(got), want) {
			t.Errorf("List = %v, want %v", sorted(got), want)
		}
	})
}

// csiMount lays out what the Secrets Store CSI driver writes for a Key Vault
// mounted at <dir>/default/akv, with the secrets' values for one version.
func csiMount(t *testing.T, akv, version string, secrets map[string]string) {
	t.Helper()
	for name, value := range secrets {
		write(t, filepath.Join(akv, version, name), value)
	}
	// The driver swaps ..data atomically: a new symlink renamed over it.
	tmp := filepath.Join(akv, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(akv, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range secrets {
		link := filepath.Join(akv, name)
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			symlink(t, filepath.Join("..data", name), link)
		}
	}
}

func TestCSISecretsStoreLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repository")
	akv := filepath.Join(dir, "default", "akv")
	csiMount(t, akv, "..2026_11_28_10_00_00.123", map[string]string{"coco_one": "v1", "coco_two": "two"})
	b := configure(t, Config{Dir: dir, ReadOnly: true})
	p := mustPath(t, "default/akv/coco_one")

	got, err := b.Get(ctx, p)
	if err != nil || string(got) != "v1" {
		t.Fatalf("Get = %q, %v; want v1", got, err)
	}
	list, err := b.List(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"default/akv/coco_one", "default/akv/coco_two"}; !slices.Equal(sorted(list), want) {
		t.Errorf("List = %v, want %v (no ..data or timestamped entries)", sorted(list), want)
	}

	// Rotation: a new version directory and a swapped ..data; the old
	// version is removed as the driver does.
	csiMount(t, akv, "..2026_11_28_11_00_00.456", map[string]string{"coco_one": "v2 rotated", "coco_two": "two"})
	if err := os.RemoveAll(filepath.Join(akv, "..2026_11_28_10_00_00.123")); err != nil {
		t.Fatal(err)
	}
	got, err = b.Get(ctx, p)
	if err != nil || string(got) != "v2 rotated" {
		t.Fatalf("Get after rotation = %q, %v; want the rotated value", got, err)
	}
	// A secret dropped from the mount is gone.
	csiMount(t, akv, "..2026_11_28_12_00_00.789", map[string]string{"coco_one": "v3"})
	_, err = b.Get(ctx, mustPath(t, "default/akv/coco_two"))
	wantClass(t, err, sdk.ErrNotFound)

	// The repository is read-only.
	wantClass(t, b.Put(ctx, p, []byte("x")), sdk.ErrUnsupported)
	wantClass(t, b.Delete(ctx, p), sdk.ErrUnsupported)
}

func TestRepositoryDirIsSymlink(t *testing.T) {
	tmp := t.TempDir()
	write(t, filepath.Join(tmp, "real", "r", "t", "x"), "data")
	symlink(t, "real", filepath.Join(tmp, "link"))
	b := configure(t, Config{Dir: filepath.Join(tmp, "link")})
	got, err := b.Get(ctx, mustPath(t, "r/t/x"))
	if err != nil || string(got) != "data" {
		t.Fatalf("Get = %q, %v", got, err)
	}
}

func TestPutConflicts(t *testing.T) {
	b, dir := open(t)
	write(t, filepath.Join(dir, "r", "file"), "x")
	if err := os.MkdirAll(filepath.Join(dir, "r", "t", "dir", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	wantClass(t, b.Put(ctx, mustPath(t, "r/file/x"), []byte("x")), sdk.ErrInvalidArgument)
	wantClass(t, b.Put(ctx, mustPath(t, "r/t/dir"), []byte("x")), sdk.ErrInvalidArgument)
}

// TestConcurrentPut writes one path from many goroutines while others read
// it: every read must be one writer's whole content.
func TestConcurrentPut(t *testing.T) {
	b, _ := open(t)
	p := mustPath(t, "default/key/hot")
	const size = 64 << 10
	content := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, size+i) }
	if err := b.Put(ctx, p, content(0)); err != nil {
		t.Fatal(err)
	}
	const writers, rounds = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range writers {
		wg.Go(func() {
			for range rounds {
				if err := b.Put(ctx, p, content(w)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range rounds * 4 {
				got, err := b.Get(ctx, p)
				if err != nil {
					errs <- err
					return
				}
				i := len(got) - size
				if i < 0 || i >= writers || !bytes.Equal(got, content(i)) {
					errs <- fmt.Errorf("torn read: %d bytes", len(got))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := b.List(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"default/key/hot"}; !slices.Equal(sorted(list), want) {
		t.Errorf("List = %v, want %v (temporary files must not show)", sorted(list), want)
	}
}

func TestListSkipsInvalidNames(t *testing.T) {
	b, dir := open(t)
	for _, name := range []string{"r/t/good", "r/t/.hidden", "r/t/sp ace", "r/.hid/x", "r/t/..data", ".r/t/x", "r/t/ok.pem"} {
		write(t, filepath.Join(dir, filepath.FromSlash(name)), "x")
	}
	write(t, filepath.Join(dir, "r", "toplevel-file"), "x")
	write(t, filepath.Join(dir, "rootfile"), "x")
	got, err := b.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"r/t/good", "r/t/ok.pem"}; !slices.Equal(sorted(got), want) {
		t.Errorf("List = %v, want %v", sorted(got), want)
	}
}

// TestEscapeErrorText pins the os.Root error text that isEscape relies on.
func TestEscapeErrorText(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	_, err = root.Open("..")
	if !isEscape(err) {
		t.Fatalf("os.Root escape error %v is not recognized", err)
	}
	if isEscape(os.ErrNotExist) || isEscape(nil) {
		t.Error("isEscape matches unrelated errors")
	}
}
