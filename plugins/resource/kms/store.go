package kms

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	iofs "io/fs"
	"os"
	"path"
	"syscall"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
)

// maxEnvelope bounds an envelope file read into memory.
const maxEnvelope = 64 << 20

// store keeps one envelope file per resource at <dir>/<repo>/<type>/<tag>,
// the layout of the fs backend. All access goes through an os.Root, so no
// path, symlink or ".." leads out of the directory.
type store struct {
	root *os.Root
}

func openStore(dir string, create bool) (*store, error) {
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &store{root: root}, nil
}

func (s *store) close() { s.root.Close() }

func (s *store) read(p resource.Path) ([]byte, error) {
	// O_NONBLOCK: a FIFO planted in the directory cannot hang the call.
	f, err := s.root.OpenFile(p.String(), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fileError(p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileError(p, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, sdk.NotFound("resource %s not found (not a regular file)", p)
	}
	if fi.Size() > maxEnvelope {
		return nil, sdk.Internal("resource %s: envelope file larger than %d bytes", p, maxEnvelope)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && fi.Size() > 0 {
		return nil, fileError(p, err)
	}
	return b, nil
}

// write replaces the file atomically: a temporary dot file (never listed,
// never a valid path) written and fsynced, renamed over the target, then
// the directory fsynced.
func (s *store) write(p resource.Path, data []byte) error {
	dir := path.Join(p.Repo, p.Type)
	if err := s.root.MkdirAll(dir, 0o700); err != nil {
		return fileError(p, err)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := path.Join(dir, ".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fileError(p, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.root.Rename(tmp, p.String())
	}
	if err != nil {
		s.root.Remove(tmp)
		return fileError(p, err)
	}
	return fileError(p, s.syncDir(dir))
}

func (s *store) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *store) remove(p resource.Path) error {
	fi, err := s.root.Lstat(p.String())
	if err != nil {
		return fileError(p, err)
	}
	if fi.IsDir() {
		return sdk.NotFound("resource %s not found (a directory)", p)
	}
	if err := s.root.Remove(p.String()); err != nil {
		return fileError(p, err)
	}
	return fileError(p, s.syncDir(path.Join(p.Repo, p.Type)))
}

// list returns every regular file at depth three with valid segments, in
// one repository or (repo "") all of them.
func (s *store) list(repo string) ([]resource.Path, error) {
	repos := []string{repo}
	if repo == "" {
		var err error
		if repos, err = s.entries(".", true); err != nil {
			return nil, err
		}
	}
	var out []resource.Path
	for _, r := range repos {
		types, err := s.entries(r, true)
		if err != nil {
			return nil, err
		}
		for _, t := range types {
			tags, err := s.entries(path.Join(r, t), false)
			if err != nil {
				return nil, err
			}
			for _, tag := range tags {
				out = append(out, resource.Path{Repo: r, Type: t, Tag: tag})
			}
		}
	}
	return out, nil
}

func (s *store) entries(dir string, dirs bool) ([]string, error) {
	d, err := s.root.Open(dir)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, sdk.Internal("listing %s: %v", dir, opError(err))
	}
	des, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, sdk.Internal("listing %s: %v", dir, opError(err))
	}
	var names []string
	for _, de := range des {
		if resource.ValidateSegment(de.Name()) != nil {
			continue
		}
		fi, err := s.root.Stat(path.Join(dir, de.Name()))
		if err != nil || fi.IsDir() != dirs || (!dirs && !fi.Mode().IsRegular()) {
			continue
		}
		names = append(names, de.Name())
	}
	return names, nil
}

// fileError classifies a file-system error; its messages name the resource,
// never the directory.
func fileError(p resource.Path, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, iofs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR):
		return sdk.NotFound("resource %s not found", p)
	case errors.Is(err, syscall.EROFS):
		return sdk.Unsupported("resource %s: the directory is read-only", p)
	case errors.Is(err, syscall.EEXIST), errors.Is(err, syscall.ENOTEMPTY):
		return sdk.InvalidArgument("resource %s: conflicts with an entry of the directory (%s)", p, opError(err))
	}
	return sdk.Internal("resource %s: %s", p, opError(err))
}

func opError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}
