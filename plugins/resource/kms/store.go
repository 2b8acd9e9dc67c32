package kms

import (
	"context"
	"encoding/json"

	"github.com/gokbs/kbs/plugins/resource/fs"
	"github.com/gokbs/kbs/sdk/resource"
)

// store keeps one envelope file per resource, laid out and guarded exactly
// as the fs backend keeps resources (os.Root, validated segments, atomic
// writes): it is an fs backend, holding envelopes instead of plaintext.
type store struct {
	files *fs.Backend
}

func openStore(dir string, create bool) (*store, error) {
	files := fs.New()
	cfg, err := json.Marshal(fs.Config{Dir: dir, ReadOnly: !create})
	if err != nil {
		return nil, err
	}
	if err := files.Configure(context.Background(), cfg); err != nil {
		return nil, err
	}
	return &store{files: files}, nil
}

func (s *store) close() { s.files.Close() }

func (s *store) read(p resource.Path) ([]byte, error) {
	return s.files.Get(context.Background(), p)
}

func (s *store) write(p resource.Path, data []byte) error {
	return s.files.Put(context.Background(), p, data)
}

func (s *store) remove(p resource.Path) error {
	return s.files.Delete(context.Background(), p)
}

func (s *store) list(repo string) ([]resource.Path, error) {
	return s.files.List(context.Background(), repo)
}
