package plugins

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/gokbs/kbs/sdk"
)

// ManifestFile is the name of the digest list in the plugin directory. Its
// format is what sha256sum prints, so an operator can check it by hand with
// `sha256sum -c manifest.sha256`.
const ManifestFile = "manifest.sha256"

// BinaryPrefix starts every plugin binary's file name.
const BinaryPrefix = "kbs-plugin-"

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// ErrRefused matches every error that refuses to run a binary for an
// integrity reason: a symlink, a writable file, a digest that does not match
// the manifest, a plugin that does not say it is what its file name says.
var ErrRefused = errors.New("plugin refused")

// FileStatus classifies a plugin binary as Discover sees it.
type FileStatus string

// File statuses. Only StatusOK binaries are ever started.
const (
	StatusOK            FileStatus = "ok"
	StatusMismatch      FileStatus = "mismatch"       // digest differs from the manifest
	StatusMissing       FileStatus = "missing"        // no manifest entry
	StatusSymlink       FileStatus = "symlink"        // a symbolic link, never followed
	StatusWritable      FileStatus = "writable"       // group- or world-writable
	StatusNotExecutable FileStatus = "not-executable" // no execute bit
	StatusNotRegular    FileStatus = "not-regular"    // a directory, device, socket...
	StatusAbsent        FileStatus = "absent"         // the configured binary does not exist
	StatusBadName       FileStatus = "bad-name"       // kbs-plugin-* but not kbs-plugin-<kind>-<name>
	StatusUnreadable    FileStatus = "unreadable"     // could not be read
)

// FileError refuses one file. Its message names the file.
type FileError struct {
	Path   string
	Status FileStatus
	Detail string
}

func (e *FileError) Error() string { return "refusing " + e.Path + ": " + e.Detail }

// Is makes errors.Is(err, ErrRefused) true.
func (e *FileError) Is(target error) bool { return target == ErrRefused }

// BinaryName returns the file name of a plugin binary.
func BinaryName(kind, name string) string { return BinaryPrefix + kind + "-" + name }

// ParseBinaryName splits "kbs-plugin-<kind>-<name>".
func ParseBinaryName(file string) (kind, name string, ok bool) {
	rest, found := strings.CutPrefix(file, BinaryPrefix)
	if !found {
		return "", "", false
	}
	kind, name, found = strings.Cut(rest, "-")
	if !found || !validKind(kind) || !nameRE.MatchString(name) {
		return "", "", false
	}
	return kind, name, true
}

func validKind(kind string) bool {
	switch kind {
	case sdk.KindVerifier, sdk.KindResource, sdk.KindToken:
		return true
	}
	return false
}

// Manifest maps a file name in the plugin directory to its SHA-256.
type Manifest map[string][sha256.Size]byte

// ParseManifest reads sha256sum output: "<64 hex>  <name>" per line, or
// "<64 hex> *<name>" in binary mode. Names are bare file names. Blank lines
// are skipped; any other malformed line is an error with its line number.
func ParseManifest(r io.Reader) (Manifest, error) {
	m := Manifest{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		sum, name, err := parseManifestLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("line %d: %s is listed twice", n, name)
		}
		m[name] = sum
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

func parseManifestLine(line string) (sum [sha256.Size]byte, name string, err error) {
	const hexLen = 2 * sha256.Size
	// sha256sum escapes names with a newline or backslash by starting the
	// line with '\'; plugin names never need that.
	if len(line) < hexLen+3 || line[hexLen] != ' ' || (line[hexLen+1] != ' ' && line[hexLen+1] != '*') {
		return sum, "", errors.New(`want "<64 hex digits>  <file name>"`)
	}
	if _, err := hex.Decode(sum[:], []byte(line[:hexLen])); err != nil {
		return sum, "", fmt.Errorf("digest: %w", err)
	}
	name = line[hexLen+2:]
	if name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") || strings.TrimSpace(name) != name {
		return sum, "", fmt.Errorf("file name %q is not a bare file name", name)
	}
	return sum, name, nil
}

// ReadManifest reads dir/manifest.sha256. The manifest must be a regular
// file that only its owner can write: whoever can edit it can choose what
// the host runs.
func ReadManifest(dir string) (Manifest, error) {
	path := filepath.Join(dir, ManifestFile)
	f, err := openChecked(path, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := ParseManifest(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// checkDir refuses a plugin directory that anyone can write to: anyone could
// then replace a binary between two checks, or drop in their own.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("plugin directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("plugin directory %s is not a directory", dir)
	}
	// The sticky bit (as on /tmp) does not help: anyone may still add files.
	if fi.Mode().Perm()&0o002 != 0 {
		return &FileError{Path: dir, Status: StatusWritable,
			Detail: fmt.Sprintf("plugin directory is world-writable (mode %s); chmod o-w it", fi.Mode())}
	}
	return nil
}

// openChecked opens path for reading after refusing a symlink, a file that
// is not regular, a group- or world-writable file, and, when exec is set, a
// file without an execute bit. The checks are repeated on the open file, so
// that what is hashed is what was checked.
func openChecked(path string, exec bool) (*os.File, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &FileError{Path: path, Status: StatusAbsent, Detail: "no such file"}
		}
		return nil, err
	}
	if err := checkMode(path, fi, exec); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, &FileError{Path: path, Status: StatusSymlink, Detail: "is a symbolic link; install the file itself"}
		}
		return nil, err
	}
	ofi, err := f.Stat()
	if err == nil && !os.SameFile(fi, ofi) {
		err = &FileError{Path: path, Status: StatusMismatch, Detail: "file was replaced while it was being checked"}
	}
	if err == nil {
		err = checkMode(path, ofi, exec)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func checkMode(path string, fi fs.FileInfo, exec bool) error {
	mode := fi.Mode()
	switch {
	case mode&fs.ModeSymlink != 0:
		return &FileError{Path: path, Status: StatusSymlink, Detail: "is a symbolic link; install the file itself"}
	case !mode.IsRegular():
		return &FileError{Path: path, Status: StatusNotRegular, Detail: fmt.Sprintf("is not a regular file (mode %s)", mode)}
	case mode.Perm()&0o022 != 0:
		return &FileError{Path: path, Status: StatusWritable,
			Detail: fmt.Sprintf("is group- or world-writable (mode %s); chmod go-w it", mode)}
	case exec && mode.Perm()&0o111 == 0:
		return &FileError{Path: path, Status: StatusNotExecutable, Detail: fmt.Sprintf("is not executable (mode %s)", mode)}
	}
	return nil
}

// hashBinary checks and hashes one plugin binary.
func hashBinary(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := openChecked(path, true)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, fmt.Errorf("hashing %s: %w", path, err)
	}
	h.Sum(sum[:0])
	return sum, nil
}

// verifyBinary runs every check that must pass before dir/file is started
// and returns the digest that go-plugin checks again right before exec.
func verifyBinary(dir, file string) ([sha256.Size]byte, error) {
	var zero [sha256.Size]byte
	if err := checkDir(dir); err != nil {
		return zero, err
	}
	m, err := ReadManifest(dir)
	if err != nil {
		return zero, err
	}
	path := filepath.Join(dir, file)
	sum, err := hashBinary(path)
	if err != nil {
		return zero, err
	}
	return sum, matchManifest(m, path, file, sum)
}

func matchManifest(m Manifest, path, file string, sum [sha256.Size]byte) error {
	want, ok := m[file]
	if !ok {
		return &FileError{Path: path, Status: StatusMissing, Detail: "has no entry in " + ManifestFile}
	}
	if !bytes.Equal(want[:], sum[:]) {
		return &FileError{Path: path, Status: StatusMismatch,
			Detail: fmt.Sprintf("SHA-256 %x does not match %s (%x)", sum, ManifestFile, want)}
	}
	return nil
}

// WriteManifest hashes every regular kbs-plugin-* file in dir and replaces
// dir/manifest.sha256 atomically. Symlinks and other non-regular entries are
// left out, so they can never be started.
func WriteManifest(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	var buf bytes.Buffer
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), BinaryPrefix) && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("writing manifest: %w", err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("writing manifest: hashing %s: %w", name, err)
		}
		fmt.Fprintf(&buf, "%x  %s\n", h.Sum(nil), name)
	}
	return writeFileAtomic(filepath.Join(dir, ManifestFile), buf.Bytes())
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".manifest-*")
	if err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // makes the rename durable; not all file systems support it
		d.Close()
	}
	return nil
}
