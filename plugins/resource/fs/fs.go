// Package fs is a resource backend that keeps one file per resource in a
// repository directory laid out as <dir>/<repo>/<type>/<tag>.
//
// It is the layout the Secrets Store CSI driver produces, so a Key Vault
// mounted at <dir>/default/akv serves its secret coco_one as
// default/akv/coco_one. The driver writes each secret as a symlink through
// "..data" to a timestamped directory and rotates by swapping "..data";
// symlinks that stay inside the repository are therefore followed, and
// every read goes to the file system (no cache), so a rotated secret is
// served at once. Symlinks that leave the repository are refused: all access
// goes through an os.Root opened on the repository.
package fs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
)

// Config is the plugin's settings.
type Config struct {
	// Dir is the repository directory. It is created (0700) when missing,
	// unless ReadOnly is set.
	Dir string `json:"dir"`
	// ReadOnly refuses Put and Delete, for a repository that something
	// else (a CSI driver, a config map) owns.
	ReadOnly bool `json:"read_only"`
}

// Backend is the file-system resource backend. The zero value refuses every
// call until Configure succeeds.
type Backend struct {
	st atomic.Pointer[state]
}

type state struct {
	root     *os.Root
	readOnly bool
}

var (
	_ resource.Backend = (*Backend)(nil)
	_ sdk.Configurer   = (*Backend)(nil)
)

// New returns an unconfigured backend; the host configures it with the
// plugin's settings before any other call.
func New() *Backend { return &Backend{} }

// Configure opens the repository directory named by the settings.
func (b *Backend) Configure(_ context.Context, config []byte) error {
	var cfg Config
	if err := sdk.DecodeConfig(config, &cfg); err != nil {
		return err
	}
	if cfg.Dir == "" {
		return sdk.InvalidArgument("fs settings: dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return sdk.InvalidArgument("fs settings: dir %q: %v", cfg.Dir, err)
	}
	if !cfg.ReadOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return sdk.InvalidArgument("fs settings: creating repository %s: %v", dir, err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return sdk.InvalidArgument("fs settings: opening repository: %v", err)
	}
	if old := b.st.Swap(&state{root: root, readOnly: cfg.ReadOnly}); old != nil {
		old.root.Close()
	}
	sdk.Logger().Info("resource repository opened", "dir", dir, "read_only", cfg.ReadOnly)
	return nil
}

// Close releases the repository directory; the backend is unconfigured
// afterwards. (The kms backend keeps its envelopes in an fs backend.)
func (b *Backend) Close() {
	if old := b.st.Swap(nil); old != nil {
		old.root.Close()
	}
}

func (b *Backend) state() (*state, error) {
	st := b.st.Load()
	if st == nil {
		return nil, sdk.Unavailable("fs backend: not configured")
	}
	return st, nil
}

func (b *Backend) writable() (*state, error) {
	st, err := b.state()
	if err != nil {
		return nil, err
	}
	if st.readOnly {
		return nil, sdk.Unsupported("fs backend: the repository is read-only")
	}
	return st, nil
}

// Get reads the resource's file, following symlinks inside the repository.
func (b *Backend) Get(ctx context.Context, p resource.Path) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	st, err := b.state()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// O_NONBLOCK so that a FIFO planted in the repository cannot hang the
	// call; it is then refused as not a regular file.
	f, err := st.root.OpenFile(p.String(), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, classify(p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, classify(p, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, sdk.NotFound("resource %s not found (not a regular file)", p)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, classify(p, err)
	}
	return data, nil
}

// Put replaces the resource atomically: readers see the old content or the
// new one, never a mix, and a crash leaves one of the two.
func (b *Backend) Put(ctx context.Context, p resource.Path, data []byte) error {
	if err := p.Validate(); err != nil {
		return err
	}
	st, err := b.writable()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := path.Join(p.Repo, p.Type)
	if err := st.root.MkdirAll(dir, 0o700); err != nil {
		return writeError(p, err)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	// A leading dot keeps the temporary file out of List and unreachable
	// through Get: no valid segment starts with one.
	tmp := path.Join(dir, ".tmp-"+hex.EncodeToString(rnd[:]))
	if err := writeFile(st.root, tmp, data); err != nil {
		st.root.Remove(tmp)
		return writeError(p, err)
	}
	if err := st.root.Rename(tmp, p.String()); err != nil {
		st.root.Remove(tmp)
		return writeError(p, err)
	}
	return writeError(p, syncDir(st.root, dir))
}

func writeFile(root *os.Root, name string, data []byte) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a rename or removal in dir durable.
func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Delete removes the resource's file (or the symlink standing for it).
func (b *Backend) Delete(ctx context.Context, p resource.Path) error {
	if err := p.Validate(); err != nil {
		return err
	}
	st, err := b.writable()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := st.root.Lstat(p.String())
	if err != nil {
		return classify(p, err)
	}
	if fi.IsDir() {
		// Remove would delete an empty directory; it is not a resource.
		return sdk.NotFound("resource %s not found (a directory)", p)
	}
	if err := st.root.Remove(p.String()); err != nil {
		return writeError(p, err)
	}
	return writeError(p, syncDir(st.root, path.Join(p.Repo, p.Type)))
}

// List returns the resources that Get would serve: every regular file (or
// in-repository symlink to one) at depth three whose path segments are
// valid. Dot entries ("..data", temporary files) and escaping symlinks are
// skipped.
func (b *Backend) List(ctx context.Context, repo string) ([]resource.Path, error) {
	st, err := b.state()
	if err != nil {
		return nil, err
	}
	repos := []string{repo}
	if repo == "" {
		if repos, err = subdirs(st.root, "."); err != nil {
			return nil, sdk.Internal("listing repository: %w", err)
		}
	} else if err := resource.ValidateSegment(repo); err != nil {
		return nil, sdk.InvalidArgument("repo: %v", err)
	}
	var out []resource.Path
	for _, r := range repos {
		types, err := subdirs(st.root, r)
		if err != nil {
			return nil, sdk.Internal("listing repository %s: %w", r, err)
		}
		for _, t := range types {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			tags, err := entries(st.root, path.Join(r, t), func(fi iofs.FileInfo) bool { return fi.Mode().IsRegular() })
			if err != nil {
				return nil, sdk.Internal("listing repository %s/%s: %w", r, t, err)
			}
			for _, tag := range tags {
				out = append(out, resource.Path{Repo: r, Type: t, Tag: tag})
			}
		}
	}
	return out, nil
}

func subdirs(root *os.Root, dir string) ([]string, error) {
	return entries(root, dir, func(fi iofs.FileInfo) bool { return fi.IsDir() })
}

// entries returns the names in dir that are valid segments and whose target
// (symlinks followed inside the root) passes keep. A missing dir is empty.
func entries(root *os.Root, dir string, keep func(iofs.FileInfo) bool) ([]string, error) {
	d, err := root.Open(dir)
	if errors.Is(err, iofs.ErrNotExist) || isEscape(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	des, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, de := range des {
		if resource.ValidateSegment(de.Name()) != nil {
			continue
		}
		fi, err := root.Stat(path.Join(dir, de.Name()))
		if err != nil || !keep(fi) {
			continue // dangling or escaping symlink, or the wrong kind
		}
		names = append(names, de.Name())
	}
	return names, nil
}

// classify turns a file-system error into the SDK's error classes. Its
// messages name the resource path, never the repository's location.
func classify(p resource.Path, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, iofs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR):
		return sdk.NotFound("resource %s not found", p)
	case isEscape(err):
		sdk.Logger().Warn("refused a symlink that leads out of the repository", "path", p.String())
		return sdk.InvalidArgument("resource %s: a symlink on its path leads out of the repository", p)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return sdk.Internal("resource %s: %s", p, opError(err))
}

// writeError classifies the errors of Put and Delete, where a file standing
// in for a directory (or the reverse) is the caller's conflict, not a miss.
func writeError(p resource.Path, err error) error {
	switch {
	case errors.Is(err, syscall.EROFS):
		return sdk.Unsupported("resource %s: that part of the repository is read-only", p)
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR),
		errors.Is(err, syscall.EEXIST), errors.Is(err, syscall.ENOTEMPTY):
		return sdk.InvalidArgument("resource %s: conflicts with an entry of the repository (%s)", p, opError(err))
	}
	return classify(p, err)
}

// opError drops the path from an *os.PathError: it is relative to the root
// but the class and errno are what matter.
func opError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s: %v", pe.Op, pe.Err)
	}
	return err.Error()
}

// isEscape reports whether err is os.Root refusing a path that leaves the
// root (through "..", an absolute symlink, or a symlink out of the tree).
// The os package does not export that error; its text is stable and the
// tests pin it.
func isEscape(err error) bool {
	// MkdirAll nests one *os.PathError in another.
	for pe := (*os.PathError)(nil); errors.As(err, &pe); err = pe.Err {
		if pe.Err != nil && pe.Err.Error() == "path escapes from parent" {
			return true
		}
	}
	return false
}
