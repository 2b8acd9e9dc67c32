package plugins

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hexB = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func TestParseManifest(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    map[string]string // name -> hex
		wantErr string
	}{
		"text mode":           {in: hexA + "  kbs-plugin-verifier-a\n", want: map[string]string{"kbs-plugin-verifier-a": hexA}},
		"binary mode marker":  {in: hexA + " *kbs-plugin-verifier-a\n", want: map[string]string{"kbs-plugin-verifier-a": hexA}},
		"upper-case digest":   {in: strings.ToUpper(hexB) + "  x\n", want: map[string]string{"x": hexB}},
		"no final newline":    {in: hexA + "  x", want: map[string]string{"x": hexA}},
		"crlf":                {in: hexA + "  x\r\n" + hexB + "  y\r\n", want: map[string]string{"x": hexA, "y": hexB}},
		"blank lines skipped": {in: "\n" + hexA + "  x\n\n" + hexB + "  y\n", want: map[string]string{"x": hexA, "y": hexB}},
		"empty":               {in: "", want: map[string]string{}},
		"short digest":        {in: hexA + "  x\n" + hexA[:63] + "  y\n", wantErr: "line 2: "},
		"not hex":             {in: strings.Replace(hexA, "a", "g", 1) + "  x\n", wantErr: "line 1: digest"},
		"one space":           {in: hexA + " x\n", wantErr: "line 1: "},
		"tab separator":       {in: hexA + "\t x\n", wantErr: "line 1: "},
		"no name":             {in: hexA + "  \n", wantErr: "line 1: "},
		"path with slash":     {in: hexA + "  ./x\n", wantErr: "line 1: file name"},
		"dot dot":             {in: hexA + "  ..\n", wantErr: "line 1: file name"},
		"escaped name":        {in: `\` + hexA + "  x\\\\y\n", wantErr: "line 1: "},
		"trailing space":      {in: hexA + "  x \n", wantErr: "line 1: file name"},
		"listed twice":        {in: hexA + "  x\n" + hexB + "  y\n" + hexB + "  x\n", wantErr: "line 3: x is listed twice"},
		"comment":             {in: "# sums\n" + hexA + "  x\n", wantErr: "line 1: "},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m, err := ParseManifest(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want prefix %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for k, v := range m {
				got[k] = fmt.Sprintf("%x", v)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("manifest = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseBinaryName(t *testing.T) {
	tests := map[string]struct {
		file, kind, name string
		ok               bool
	}{
		"verifier":       {"kbs-plugin-verifier-sample", "verifier", "sample", true},
		"resource":       {"kbs-plugin-resource-fs", "resource", "fs", true},
		"token":          {"kbs-plugin-token-ear", "token", "ear", true},
		"dash in name":   {"kbs-plugin-verifier-az-snp-vtpm", "verifier", "az-snp-vtpm", true},
		"unknown kind":   {"kbs-plugin-policy-opa", "", "", false},
		"upper case":     {"kbs-plugin-verifier-SNP", "", "", false},
		"no name":        {"kbs-plugin-verifier-", "", "", false},
		"name starts _":  {"kbs-plugin-verifier-_x", "", "", false},
		"dot in name":    {"kbs-plugin-verifier-a.b", "", "", false},
		"other prefix":   {"kbs-verifier-sample", "", "", false},
		"no kind at all": {"kbs-plugin-sample", "", "", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			kind, n, ok := ParseBinaryName(tc.file)
			if kind != tc.kind || n != tc.name || ok != tc.ok {
				t.Errorf("ParseBinaryName(%q) = %q, %q, %v; want %q, %q, %v", tc.file, kind, n, ok, tc.kind, tc.name, tc.ok)
			}
		})
	}
}

// pluginDir makes a plugin directory with the given executable files and a
// manifest listing them.
func pluginDir(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("#!/bin/sh\necho "+f+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteManifest(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestVerifyBinary(t *testing.T) {
	const ok = "kbs-plugin-verifier-ok"
	tests := map[string]struct {
		file   string
		setup  func(t *testing.T, dir string) // runs after the manifest is written
		status FileStatus                     // "" for success
		detail string
	}{
		"listed and unchanged": {file: ok},
		"symlink": {
			file: "kbs-plugin-verifier-link",
			setup: func(t *testing.T, dir string) {
				must(t, os.Symlink(ok, filepath.Join(dir, "kbs-plugin-verifier-link")))
				// Give the link the target's digest, so the symlink is the only fault.
				appendManifest(t, dir, "kbs-plugin-verifier-link", filepath.Join(dir, ok))
			},
			status: StatusSymlink, detail: "symbolic link",
		},
		"world-writable": {
			file:   ok,
			setup:  func(t *testing.T, dir string) { must(t, os.Chmod(filepath.Join(dir, ok), 0o757)) },
			status: StatusWritable, detail: "-rwxr-xrwx",
		},
		"group-writable": {
			file:   ok,
			setup:  func(t *testing.T, dir string) { must(t, os.Chmod(filepath.Join(dir, ok), 0o775)) },
			status: StatusWritable, detail: "group- or world-writable",
		},
		"not executable": {
			file:   ok,
			setup:  func(t *testing.T, dir string) { must(t, os.Chmod(filepath.Join(dir, ok), 0o644)) },
			status: StatusNotExecutable, detail: "not executable",
		},
		"directory": {
			file: "kbs-plugin-verifier-dir",
			setup: func(t *testing.T, dir string) {
				must(t, os.Mkdir(filepath.Join(dir, "kbs-plugin-verifier-dir"), 0o755))
			},
			status: StatusNotRegular, detail: "not a regular file",
		},
		"changed after the manifest": {
			file: ok,
			setup: func(t *testing.T, dir string) {
				f, err := os.OpenFile(filepath.Join(dir, ok), os.O_APPEND|os.O_WRONLY, 0)
				must(t, err)
				_, err = f.Write([]byte{0})
				must(t, err)
				must(t, f.Close())
			},
			status: StatusMismatch, detail: "does not match manifest.sha256",
		},
		"no manifest entry": {
			file: "kbs-plugin-verifier-new",
			setup: func(t *testing.T, dir string) {
				must(t, os.WriteFile(filepath.Join(dir, "kbs-plugin-verifier-new"), []byte("#!/bin/sh\n"), 0o755))
			},
			status: StatusMissing, detail: "has no entry in manifest.sha256",
		},
		"absent": {file: "kbs-plugin-verifier-gone", status: StatusAbsent, detail: "no such file"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := pluginDir(t, ok)
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			sum, err := verifyBinary(dir, tc.file)
			if tc.status == "" {
				if err != nil {
					t.Fatal(err)
				}
				want := sha256.Sum256([]byte("#!/bin/sh\necho " + ok + "\n"))
				if sum != want {
					t.Errorf("digest = %x, want %x", sum, want)
				}
				return
			}
			var fe *FileError
			if !errors.As(err, &fe) || fe.Status != tc.status {
				t.Fatalf("error = %v, want a FileError with status %q", err, tc.status)
			}
			if !errors.Is(err, ErrRefused) {
				t.Errorf("errors.Is(%v, ErrRefused) = false", err)
			}
			path := filepath.Join(dir, tc.file)
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("error %q does not name %s or say %q", err, path, tc.detail)
			}
		})
	}
}

func TestUnsafeDirectoryAndManifest(t *testing.T) {
	const ok = "kbs-plugin-verifier-ok"
	tests := map[string]struct {
		setup   func(t *testing.T, dir string)
		wantErr string
	}{
		"world-writable directory": {
			setup:   func(t *testing.T, dir string) { must(t, os.Chmod(dir, 0o777)) },
			wantErr: "plugin directory is world-writable",
		},
		"sticky world-writable directory": {
			setup:   func(t *testing.T, dir string) { must(t, os.Chmod(dir, 0o1777)) },
			wantErr: "plugin directory is world-writable",
		},
		"writable manifest": {
			setup:   func(t *testing.T, dir string) { must(t, os.Chmod(filepath.Join(dir, ManifestFile), 0o666)) },
			wantErr: ManifestFile + ": is group- or world-writable",
		},
		"symlinked manifest": {
			setup: func(t *testing.T, dir string) {
				other := filepath.Join(t.TempDir(), "m")
				must(t, os.Rename(filepath.Join(dir, ManifestFile), other))
				must(t, os.Symlink(other, filepath.Join(dir, ManifestFile)))
			},
			wantErr: ManifestFile + ": is a symbolic link",
		},
		"no manifest": {
			setup:   func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, ManifestFile))) },
			wantErr: ManifestFile + ": no such file",
		},
		"malformed manifest": {
			setup: func(t *testing.T, dir string) {
				must(t, os.WriteFile(filepath.Join(dir, ManifestFile), []byte(hexA+"  x\nnonsense\n"), 0o644))
			},
			wantErr: ManifestFile + ": line 2: ",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := pluginDir(t, ok)
			tc.setup(t, dir)
			_, err := verifyBinary(dir, ok)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestWriteManifest(t *testing.T) {
	dir := pluginDir(t, "kbs-plugin-verifier-b", "kbs-plugin-resource-a", "other-file")
	must(t, os.Symlink("kbs-plugin-resource-a", filepath.Join(dir, "kbs-plugin-resource-link")))
	must(t, os.Mkdir(filepath.Join(dir, "kbs-plugin-verifier-dir"), 0o755))
	must(t, WriteManifest(dir))

	got, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	must(t, err)
	var want strings.Builder
	for _, f := range []string{"kbs-plugin-resource-a", "kbs-plugin-verifier-b"} {
		fmt.Fprintf(&want, "%x  %s\n", sha256.Sum256([]byte("#!/bin/sh\necho "+f+"\n")), f)
	}
	if string(got) != want.String() {
		t.Errorf("manifest:\n%s\nwant:\n%s", got, want.String())
	}
	fi, err := os.Stat(filepath.Join(dir, ManifestFile))
	must(t, err)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("manifest mode = %s, want -rw-r--r--", fi.Mode())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".manifest-*")); len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
	// The format is sha256sum's own.
	cmd := exec.Command("sha256sum", "--check", "--strict", ManifestFile)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum --check: %v\n%s", err, out)
	}
}

func TestDiscover(t *testing.T) {
	dir := pluginDir(t, "kbs-plugin-verifier-ok", "kbs-plugin-resource-changed", "kbs-plugin-token-writable", "not-a-plugin")
	must(t, os.WriteFile(filepath.Join(dir, "kbs-plugin-verifier-unlisted"), []byte("x"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "kbs-plugin-resource-changed"), []byte("changed"), 0o755))
	must(t, os.Chmod(filepath.Join(dir, "kbs-plugin-token-writable"), 0o777))
	must(t, os.Symlink("kbs-plugin-verifier-ok", filepath.Join(dir, "kbs-plugin-verifier-link")))
	must(t, os.WriteFile(filepath.Join(dir, "kbs-plugin-Bad"), []byte("x"), 0o755))

	found, err := Discover(dir)
	must(t, err)
	got := map[string]string{}
	for _, f := range found {
		got[f.File] = fmt.Sprintf("%s %s/%s", f.Status, f.Kind, f.Name)
		if (f.Status == StatusOK) != (f.Detail == "") {
			t.Errorf("%s: status %s with detail %q", f.File, f.Status, f.Detail)
		}
	}
	want := map[string]string{
		"kbs-plugin-verifier-ok":       "ok verifier/ok",
		"kbs-plugin-resource-changed":  "mismatch resource/changed",
		"kbs-plugin-token-writable":    "writable token/writable",
		"kbs-plugin-verifier-unlisted": "missing verifier/unlisted",
		"kbs-plugin-verifier-link":     "symlink verifier/link",
		"kbs-plugin-Bad":               "bad-name /",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Discover:\n got %v\nwant %v", got, want)
	}
	if found[0].File > found[len(found)-1].File {
		t.Errorf("Discover is not sorted by file name")
	}

	t.Run("without a manifest everything is missing", func(t *testing.T) {
		must(t, os.Remove(filepath.Join(dir, ManifestFile)))
		found, err := Discover(dir)
		must(t, err)
		for _, f := range found {
			if f.Status == StatusOK || f.Status == StatusMismatch {
				t.Errorf("%s: status %s without a manifest", f.File, f.Status)
			}
		}
	})
	t.Run("world-writable directory", func(t *testing.T) {
		must(t, os.Chmod(dir, 0o777))
		if _, err := Discover(dir); err == nil || !strings.Contains(err.Error(), dir) {
			t.Fatalf("Discover of a world-writable directory = %v, want an error naming it", err)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func appendManifest(t *testing.T, dir, name, contentOf string) {
	t.Helper()
	data, err := os.ReadFile(contentOf)
	must(t, err)
	f, err := os.OpenFile(filepath.Join(dir, ManifestFile), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = fmt.Fprintf(f, "%x  %s\n", sha256.Sum256(data), name)
	must(t, err)
	must(t, f.Close())
}
