package plugins

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gokbs/kbs/sdk/pluginclient"
)

// Found is one kbs-plugin-* file in the plugin directory.
type Found struct {
	File       string // base name
	Path       string
	Kind, Name string // empty when Status is StatusBadName
	Status     FileStatus
	SHA256     string // hex of the file, when it could be hashed
	Detail     string // why the file is refused; empty when Status is ok
}

// Discover lists every kbs-plugin-* entry of dir and checks each against
// the manifest without starting anything. A missing manifest makes every
// entry StatusMissing; a malformed or unsafe manifest or directory is an
// error.
func Discover(dir string) ([]Found, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	manifest, err := ReadManifest(dir)
	var fe *FileError
	if errors.As(err, &fe) && fe.Status == StatusAbsent {
		manifest, err = Manifest{}, nil
	}
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("plugin directory: %w", err)
	}
	var out []Found
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), BinaryPrefix) {
			continue
		}
		f := Found{File: e.Name(), Path: filepath.Join(dir, e.Name()), Status: StatusOK}
		kind, name, ok := ParseBinaryName(f.File)
		if !ok {
			f.Status = StatusBadName
			f.Detail = "file name is not kbs-plugin-<verifier|resource|token>-<name>"
			out = append(out, f)
			continue
		}
		f.Kind, f.Name = kind, name
		sum, err := hashBinary(f.Path)
		if err == nil {
			f.SHA256 = hex.EncodeToString(sum[:])
			err = matchManifest(manifest, f.Path, f.File, sum)
		}
		if err != nil {
			f.Status, f.Detail = StatusUnreadable, err.Error()
			if errors.As(err, &fe) {
				f.Status, f.Detail = fe.Status, fe.Detail
			}
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out, nil
}

// Probed is a Found entry after Probe.
type Probed struct {
	Found
	// Started is true when the plugin was started and answered.
	Started  bool
	Metadata pluginclient.Metadata
	// Err says why a verified plugin could not be started.
	Err error
}

// Probe starts each StatusOK entry of found in turn, reads its metadata and
// stops it again; the others are returned as they are. It is the
// `kbs-host plugins list --start` view. No plugin is configured.
func Probe(ctx context.Context, opts Options, found []Found) []Probed {
	opts = opts.withDefaults()
	out := make([]Probed, 0, len(found))
	for _, f := range found {
		pr := Probed{Found: f}
		if f.Status == StatusOK {
			pr.Metadata, pr.Err = probe(ctx, opts, f)
			pr.Started = pr.Err == nil
		}
		out = append(out, pr)
	}
	return out
}

func probe(ctx context.Context, opts Options, f Found) (pluginclient.Metadata, error) {
	sum, err := hex.DecodeString(f.SHA256)
	if err != nil {
		return pluginclient.Metadata{}, fmt.Errorf("probing %s: %w", f.Path, err)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	// go-plugin hashes the file again right before exec, so a file changed
	// since Discover is not run.
	c, err := pluginclient.Start(ctx, pluginclient.Config{
		Path:         f.Path,
		SHA256:       sum,
		StartTimeout: opts.StartTimeout,
		Logger:       opts.Logger.Named("plugin." + f.Kind + "." + f.Name),
	})
	if err != nil {
		return pluginclient.Metadata{}, err
	}
	defer c.Kill()
	meta := c.Metadata()
	if meta.Kind != f.Kind || meta.Name != f.Name {
		return meta, &refusal{fmt.Errorf("%s says it is %s/%s", f.Path, meta.Kind, meta.Name)}
	}
	return meta, nil
}
