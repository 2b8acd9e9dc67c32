package e2e

// Tests of dist/: `make dist` and `make install`, the systemd unit, the
// Containerfile, the compose files and the kustomize overlays. No container
// engine and no cluster run here, so the files a container or a pod would
// see are laid out in temporary directories through the mounts that the
// compose file or the rendered Deployment declares, and the real kbs-host
// starts on the configuration they mount.

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/gokbs/kbs/host/internal/config"
	"github.com/gokbs/kbs/host/internal/redistest"
)

// distPlugins is the set the dist tests assemble: the one the issue names.
var distPlugins = []string{"verifier/snp", "verifier/tdx", "resource/fs", "token/ear"}

// distBuild runs `make dist` for distPlugins into a directory of the test.
func distBuild(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	if b, err := distMake(t, "dist", "PLUGINS="+strings.Join(distPlugins, " "), "DIST_OUT="+out); err != nil {
		t.Fatalf("make dist: %v\n%s", err, b)
	}
	return out
}

func distMake(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-C", repoRoot(t)}, args...)...)
	return cmd.CombinedOutput()
}

func distPluginFile(p string) string {
	kind, name, _ := strings.Cut(p, "/")
	return "kbs-plugin-" + kind + "-" + name
}

// checkPluginDir checks that dir holds exactly the plugins of set and a
// manifest that sha256sum verifies and that names exactly them.
func checkPluginDir(t *testing.T, dir string, set []string) {
	t.Helper()
	var want []string
	for _, p := range set {
		want = append(want, distPluginFile(p))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	sort.Strings(want)
	if !slices.Equal(got, append(slices.Clone(want), "manifest.sha256")) {
		t.Errorf("%s holds %v, want exactly %v and manifest.sha256", dir, got, want)
	}
	cmd := exec.Command("sha256sum", "-c", "manifest.sha256")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c manifest.sha256 in %s: %v\n%s", dir, err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 64 {
			t.Errorf("manifest line %q is not in sha256sum format", line)
			continue
		}
		listed = append(listed, name)
	}
	sort.Strings(listed)
	if !slices.Equal(listed, want) {
		t.Errorf("manifest lists %v, want %v", listed, want)
	}
}

func TestDistAssemble(t *testing.T) {
	out := distBuild(t)
	for _, b := range []string{"kbs-host", "kbs-client"} {
		if fi, err := os.Stat(filepath.Join(out, "bin", b)); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("bin/%s is missing or not executable: %v", b, err)
		}
	}
	checkPluginDir(t, filepath.Join(out, "plugins"), distPlugins)

	// The host starts every plugin of the directory (static binaries that
	// run, and a manifest the host accepts).
	cmd := exec.Command(filepath.Join(out, "bin", "kbs-host"), "plugins", "list", "--start", "--plugin-dir", filepath.Join(out, "plugins"))
	list, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kbs-host plugins list --start: %v\n%s", err, list)
	}
	for _, p := range distPlugins {
		kind, name, _ := strings.Cut(p, "/")
		if !regexp.MustCompile(`(?m)^` + kind + `\s+` + name + `\s+\S+\s+true\s`).Match(list) {
			t.Errorf("plugin %s did not start:\n%s", p, list)
		}
	}

	t.Run("a smaller set replaces the plugin directory", func(t *testing.T) {
		small := t.TempDir()
		if b, err := distMake(t, "dist", "PLUGINS=verifier/snp token/ear", "DIST_OUT="+small); err != nil {
			t.Fatalf("make dist: %v\n%s", err, b)
		}
		if b, err := distMake(t, "dist", "PLUGINS=token/ear", "DIST_OUT="+small); err != nil {
			t.Fatalf("make dist: %v\n%s", err, b)
		}
		checkPluginDir(t, filepath.Join(small, "plugins"), []string{"token/ear"})
	})

	for _, tc := range []struct{ name, plugins, want string }{
		{"unknown name", "verifier/snp verifier/nope", `unknown plugin "verifier/nope"`},
		{"path outside plugins", "../host", `unknown plugin "../host"`},
		{"name without kind", "snp", `unknown plugin "snp"`},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b, err := distMake(t, "dist", "PLUGINS="+tc.plugins, "DIST_OUT="+dir)
			if err == nil {
				t.Fatalf("make dist PLUGINS=%q succeeded:\n%s", tc.plugins, b)
			}
			if !bytes.Contains(b, []byte(tc.want)) || !bytes.Contains(b, []byte("verifier/snp")) {
				t.Errorf("make dist PLUGINS=%q: want an error naming %s and listing the plugins, got:\n%s", tc.plugins, tc.want, b)
			}
			if _, err := os.Stat(filepath.Join(dir, "bin")); err == nil {
				t.Errorf("make dist PLUGINS=%q built something before refusing", tc.plugins)
			}
		})
	}
}

func TestDistImageWithoutEngine(t *testing.T) {
	b, err := distMake(t, "image", "PLUGINS=token/ear", "CONTAINER_ENGINE=kbs-no-such-engine")
	if err == nil {
		t.Fatalf("make image without an engine succeeded:\n%s", b)
	}
	if !bytes.Contains(b, []byte("no container engine")) || !bytes.Contains(b, []byte("make dist")) {
		t.Errorf("make image without an engine: want a message saying so, got:\n%s", b)
	}
}

// containerfile is what the tests need from dist/Containerfile.
type containerfile struct {
	froms                  []string
	user, entrypoint       string
	pluginDir              string
	ownedDirs              []string // COPY --chown=65532 destinations
	runs                   []string
	healthcheck, buildArgs bool
}

func readContainerfile(t *testing.T) containerfile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "dist", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var cf containerfile
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			cf.froms = append(cf.froms, rest)
		case "USER":
			cf.user = rest
		case "ENTRYPOINT":
			cf.entrypoint = rest
		case "HEALTHCHECK":
			cf.healthcheck = true
		case "RUN":
			cf.runs = append(cf.runs, rest)
		case "ARG":
			if strings.HasPrefix(rest, "PLUGINS") {
				cf.buildArgs = true
			}
		case "COPY":
			f := strings.Fields(rest)
			dst := f[len(f)-1]
			if strings.Contains(rest, "/out/plugins/") {
				cf.pluginDir = strings.TrimSuffix(dst, "/")
			}
			if strings.Contains(rest, "--chown=65532:65532") {
				cf.ownedDirs = append(cf.ownedDirs, dst)
			}
		}
	}
	return cf
}

func TestDistContainerfile(t *testing.T) {
	cf := readContainerfile(t)
	if len(cf.froms) < 2 {
		t.Fatalf("want a multi-stage build, got FROM %v", cf.froms)
	}
	// The images behind the ARGs of the first lines.
	raw, _ := os.ReadFile(filepath.Join(repoRoot(t), "dist", "Containerfile"))
	if !regexp.MustCompile(`(?m)^ARG GO_IMAGE=\S*golang:1\.26-`).Match(raw) {
		t.Error("the builder is not a Go 1.26 image")
	}
	if !regexp.MustCompile(`(?m)^ARG RUNTIME_IMAGE=\S*distroless/base-\S+:nonroot$`).Match(raw) {
		t.Error("the runtime is not a glibc-based minimal nonroot image (distroless/base)")
	}
	if !cf.buildArgs || !slices.ContainsFunc(cf.runs, func(r string) bool { return strings.Contains(r, `make dist PLUGINS="$PLUGINS"`) }) {
		t.Error(`the builder does not run make dist PLUGINS="$PLUGINS" from a PLUGINS build argument`)
	}
	if cf.user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532", cf.user)
	}
	if cf.entrypoint != `["/usr/local/bin/kbs-host", "--config", "/etc/kbs/kbs.toml"]` {
		t.Errorf("ENTRYPOINT %s", cf.entrypoint)
	}
	if cf.healthcheck {
		t.Error("the image has a HEALTHCHECK; probes belong to the orchestrator")
	}
	if cf.pluginDir != "/usr/lib/kbs/plugins" {
		t.Errorf("plugins copied to %q", cf.pluginDir)
	}
	for _, d := range []string{"/etc/kbs/keys", "/var/lib/kbs", "/opt/confidential-containers/kbs/repository"} {
		if !slices.Contains(cf.ownedDirs, d) {
			t.Errorf("%s is not in the image owned by 65532 (named volumes take their owner from it)", d)
		}
	}
}

// mounts maps container paths to the directories or files standing for
// them in a test.
type mounts []mountPoint

type mountPoint struct {
	target, source string
	readOnly       bool
}

// translate gives the source path of a container path: through the mount
// with the longest target that is the path or one of its parents.
func (m mounts) translate(p string) (string, mountPoint, bool) {
	best := -1
	for i, mp := range m {
		if (p == mp.target || strings.HasPrefix(p, strings.TrimSuffix(mp.target, "/")+"/")) &&
			(best < 0 || len(mp.target) > len(m[best].target)) {
			best = i
		}
	}
	if best < 0 {
		return "", mountPoint{}, false
	}
	mp := m[best]
	return filepath.Join(mp.source, strings.TrimPrefix(p, mp.target)), mp, true
}

// absPaths are the quoted absolute paths of a TOML text, outside comments.
var absPath = regexp.MustCompile(`"(/[^"]*)"`)

// rewriteConfig moves every path of a container configuration through m.
// The plugin directory is in the image and comes from --plugin-dir; any
// other path that no mount holds is an error: the container would not find
// it. It returns the rewritten text.
func rewriteConfig(t *testing.T, raw []byte, m mounts, pluginDir string) string {
	t.Helper()
	var b strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		code, comment, hasComment := strings.Cut(sc.Text(), "#")
		code = absPath.ReplaceAllStringFunc(code, func(q string) string {
			p := strings.Trim(q, `"`)
			if p == pluginDir {
				return q
			}
			src, _, ok := m.translate(p)
			if !ok {
				t.Errorf("the configuration names %s, which no volume mounts", p)
				return q
			}
			return strconv.Quote(src)
		})
		b.WriteString(code)
		if hasComment {
			b.WriteString("#" + comment)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// loadStrict loads a configuration as kbs-host does (unknown keys are errors).
func loadStrict(t *testing.T, raw []byte) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kbs.toml")
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatalf("the configuration does not load: %v", err)
	}
	return cfg
}

// fsRepository is the directory the fs plugin serves.
func fsRepository(t *testing.T, cfg *config.Config) string {
	t.Helper()
	for _, r := range cfg.Plugins.Resource {
		if r.Name == "fs" {
			if d, ok := r.Config["dir"].(string); ok {
				return d
			}
		}
	}
	t.Fatal("no fs resource backend in the configuration")
	return ""
}

// writablePaths are the paths the broker writes to.
func writablePaths(t *testing.T, cfg *config.Config) []string {
	t.Helper()
	var ps []string
	if cfg.Storage.StorageType == config.StorageBolt {
		ps = append(ps, cfg.Storage.Dir)
	}
	for _, r := range cfg.Plugins.Resource {
		if ro, _ := r.Config["read_only"].(bool); r.Name == "fs" && !ro {
			ps = append(ps, r.Config["dir"].(string))
		}
	}
	return ps
}

// startMounted starts kbs-host on a container's configuration, laid out
// through m, on a fresh loopback port.
func startMounted(t *testing.T, cfgPath string, m mounts, env []string) *broker {
	t.Helper()
	src, _, ok := m.translate(cfgPath)
	if !ok {
		t.Fatalf("no volume mounts the configuration %s", cfgPath)
	}
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	cfg := loadStrict(t, raw)
	for _, w := range writablePaths(t, cfg) {
		if _, mp, ok := m.translate(w); !ok || mp.readOnly {
			t.Errorf("the broker writes %s, which is not on a writable volume", w)
		}
	}
	rewritten := rewriteConfig(t, raw, m, cfg.Plugins.Dir)
	p := filepath.Join(t.TempDir(), "kbs.toml")
	if err := os.WriteFile(p, []byte(rewritten), 0o600); err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	addr := freeAddr(t)
	return start(t, bins(t).host, []string{"--config", p, "--listen", addr, "--plugin-dir", bins(t).pluginDir}, "http://"+addr, "", env)
}

// keygen runs `kbs-client keygen init --dir dir [--ca]`.
func keygen(t *testing.T, dir string, ca bool) {
	t.Helper()
	args := []string{"keygen", "init", "--dir", dir}
	if ca {
		args = append(args, "--ca")
	}
	if _, errOut, err := runClient(t, args...); err != nil {
		t.Fatalf("kbs-client %v: %v: %s", args, err, errOut)
	}
}

func TestDistKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	keygen(t, dir, true)
	before := map[string]string{}
	for _, f := range []string{"admin.key", "admin.pub", "token.key", "ca.key", "ca-cert.pem", "token-cert.pem", "token-cert-chain.pem"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("keygen init --ca did not write %s: %v", f, err)
		}
		before[f] = string(b)
	}
	for f, mode := range map[string]os.FileMode{"admin.key": 0o600, "token.key": 0o600, "ca.key": 0o600, "admin.pub": 0o644} {
		if fi, _ := os.Stat(filepath.Join(dir, f)); fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", f, fi.Mode().Perm(), mode)
		}
	}
	if out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(dir, "ca-cert.pem"), filepath.Join(dir, "token-cert.pem")).CombinedOutput(); err != nil {
		t.Errorf("openssl verify of the token certificate: %v\n%s", err, out)
	}

	t.Run("a second run keeps every file", func(t *testing.T) {
		keygen(t, dir, true)
		for f, old := range before {
			if b, _ := os.ReadFile(filepath.Join(dir, f)); string(b) != old {
				t.Errorf("%s changed", f)
			}
		}
	})
	t.Run("a chain for another key is refused", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.key")
		_, errOut, err := runClient(t, "keygen", "token", "--key", other, "--chain", filepath.Join(dir, "token-cert-chain.pem"),
			"--ca-cert", filepath.Join(dir, "ca-cert.pem"), "--ca-key", filepath.Join(dir, "ca.key"))
		if err == nil || !strings.Contains(errOut, "another key") {
			t.Errorf("want a refusal naming the mismatch, got %v: %s", err, errOut)
		}
	})
	t.Run("a renewed chain certifies the same key", func(t *testing.T) {
		chain := filepath.Join(dir, "token-cert-chain.pem")
		if err := os.Remove(chain); err != nil {
			t.Fatal(err)
		}
		if _, errOut, err := runClient(t, "keygen", "token", "--key", filepath.Join(dir, "token.key"), "--chain", chain,
			"--ca-cert", filepath.Join(dir, "ca-cert.pem"), "--ca-key", filepath.Join(dir, "ca.key")); err != nil {
			t.Fatalf("%v: %s", err, errOut)
		}
		if b, _ := os.ReadFile(chain); string(b) == before["token-cert-chain.pem"] {
			t.Error("the chain was not renewed")
		}
	})
	t.Run("a certificate needs the CA and the chain", func(t *testing.T) {
		_, errOut, err := runClient(t, "keygen", "token", "--key", filepath.Join(t.TempDir(), "k"), "--ca-cert", "x.pem")
		if err == nil || !strings.Contains(errOut, "--ca-key") {
			t.Errorf("want a usage error, got %v: %s", err, errOut)
		}
	})
}

// unitSettings reads the Key=Value lines of a systemd unit.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := map[string][]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		s[k] = append(s[k], v)
	}
	return s
}

func TestDistSystemdUnit(t *testing.T) {
	s := unitSettings(t, filepath.Join(repoRoot(t), "dist", "systemd", "kbs.service"))
	for k, want := range map[string]string{
		"User":            "kbs",
		"Group":           "kbs",
		"ExecStart":       "/usr/local/bin/kbs-host --config /etc/kbs/kbs.toml",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"PrivateTmp":      "yes",
		"NoNewPrivileges": "yes",
		"KillMode":        "control-group",
		"Restart":         "on-failure",
		"ReadWritePaths":  "/var/lib/kbs",
		"StateDirectory":  "kbs",
	} {
		if !slices.Contains(s[k], want) {
			t.Errorf("%s=%v, want %s", k, s[k], want)
		}
	}
	sysusers, err := os.ReadFile(filepath.Join(repoRoot(t), "dist", "systemd", "kbs.sysusers"))
	if err != nil || !regexp.MustCompile(`(?m)^u kbs `).Match(sysusers) {
		t.Errorf("dist/systemd/kbs.sysusers does not create the user kbs: %v", err)
	}
}

func TestDistInstall(t *testing.T) {
	out := distBuild(t)
	dest := t.TempDir()
	b, err := distMake(t, "install", "DESTDIR="+dest, "DIST_OUT="+out)
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, b)
	}
	for p, mode := range map[string]os.FileMode{
		"usr/local/bin/kbs-host":                         0o755,
		"usr/local/bin/kbs-client":                       0o755,
		"usr/local/lib/systemd/system/kbs.service":       0o644,
		"usr/local/lib/sysusers.d/kbs.conf":              0o644,
		"etc/kbs/kbs.toml":                               0o644,
		"etc/kbs/keys":                                   0o750 | os.ModeDir,
		"var/lib/kbs":                                    0o750 | os.ModeDir,
		"var/lib/kbs/repository":                         0o750 | os.ModeDir,
		"usr/local/lib/kbs/plugins/manifest.sha256":      0o644,
		"usr/local/lib/kbs/plugins/kbs-plugin-token-ear": 0o755,
	} {
		fi, err := os.Stat(filepath.Join(dest, p))
		if err != nil {
			t.Errorf("make install did not lay out %s: %v", p, err)
			continue
		}
		if got := fi.Mode() & (os.ModeDir | os.ModePerm); got != mode {
			t.Errorf("%s: mode %v, want %v", p, got, mode)
		}
	}
	checkPluginDir(t, filepath.Join(dest, "usr/local/lib/kbs/plugins"), distPlugins)

	t.Run("the unit passes systemd-analyze verify", func(t *testing.T) {
		sa, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze is not installed: the unit is checked by TestDistSystemdUnit only")
		}
		// verify wants ExecStart's binary: point it into DESTDIR.
		unit, _ := os.ReadFile(filepath.Join(dest, "usr/local/lib/systemd/system/kbs.service"))
		unit = bytes.ReplaceAll(unit, []byte("ExecStart=/usr/local/"), []byte("ExecStart="+dest+"/usr/local/"))
		p := filepath.Join(t.TempDir(), "kbs.service")
		if err := os.WriteFile(p, unit, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sa, "verify", p).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("systemd-sysusers creates the user kbs", func(t *testing.T) {
		su, err := exec.LookPath("systemd-sysusers")
		if err != nil {
			t.Skip("systemd-sysusers is not installed: the sysusers file is checked by TestDistSystemdUnit only")
		}
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(su, "--root="+root, filepath.Join(dest, "usr/local/lib/sysusers.d/kbs.conf")).CombinedOutput(); err != nil {
			t.Fatalf("systemd-sysusers: %v\n%s", err, out)
		}
		if !regexp.MustCompile(`(?m)^kbs:x:\d+:\d+:[^:]*:/var/lib/kbs:`).Match(mustRead(t, filepath.Join(root, "etc", "passwd"))) {
			t.Errorf("no user kbs with home /var/lib/kbs:\n%s", mustRead(t, filepath.Join(root, "etc", "passwd")))
		}
	})

	t.Run("the installed configuration and plugins start the broker", func(t *testing.T) {
		keygen(t, filepath.Join(dest, "etc/kbs/keys"), false)
		m := mounts{
			{target: "/usr/local", source: filepath.Join(dest, "usr/local")},
			{target: "/etc/kbs", source: filepath.Join(dest, "etc/kbs")},
			{target: "/var/lib/kbs", source: filepath.Join(dest, "var/lib/kbs")},
		}
		raw, err := os.ReadFile(filepath.Join(dest, "etc/kbs/kbs.toml"))
		if err != nil {
			t.Fatal(err)
		}
		cfg := loadStrict(t, raw)
		if cfg.Plugins.Dir != "/usr/local/lib/kbs/plugins" {
			t.Errorf("installed plugins.dir = %s", cfg.Plugins.Dir)
		}
		// The plugin directory is rewritten too: here the installed one runs.
		text := rewriteConfig(t, raw, m, "")
		p := filepath.Join(t.TempDir(), "kbs.toml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		addr := freeAddr(t)
		br := start(t, filepath.Join(dest, "usr/local/bin/kbs-host"), []string{"--config", p, "--listen", addr}, "http://"+addr, "", nil)
		putViaAdmin(t, br.URL, filepath.Join(dest, "etc/kbs/keys/admin.key"), "default/key/installed")
		if !fileExists(filepath.Join(dest, "var/lib/kbs/repository/default/key/installed")) {
			t.Error("a resource put through the admin API is not in /var/lib/kbs/repository")
		}
	})

	t.Run("an existing configuration is kept", func(t *testing.T) {
		cfgPath := filepath.Join(dest, "etc/kbs/kbs.toml")
		edited := append(mustRead(t, cfgPath), []byte("# edited by the operator\n")...)
		if err := os.WriteFile(cfgPath, edited, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := distMake(t, "install", "DESTDIR="+dest, "DIST_OUT="+out)
		if err != nil {
			t.Fatalf("make install: %v\n%s", err, b)
		}
		if !bytes.Equal(mustRead(t, cfgPath), edited) {
			t.Error("make install replaced an existing /etc/kbs/kbs.toml")
		}
		if !bytes.Contains(b, []byte("keeping")) {
			t.Errorf("make install did not say it kept the configuration:\n%s", b)
		}
	})

	t.Run("PREFIX moves the binaries, the unit and the plugin directory", func(t *testing.T) {
		d := t.TempDir()
		if b, err := distMake(t, "install", "DESTDIR="+d, "PREFIX=/usr", "DIST_OUT="+out); err != nil {
			t.Fatalf("make install PREFIX=/usr: %v\n%s", err, b)
		}
		s := unitSettings(t, filepath.Join(d, "usr/lib/systemd/system/kbs.service"))
		if !slices.Contains(s["ExecStart"], "/usr/bin/kbs-host --config /etc/kbs/kbs.toml") {
			t.Errorf("ExecStart=%v", s["ExecStart"])
		}
		cfg := loadStrict(t, mustRead(t, filepath.Join(d, "etc/kbs/kbs.toml")))
		if cfg.Plugins.Dir != "/usr/lib/kbs/plugins" {
			t.Errorf("plugins.dir = %s", cfg.Plugins.Dir)
		}
		checkPluginDir(t, filepath.Join(d, "usr/lib/kbs/plugins"), distPlugins)
	})
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putViaAdmin stores a resource with kbs-client and the admin key.
func putViaAdmin(t *testing.T, url, adminKey, path string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "res")
	if err := os.WriteFile(src, []byte("secret of "+path), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := runClient(t, "--url", url, "--admin-key", adminKey, "set-resource", "--path", path, "--resource-file", src); err != nil {
		t.Fatalf("set-resource %s: %v: %s", path, err, errOut)
	}
}

// ---- docker compose ------------------------------------------------------

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	Build       map[string]any `yaml:"build"`
	Entrypoint  []string       `yaml:"entrypoint"`
	Command     []string       `yaml:"command"`
	Volumes     []string       `yaml:"volumes"`
	DependsOn   any            `yaml:"depends_on"`
	Environment map[string]string
	ReadOnly    bool     `yaml:"read_only"`
	Tmpfs       []string `yaml:"tmpfs"`
	CapDrop     []string `yaml:"cap_drop"`
	Profiles    []string `yaml:"profiles"`
}

func readCompose(t *testing.T, path string) composeFile {
	t.Helper()
	var cf composeFile
	if err := yaml.Unmarshal(mustRead(t, path), &cf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cf
}

// composeMounts lays out a service's volumes: binds from the repository
// (which must exist there), named volumes as directories under vols shared
// by every service of the file.
func composeMounts(t *testing.T, root, dir string, cf composeFile, name, vols string) mounts {
	t.Helper()
	var m mounts
	for _, v := range cf.Services[name].Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			t.Errorf("service %s: volume %q has no target", name, v)
			continue
		}
		mp := mountPoint{target: parts[1], readOnly: len(parts) > 2 && parts[2] == "ro"}
		if src := parts[0]; strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
			mp.source = filepath.Clean(filepath.Join(dir, src))
			if rel, err := filepath.Rel(root, mp.source); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("service %s mounts %s from outside the repository", name, src)
			}
			if _, err := os.Stat(mp.source); err != nil {
				t.Errorf("service %s mounts %s, which is not in the repository: %v", name, src, err)
			}
		} else {
			if _, ok := cf.Volumes[src]; !ok {
				t.Errorf("service %s uses the volume %s, which the file does not declare", name, src)
			}
			mp.source = filepath.Join(vols, src)
			if err := os.MkdirAll(mp.source, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		m = append(m, mp)
	}
	return m
}

// checkComposePlugins checks that the configuration a broker service
// mounts names only plugins of the image that setup builds by default.
func checkComposePlugins(t *testing.T, setup composeService, m mounts) {
	t.Helper()
	arg, _ := setup.Build["args"].(map[string]any)["PLUGINS"].(string)
	def := regexp.MustCompile(`^\$\{PLUGINS:-([^}]*)\}$`).FindStringSubmatch(arg)
	if def == nil {
		t.Fatalf("setup's PLUGINS build argument %q has no default", arg)
	}
	src, _, ok := m.translate("/etc/kbs/kbs.toml")
	if !ok {
		t.Fatal("no configuration mounted at /etc/kbs/kbs.toml")
	}
	for _, p := range configPlugins(loadStrict(t, mustRead(t, src))) {
		if !slices.Contains(strings.Fields(def[1]), p) {
			t.Errorf("the configuration names %s, which the image does not contain by default (%s)", p, def[1])
		}
	}
}

// dependsOnCompleted reports whether svc waits for dep to complete.
func dependsOnCompleted(svc composeService, dep string) bool {
	deps, ok := svc.DependsOn.(map[string]any)
	if !ok {
		return false
	}
	d, ok := deps[dep].(map[string]any)
	return ok && d["condition"] == "service_completed_successfully"
}

// runSetup runs the setup service's command with the real kbs-client,
// its container paths moved through its mounts.
func runSetup(t *testing.T, svc composeService, m mounts) {
	t.Helper()
	if len(svc.Entrypoint) != 1 || svc.Entrypoint[0] != "/usr/local/bin/kbs-client" {
		t.Fatalf("the setup service's entrypoint is %v, want our CLI", svc.Entrypoint)
	}
	args := slices.Clone(svc.Command)
	for i, a := range args {
		if strings.HasPrefix(a, "/") {
			src, _, ok := m.translate(a)
			if !ok {
				t.Fatalf("setup names %s, which no volume mounts", a)
			}
			args[i] = src
		}
	}
	if _, errOut, err := runClient(t, args...); err != nil {
		t.Fatalf("setup: kbs-client %v: %v: %s", args, err, errOut)
	}
}

// composeValidate runs `docker compose config` (or docker-compose) when a
// compose implementation is installed; it needs no engine.
func composeValidate(t *testing.T, path string) {
	t.Helper()
	var cmd *exec.Cmd
	if exec.Command("docker", "compose", "version").Run() == nil {
		cmd = exec.Command("docker", "compose", "-f", path, "config", "-q")
	} else if p, err := exec.LookPath("docker-compose"); err == nil {
		cmd = exec.Command(p, "-f", path, "config", "-q")
	} else {
		t.Logf("no docker compose implementation installed: %s checked by parsing only", path)
		return
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%v: %v\n%s", cmd.Args, err, out)
	}
}

// checkComposeCommon checks what every compose file of dist/ promises.
func checkComposeCommon(t *testing.T, cf composeFile, brokers []string) {
	t.Helper()
	setup, ok := cf.Services["setup"]
	if !ok {
		t.Fatal("no setup service")
	}
	if setup.Build == nil || setup.Build["dockerfile"] != "dist/Containerfile" {
		t.Errorf("the setup service does not build dist/Containerfile: %v", setup.Build)
	}
	for name, svc := range cf.Services {
		all := strings.Join(append(slices.Clone(svc.Entrypoint), svc.Command...), " ")
		if strings.Contains(all, "curl") || strings.Contains(all, "wget") || strings.Contains(all, "://") {
			t.Errorf("service %s fetches something at start: %s", name, all)
		}
		if svc.Image != setup.Image {
			t.Errorf("service %s runs %q, not the image setup builds (%q)", name, svc.Image, setup.Image)
		}
	}
	for _, b := range brokers {
		svc := cf.Services[b]
		if !dependsOnCompleted(svc, "setup") {
			t.Errorf("service %s does not wait for setup to complete", b)
		}
		if !svc.ReadOnly || !slices.Contains(svc.Tmpfs, "/tmp") || !slices.Contains(svc.CapDrop, "ALL") {
			t.Errorf("service %s: want read_only, a tmpfs /tmp (plugin sockets) and cap_drop ALL", b)
		}
	}
}

func TestDistComposeBackgroundCheck(t *testing.T) {
	root := repoRoot(t)
	dir := filepath.Join(root, "dist", "compose", "background-check")
	path := filepath.Join(dir, "compose.yaml")
	composeValidate(t, path)
	cf := readCompose(t, path)
	checkComposeCommon(t, cf, []string{"kbs"})

	vols := t.TempDir()
	runSetup(t, cf.Services["setup"], composeMounts(t, root, dir, cf, "setup", vols))
	kbs := composeMounts(t, root, dir, cf, "kbs", vols)
	checkComposePlugins(t, cf.Services["setup"], kbs)
	br := startMounted(t, "/etc/kbs/kbs.toml", kbs, nil)

	// The guide's walk-through, with the client service's mounts.
	client := composeMounts(t, root, dir, cf, "client", vols)
	adminKey, _, ok := client.translate(cf.Services["client"].Environment["KBS_ADMIN_KEY"])
	if !ok {
		t.Fatal("the client service does not mount its admin key")
	}
	policy, _, ok := client.translate("/etc/kbs/demo-resource-policy.rego")
	if !ok {
		t.Fatal("the client service does not mount the demonstration policy")
	}
	putViaAdmin(t, br.URL, adminKey, "default/key/demo")
	if _, errOut, err := runClient(t, "--url", br.URL, "get-resource", "--path", "default/key/demo"); err == nil || !strings.Contains(errOut, "403") {
		t.Errorf("sample evidence under the default policy: want 403, got %v: %s", err, errOut)
	}
	if _, errOut, err := runClient(t, "--url", br.URL, "--admin-key", adminKey, "set-resource-policy", "--policy-file", policy); err != nil {
		t.Fatalf("set-resource-policy: %v: %s", err, errOut)
	}
	got, errOut, err := runClient(t, "--url", br.URL, "get-resource", "--path", "default/key/demo")
	if err != nil || got != "secret of default/key/demo" {
		t.Errorf("get-resource under the demonstration policy: %q, %v: %s", got, err, errOut)
	}
}

func TestDistComposePassport(t *testing.T) {
	root := repoRoot(t)
	dir := filepath.Join(root, "dist", "compose", "passport")
	path := filepath.Join(dir, "compose.yaml")
	composeValidate(t, path)
	cf := readCompose(t, path)
	checkComposeCommon(t, cf, []string{"broker1", "broker2"})

	vols := t.TempDir()
	runSetup(t, cf.Services["setup"], composeMounts(t, root, dir, cf, "setup", vols))
	m1 := composeMounts(t, root, dir, cf, "broker1", vols)
	m2 := composeMounts(t, root, dir, cf, "broker2", vols)
	checkComposePlugins(t, cf.Services["setup"], m1)
	checkComposePlugins(t, cf.Services["setup"], m2)
	b1 := startMounted(t, "/etc/kbs/kbs.toml", m1, nil)
	b2 := startMounted(t, "/etc/kbs/kbs.toml", m2, nil)

	// The guest attests to broker 1 and fetches from broker 2 with the token.
	client := composeMounts(t, root, dir, cf, "client", vols)
	adminKey, _, _ := client.translate(cf.Services["client"].Environment["KBS_ADMIN_KEY"])
	teeKey, _, ok := client.translate("/var/lib/kbs/tee.key")
	if !ok {
		t.Fatal("the client service keeps no volume for the guest's key")
	}
	putViaAdmin(t, b2.URL, adminKey, "default/key/demo")
	tok, errOut, err := runClient(t, "--url", b1.URL, "attest", "--tee-key-file", teeKey)
	if err != nil {
		t.Fatalf("attest to broker1: %v: %s", err, errOut)
	}
	got, errOut, err := runClient(t, "--url", b2.URL, "get-resource", "--path", "default/key/demo",
		"--token", strings.TrimSpace(tok), "--tee-key-file", teeKey)
	if err != nil || got != "secret of default/key/demo" {
		t.Errorf("get-resource from broker2 with broker1's token: %q, %v: %s", got, err, errOut)
	}
}

// ---- Kubernetes ------------------------------------------------------------

type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec yaml.Node         `yaml:"spec"`
}

type deploymentSpec struct {
	Replicas int `yaml:"replicas"`
	Template struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec podSpec `yaml:"spec"`
	} `yaml:"template"`
}

type podSpec struct {
	ServiceAccountName string `yaml:"serviceAccountName"`
	SecurityContext    struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		RunAsUser    int   `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Containers []k8sContainer `yaml:"containers"`
	Volumes    []k8sVolume    `yaml:"volumes"`
}

type k8sContainer struct {
	Name           string     `yaml:"name"`
	Image          string     `yaml:"image"`
	Command        []string   `yaml:"command"`
	Args           []string   `yaml:"args"`
	VolumeMounts   []k8sMount `yaml:"volumeMounts"`
	LivenessProbe  *k8sProbe  `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe  `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
	} `yaml:"httpGet"`
}

type k8sMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	SubPath   string `yaml:"subPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

type k8sVolume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
	} `yaml:"secret"`
	EmptyDir              *struct{} `yaml:"emptyDir"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
	} `yaml:"persistentVolumeClaim"`
	CSI *struct {
		Driver           string            `yaml:"driver"`
		ReadOnly         bool              `yaml:"readOnly"`
		VolumeAttributes map[string]string `yaml:"volumeAttributes"`
	} `yaml:"csi"`
}

type rendered struct {
	objs []k8sObject
}

func (r rendered) find(kind, name string) (k8sObject, bool) {
	for _, o := range r.objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o, true
		}
	}
	return k8sObject{}, false
}

func (r rendered) deployments(t *testing.T) map[string]deploymentSpec {
	t.Helper()
	ds := map[string]deploymentSpec{}
	for _, o := range r.objs {
		if o.Kind != "Deployment" {
			continue
		}
		var d deploymentSpec
		if err := o.Spec.Decode(&d); err != nil {
			t.Fatalf("Deployment %s: %v", o.Metadata.Name, err)
		}
		ds[o.Metadata.Name] = d
	}
	return ds
}

func kustomize(t *testing.T, dir string) rendered {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: the kustomize overlays are not rendered")
	}
	out, err := exec.Command(kubectl, "kustomize", dir).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr)
	}
	var r rendered
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o k8sObject
		if err := dec.Decode(&o); err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("rendered %s: %v", dir, err)
		}
		r.objs = append(r.objs, o)
	}
	return r
}

// podMounts lays out the pod's volumes for its first container: secrets
// from keyDirs (by Secret name), config maps from the rendered objects,
// other volumes as fresh directories, nested where their mount points are.
func podMounts(t *testing.T, r rendered, pod podSpec, keyDirs map[string]string) mounts {
	t.Helper()
	c := pod.Containers[0]
	vols := map[string]k8sVolume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	vms := slices.Clone(c.VolumeMounts)
	sort.Slice(vms, func(i, j int) bool { return len(vms[i].MountPath) < len(vms[j].MountPath) })
	base := t.TempDir()
	var m mounts
	for i, vm := range vms {
		v, ok := vols[vm.Name]
		if !ok {
			t.Fatalf("volumeMount %s names no volume", vm.Name)
		}
		mp := mountPoint{target: vm.MountPath, readOnly: vm.ReadOnly}
		switch {
		case v.ConfigMap != nil:
			cm, ok := r.find("ConfigMap", v.ConfigMap.Name)
			if !ok {
				t.Fatalf("volume %s: no ConfigMap %s in the rendered objects", v.Name, v.ConfigMap.Name)
			}
			dir := filepath.Join(base, fmt.Sprintf("vol%d", i))
			for k, data := range cm.Data {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, k), []byte(data), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			mp.source = dir
			if vm.SubPath != "" {
				mp.source = filepath.Join(dir, vm.SubPath)
			}
		case v.Secret != nil:
			dir, ok := keyDirs[v.Secret.SecretName]
			if !ok {
				t.Fatalf("volume %s: the test has no files for Secret %s", v.Name, v.Secret.SecretName)
			}
			mp.source = dir
		default:
			// emptyDir, a claim or a CSI volume: a directory, inside the
			// one mounted above it, if any (as the kernel shows it).
			if parent, _, ok := m.translate(vm.MountPath); ok {
				mp.source = parent
			} else {
				mp.source = filepath.Join(base, fmt.Sprintf("vol%d", i))
			}
			if err := os.MkdirAll(mp.source, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		m = append(m, mp)
	}
	return m
}

// checkPod checks what every broker pod of dist/kubernetes promises.
func checkPod(t *testing.T, name string, d deploymentSpec) {
	t.Helper()
	pod := d.Template.Spec
	if len(pod.Containers) == 0 || len(pod.Containers[0].VolumeMounts) == 0 || len(pod.Volumes) == 0 {
		t.Fatalf("Deployment %s: the first container needs volumeMounts and the pod volumes (JSON patches append to them)", name)
	}
	c := pod.Containers[0]
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("Deployment %s: liveness probe is not /healthz", name)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("Deployment %s: readiness probe is not /readyz", name)
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" || c.Resources.Limits[r] == "" {
			t.Errorf("Deployment %s: no %s request and limit", name, r)
		}
	}
	sc := c.SecurityContext
	if pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		!sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		!slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("Deployment %s: want runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL", name)
	}
	if pod.SecurityContext.RunAsUser != 65532 {
		t.Errorf("Deployment %s: runAsUser %d, want the image's user 65532", name, pod.SecurityContext.RunAsUser)
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m k8sMount) bool { return m.MountPath == "/tmp" }) {
		t.Errorf("Deployment %s: the root file system is read-only and nothing is mounted at /tmp (plugin sockets)", name)
	}
}

// podConfig returns the container's configuration path from its command.
func podConfig(t *testing.T, c k8sContainer) string {
	t.Helper()
	argv := append(slices.Clone(c.Command), c.Args...)
	if len(argv) == 0 || argv[0] != "/usr/local/bin/kbs-host" {
		t.Fatalf("container %s does not run /usr/local/bin/kbs-host: %v", c.Name, argv)
	}
	i := slices.Index(argv, "--config")
	if i < 0 || i+1 >= len(argv) {
		t.Fatalf("container %s has no --config argument: %v", c.Name, argv)
	}
	return argv[i+1]
}

// startPod checks the pod's configuration against its mounts and starts
// kbs-host on it; it returns the broker and the directory standing for the
// repository volume.
func startPod(t *testing.T, r rendered, name string, d deploymentSpec, keyDirs map[string]string, env []string) (*broker, string) {
	t.Helper()
	pod := d.Template.Spec
	m := podMounts(t, r, pod, keyDirs)
	cfgPath := podConfig(t, pod.Containers[0])
	src, _, _ := m.translate(cfgPath)
	cfg := loadStrict(t, mustRead(t, src))
	repo := fsRepository(t, cfg)
	repoDir, mp, ok := m.translate(repo)
	if !ok || mp.target != repo {
		t.Fatalf("Deployment %s does not mount the repository %s that its configuration names (mounts: %+v)", name, repo, pod.Containers[0].VolumeMounts)
	}
	return startMounted(t, cfgPath, m, env), repoDir
}

func k8sDir(t *testing.T, rel string) string {
	return filepath.Join(repoRoot(t), "dist", "kubernetes", rel)
}

// brokerKeys makes the files of the Secret kbs-keys as the guide does.
func brokerKeys(t *testing.T, ca bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	keygen(t, dir, ca)
	return dir
}

func checkNamespace(t *testing.T, r rendered) {
	t.Helper()
	if _, ok := r.find("Namespace", "coco-tenant"); !ok {
		t.Error("no Namespace coco-tenant")
	}
	for _, o := range r.objs {
		if o.Kind != "Namespace" && o.Metadata.Namespace != "coco-tenant" {
			t.Errorf("%s %s is in namespace %q", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
	}
}

func checkService(t *testing.T, r rendered, name string) {
	t.Helper()
	svc, ok := r.find("Service", name)
	if !ok {
		t.Fatalf("no Service %s", name)
	}
	var spec struct {
		Ports []struct {
			Port int `yaml:"port"`
		} `yaml:"ports"`
	}
	if err := svc.Spec.Decode(&spec); err != nil || len(spec.Ports) == 0 || spec.Ports[0].Port != 8080 {
		t.Errorf("Service %s does not serve port 8080: %v", name, err)
	}
}

func TestDistKubernetesBase(t *testing.T) {
	r := kustomize(t, k8sDir(t, "base"))
	checkNamespace(t, r)
	checkService(t, r, "kbs")
	d, ok := r.deployments(t)["kbs"]
	if !ok {
		t.Fatal("no Deployment kbs")
	}
	checkPod(t, "kbs", d)
	if c := d.Template.Spec.Containers[0]; c.Image != "localhost/kbs:latest" {
		t.Errorf("image %s, want the one make image builds", c.Image)
	}
	// The plugins come from the image: the configuration's plugin directory
	// is where the Containerfile puts them.
	cm, _ := r.find("ConfigMap", d.Template.Spec.Volumes[0].ConfigMap.Name)
	if cfg := loadStrict(t, []byte(cm.Data["kbs.toml"])); cfg.Plugins.Dir != readContainerfile(t).pluginDir {
		t.Errorf("plugins.dir %s is not the image's plugin directory", cfg.Plugins.Dir)
	}
	keys := brokerKeys(t, false)
	br, repo := startPod(t, r, "kbs", d, map[string]string{"kbs-keys": keys}, nil)
	putViaAdmin(t, br.URL, filepath.Join(keys, "admin.key"), "default/key/k8s")
	if !fileExists(filepath.Join(repo, "default", "key", "k8s")) {
		t.Error("a resource put through the admin API is not on the repository volume")
	}
}

// akvGuidePatch is the JSON patch of the "KBS backed by AKV" guide as its
// heredoc writes it (KEYVAULT_NAME=kbs-secrets, the guide's value).
const akvGuidePatch = `- op: add
  path: /spec/template/metadata/labels/azure.workload.identity~1use
  value: "true"
- op: add
  path: /spec/template/spec/serviceAccountName
  value: kbs
- op: add
  path: /spec/template/spec/containers/0/volumeMounts/-
  value:
    name: secrets
    mountPath: /opt/confidential-containers/kbs/repository/default/akv
    readOnly: true
- op: add
  path: /spec/template/spec/volumes/-
  value:
    name: secrets
    csi:
      driver: secrets-store.csi.k8s.io
      readOnly: true
      volumeAttributes:
        secretProviderClass: ${KEYVAULT_NAME}
`

func TestDistKubernetesAKV(t *testing.T) {
	guide := os.Expand(akvGuidePatch, func(string) string { return "kbs-secrets" })
	if got := string(mustRead(t, k8sDir(t, "overlays/akv/patch.yaml"))); got != guide {
		t.Errorf("overlays/akv/patch.yaml is not the guide's patch:\n%s", got)
	}
	var kz struct {
		Namespace string   `yaml:"namespace"`
		Resources []string `yaml:"resources"`
		Patches   []struct {
			Path   string            `yaml:"path"`
			Target map[string]string `yaml:"target"`
		} `yaml:"patches"`
	}
	if err := yaml.Unmarshal(mustRead(t, k8sDir(t, "overlays/akv/kustomization.yaml")), &kz); err != nil {
		t.Fatal(err)
	}
	if kz.Namespace != "coco-tenant" || !slices.Equal(kz.Resources, []string{"../../base"}) || len(kz.Patches) != 1 ||
		kz.Patches[0].Path != "patch.yaml" || fmt.Sprint(kz.Patches[0].Target) != "map[group:apps kind:Deployment name:kbs version:v1]" {
		t.Errorf("overlays/akv/kustomization.yaml is not the guide's: %+v", kz)
	}

	r := kustomize(t, k8sDir(t, "overlays/akv"))
	checkNamespace(t, r)
	d := r.deployments(t)["kbs"]
	checkPod(t, "kbs", d)
	pod := d.Template.Spec
	if d.Template.Metadata.Labels["azure.workload.identity/use"] != "true" || pod.ServiceAccountName != "kbs" {
		t.Errorf("want the workload identity label and service account kbs, got %v, %q", d.Template.Metadata.Labels, pod.ServiceAccountName)
	}
	const akvPath = "/opt/confidential-containers/kbs/repository/default/akv"
	i := slices.IndexFunc(pod.Containers[0].VolumeMounts, func(m k8sMount) bool { return m.MountPath == akvPath })
	if i < 0 || !pod.Containers[0].VolumeMounts[i].ReadOnly {
		t.Fatalf("nothing is mounted read-only at %s", akvPath)
	}
	v := pod.Volumes[slices.IndexFunc(pod.Volumes, func(v k8sVolume) bool { return v.Name == pod.Containers[0].VolumeMounts[i].Name })]
	if v.CSI == nil || v.CSI.Driver != "secrets-store.csi.k8s.io" || !v.CSI.ReadOnly {
		t.Fatalf("the volume at %s is not a read-only secrets-store CSI volume: %+v", akvPath, v)
	}

	// The service account and the SecretProviderClass, as the guide's
	// commands make them from the templates.
	vars := map[string]string{"KBS_CLIENT_ID": "11111111-1111-1111-1111-111111111111", "KBS_TENANT_ID": "22222222-2222-2222-2222-222222222222", "KEYVAULT_NAME": "my-vault"}
	expand := func(f string) k8sObject {
		var o k8sObject
		text := os.Expand(string(mustRead(t, k8sDir(t, "overlays/akv/"+f))), func(k string) string { return vars[k] })
		if err := yaml.Unmarshal([]byte(text), &o); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		return o
	}
	sa := expand("service-account.yaml")
	if sa.Kind != "ServiceAccount" || sa.Metadata.Name != pod.ServiceAccountName || sa.Metadata.Namespace != "coco-tenant" ||
		sa.Metadata.Annotations["azure.workload.identity/client-id"] != vars["KBS_CLIENT_ID"] {
		t.Errorf("service-account.yaml: %+v", sa.Metadata)
	}
	spc := expand("secret-provider-class.yaml")
	var spcSpec struct {
		Provider   string            `yaml:"provider"`
		Parameters map[string]string `yaml:"parameters"`
	}
	if err := spc.Spec.Decode(&spcSpec); err != nil {
		t.Fatal(err)
	}
	if spc.Kind != "SecretProviderClass" || spc.Metadata.Name != v.CSI.VolumeAttributes["secretProviderClass"] || spc.Metadata.Namespace != "coco-tenant" {
		t.Errorf("secret-provider-class.yaml is not the class the CSI volume names (%s): %+v", v.CSI.VolumeAttributes["secretProviderClass"], spc.Metadata)
	}
	p := spcSpec.Parameters
	if spcSpec.Provider != "azure" || p["clientID"] != vars["KBS_CLIENT_ID"] || p["tenantId"] != vars["KBS_TENANT_ID"] || p["keyvaultName"] != "my-vault" {
		t.Errorf("secret-provider-class.yaml parameters: %v", p)
	}
	// The files the driver writes are coco_one and coco_two; the Key Vault
	// names must be valid ones (letters, digits, dashes).
	var objs struct {
		Array []string `yaml:"array"`
	}
	if err := yaml.Unmarshal([]byte(p["objects"]), &objs); err != nil {
		t.Fatalf("objects: %v", err)
	}
	var files []string
	for _, o := range objs.Array {
		var obj struct {
			Name  string `yaml:"objectName"`
			Alias string `yaml:"objectAlias"`
			Type  string `yaml:"objectType"`
		}
		if err := yaml.Unmarshal([]byte(o), &obj); err != nil {
			t.Fatalf("object %q: %v", o, err)
		}
		if !regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`).MatchString(obj.Name) || obj.Type != "secret" {
			t.Errorf("object %+v: not a valid Key Vault secret name", obj)
		}
		files = append(files, cmp.Or(obj.Alias, obj.Name))
	}
	if !slices.Equal(files, []string{"coco_one", "coco_two"}) {
		t.Errorf("the driver writes %v, want coco_one and coco_two", files)
	}

	// The broker starts with the CSI volume inside its repository, laid
	// out as the driver writes it.
	keys := brokerKeys(t, false)
	m := podMounts(t, r, pod, map[string]string{"kbs-keys": keys})
	csiDir, _, _ := m.translate(akvPath)
	data := filepath.Join(csiDir, "..2026_01_01_00_00_00.000000001")
	for _, s := range []string{"coco_one", "coco_two"} {
		if err := os.MkdirAll(data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, s), []byte("value of "+s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", s), filepath.Join(csiDir, s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(data), filepath.Join(csiDir, "..data")); err != nil {
		t.Fatal(err)
	}
	repoDir, _, _ := m.translate("/opt/confidential-containers/kbs/repository")
	if b, err := os.ReadFile(filepath.Join(repoDir, "default", "akv", "coco_one")); err != nil || string(b) != "value of coco_one" {
		t.Fatalf("the CSI volume is not inside the repository: %v", err)
	}
	startMounted(t, podConfig(t, pod.Containers[0]), m, nil)
}

func TestDistKubernetesReplicas(t *testing.T) {
	r := kustomize(t, k8sDir(t, "overlays/replicas"))
	checkNamespace(t, r)
	checkService(t, r, "kbs")
	d := r.deployments(t)["kbs"]
	checkPod(t, "kbs", d)
	if d.Replicas < 2 {
		t.Errorf("replicas: %d", d.Replicas)
	}
	// The repository is one ReadWriteMany claim that every replica mounts.
	pod := d.Template.Spec
	cm, _ := r.find("ConfigMap", pod.Volumes[slices.IndexFunc(pod.Volumes, func(v k8sVolume) bool { return v.ConfigMap != nil })].ConfigMap.Name)
	cfg := loadStrict(t, []byte(cm.Data["kbs.toml"]))
	repo := fsRepository(t, cfg)
	mi := slices.IndexFunc(pod.Containers[0].VolumeMounts, func(m k8sMount) bool { return m.MountPath == repo })
	if mi < 0 {
		t.Fatalf("the repository %s is not mounted", repo)
	}
	vol := pod.Volumes[slices.IndexFunc(pod.Volumes, func(v k8sVolume) bool { return v.Name == pod.Containers[0].VolumeMounts[mi].Name })]
	if vol.PersistentVolumeClaim == nil || vol.EmptyDir != nil {
		t.Fatalf("the repository volume is not a claim alone: %+v", vol)
	}
	pvc, ok := r.find("PersistentVolumeClaim", vol.PersistentVolumeClaim.ClaimName)
	var pvcSpec struct {
		AccessModes []string `yaml:"accessModes"`
	}
	if !ok || pvc.Spec.Decode(&pvcSpec) != nil || !slices.Equal(pvcSpec.AccessModes, []string{"ReadWriteMany"}) {
		t.Errorf("claim %s is not ReadWriteMany", vol.PersistentVolumeClaim.ClaimName)
	}
	// Sessions and state in the Valkey that the overlay deploys.
	if cfg.Session.StorageType != config.SessionRedis || cfg.Storage.StorageType != config.StorageRedis {
		t.Errorf("sessions %q and state %q are not in redis", cfg.Session.StorageType, cfg.Storage.StorageType)
	}
	host, port, err := net.SplitHostPort(strings.TrimSuffix(strings.TrimPrefix(cfg.Storage.RedisURL, "redis://"), "/0"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.deployments(t)[host]; !ok {
		t.Errorf("redis_url names %s, which the overlay does not deploy", host)
	}
	checkValkeyService(t, r, host, port)

	// Two replicas on one Redis and one repository volume.
	redis := redistest.Start(t, redistest.Options{AppendOnly: true})
	keys := brokerKeys(t, false)
	m := podMounts(t, r, pod, map[string]string{"kbs-keys": keys})
	env := []string{"KBS_STORAGE__REDIS_URL=" + redis.URL}
	b1 := startMounted(t, podConfig(t, pod.Containers[0]), m, env)
	b2 := startMounted(t, podConfig(t, pod.Containers[0]), m, env)
	putViaAdmin(t, b1.URL, filepath.Join(keys, "admin.key"), "default/key/one")
	putViaAdmin(t, b2.URL, filepath.Join(keys, "admin.key"), "default/key/two")
	repoDir, _, _ := m.translate(repo)
	for _, f := range []string{"one", "two"} {
		if !fileExists(filepath.Join(repoDir, "default", "key", f)) {
			t.Errorf("resource %s is not on the shared repository volume", f)
		}
	}
}

func checkValkeyService(t *testing.T, r rendered, name, port string) {
	t.Helper()
	svc, ok := r.find("Service", name)
	var spec struct {
		Ports []struct {
			Port int `yaml:"port"`
		} `yaml:"ports"`
	}
	if !ok || svc.Spec.Decode(&spec) != nil || len(spec.Ports) == 0 || strconv.Itoa(spec.Ports[0].Port) != port {
		t.Errorf("no Service %s on port %s", name, port)
	}
}

func TestDistKubernetesPassport(t *testing.T) {
	r := kustomize(t, k8sDir(t, "overlays/passport"))
	checkNamespace(t, r)
	ds := r.deployments(t)
	for _, n := range []string{"kbs", "kbs-resources"} {
		checkService(t, r, n)
		checkPod(t, n, ds[n])
	}
	// The Services select their own broker only.
	for _, n := range []string{"kbs", "kbs-resources"} {
		svc, _ := r.find("Service", n)
		var spec struct {
			Selector map[string]string `yaml:"selector"`
		}
		if err := svc.Spec.Decode(&spec); err != nil {
			t.Fatal(err)
		}
		for other, d := range ds {
			match := true
			for k, v := range spec.Selector {
				match = match && d.Template.Metadata.Labels[k] == v
			}
			if match != (other == n) {
				t.Errorf("Service %s selects the pods of %s: %v", n, other, match)
			}
		}
	}

	// Broker 1's keys: the guide's keygen init --ca; broker 2's Secret
	// holds admin.pub and ca-cert.pem only.
	keys1 := brokerKeys(t, true)
	keys2 := filepath.Join(t.TempDir(), "keys")
	for _, f := range []string{"admin.pub", "ca-cert.pem"} {
		if err := os.MkdirAll(keys2, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keys2, f), mustRead(t, filepath.Join(keys1, f)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	secrets := map[string]string{"kbs-keys": keys1, "kbs-resources-keys": keys2}
	startPod(t, r, "kbs", ds["kbs"], secrets, nil)
	b2, repo := startPod(t, r, "kbs-resources", ds["kbs-resources"], secrets, nil)
	putViaAdmin(t, b2.URL, filepath.Join(keys1, "admin.key"), "default/key/passport")
	if !fileExists(filepath.Join(repo, "default", "key", "passport")) {
		t.Error("a resource put through the resource broker is not on its repository volume")
	}
}

func TestDistKubernetesIngress(t *testing.T) {
	r := kustomize(t, k8sDir(t, "overlays/ingress"))
	checkNamespace(t, r)
	ing, ok := r.find("Ingress", "kbs")
	if !ok {
		t.Fatal("no Ingress kbs")
	}
	var spec struct {
		TLS []struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"tls"`
		Rules []struct {
			HTTP struct {
				Paths []struct {
					Path    string `yaml:"path"`
					Backend struct {
						Service struct {
							Name string `yaml:"name"`
							Port struct {
								Name string `yaml:"name"`
							} `yaml:"port"`
						} `yaml:"service"`
					} `yaml:"backend"`
				} `yaml:"paths"`
			} `yaml:"http"`
		} `yaml:"rules"`
	}
	if err := ing.Spec.Decode(&spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.TLS) == 0 || len(spec.Rules) == 0 || len(spec.Rules[0].HTTP.Paths) == 0 {
		t.Fatalf("Ingress kbs: want TLS and a rule: %+v", spec)
	}
	p := spec.Rules[0].HTTP.Paths[0]
	if p.Path != "/kbs/" || p.Backend.Service.Name != "kbs" || p.Backend.Service.Port.Name != "http" {
		t.Errorf("Ingress kbs routes %s to %s:%s, want /kbs/ to kbs:http", p.Path, p.Backend.Service.Name, p.Backend.Service.Port.Name)
	}
	checkService(t, r, "kbs")
	checkPod(t, "kbs", r.deployments(t)["kbs"])
}

// TestDistConfigsShareTheImage checks that every configuration in dist/
// uses the image's plugin directory or the installed one, and names only
// plugins that the image built with the compose default would contain.
func TestDistConfigsShareTheImage(t *testing.T) {
	root := repoRoot(t)
	pluginDir := readContainerfile(t).pluginDir
	var files []string
	for _, d := range []string{"kubernetes", "compose"} {
		err := filepath.WalkDir(filepath.Join(root, "dist", d), func(p string, e os.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, ".toml") {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		t.Run(rel, func(t *testing.T) {
			cfg := loadStrict(t, mustRead(t, f))
			if cfg.Plugins.Dir != pluginDir {
				t.Errorf("plugins.dir %s, the image has them in %s", cfg.Plugins.Dir, pluginDir)
			}
			for _, name := range configPlugins(cfg) {
				if _, err := os.Stat(filepath.Join(root, "plugins", name)); err != nil {
					t.Errorf("names plugin %s, which is not in the tree", name)
				}
			}
		})
	}
	if len(files) < 7 {
		t.Errorf("found only %d configurations in dist/", len(files))
	}
}

func configPlugins(cfg *config.Config) []string {
	var ps []string
	for _, v := range cfg.Plugins.Verifier {
		ps = append(ps, "verifier/"+v.Name)
	}
	for _, r := range cfg.Plugins.Resource {
		ps = append(ps, "resource/"+r.Name)
	}
	if cfg.Plugins.Token != nil {
		ps = append(ps, "token/"+cfg.Plugins.Token.Name)
	}
	return ps
}
