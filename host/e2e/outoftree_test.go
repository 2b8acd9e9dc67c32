package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbsclient"
)

// TestOutOfTreePlugin is a vendor's path end to end: a verifier plugin
// scaffolded outside the repository (a module that requires the SDK and
// nothing else), built on its own, installed into a running deployment's
// plugin directory with a manifest entry, picked up by the host on restart,
// and used to verify evidence.
func TestOutOfTreePlugin(t *testing.T) {
	root := repoRoot(t)
	b := bins(t)
	ctx := context.Background()

	// 1. The vendor's module, from the scaffold, outside the tree.
	src := filepath.Join(t.TempDir(), "kbs-oot")
	ootRun(t, root, nil, filepath.Join(root, "scripts", "new-plugin.sh"), "verifier", "oot", src)
	goMod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(goMod), "\n") {
		if strings.Contains(line, "github.com/gokbs/kbs/") && !strings.Contains(line, "github.com/gokbs/kbs/sdk") {
			t.Fatalf("the plugin's go.mod names more of this repository than the SDK: %q", line)
		}
	}
	out := filepath.Join(t.TempDir(), "kbs-plugin-verifier-oot")
	ootRun(t, src, []string{"GOWORK=off", "GOFLAGS=-mod=mod"}, "go", "build", "-o", out, "./cmd/kbs-plugin-verifier-oot")

	// 2. A running deployment without it.
	plugins := filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(b.pluginDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "kbs-plugin-") {
			ootCopy(t, filepath.Join(b.pluginDir, e.Name()), filepath.Join(plugins, e.Name()))
		}
	}
	ootRun(t, root, nil, b.host, "plugins", "manifest", plugins)
	addr := freeAddr(t)
	config := filepath.Join(t.TempDir(), "kbs.toml")
	writeFile(t, config, []byte(ootConfig(t, addr, plugins, false)))
	br := startConfig(t, config, "http://"+addr, nil)
	_, err = kbsclient.New(br.URL).Auth(ctx, "sampledevice")
	wantKBSError(t, err, 401, "AttestationError", "sampledevice")

	// 3. The operator installs it: the binary, its manifest line
	// (sha256sum kbs-plugin-verifier-oot >> manifest.sha256), and its
	// section in the configuration; then restarts the host.
	installed := filepath.Join(plugins, "kbs-plugin-verifier-oot")
	ootCopy(t, out, installed)
	ootAppendManifest(t, plugins, installed)
	list := ootRun(t, root, nil, b.host, "plugins", "list", "--plugin-dir", plugins, "--start")
	if !strings.Contains(list, "oot") || !strings.Contains(list, "[sampledevice]") {
		t.Fatalf("kbs-host plugins list does not show the new plugin:\n%s", list)
	}
	writeFile(t, config, []byte(ootConfig(t, addr, plugins, true)))
	br.stop(t)
	br = startConfig(t, config, "http://"+addr, nil)

	// 4. A guest of that TEE attests, and the token carries the plugin's
	// claims.
	k, err := guest.NewKey(guest.KindECP256)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := k.PublicJWKJSON()
	if err != nil {
		t.Fatal(err)
	}
	attest := func(svn int) (string, []byte, error) {
		c := kbsclient.New(br.URL)
		ch, err := c.Auth(ctx, "sampledevice")
		if err != nil {
			t.Fatal(err)
		}
		var reportData []byte
		tok, err := c.Attest(ctx, ch, jwk, func(d []byte) (json.RawMessage, error) {
			reportData = make([]byte, 64)
			copy(reportData, d)
			return json.Marshal(map[string]any{"svn": svn, "report_data": base64.StdEncoding.EncodeToString(reportData)})
		})
		return tok, reportData, err
	}
	tok, reportData, err := attest(3)
	if err != nil {
		t.Fatalf("attest with the out-of-tree verifier: %v\nlogs:\n%s", err, br.logs.String())
	}
	ae := ootAnnotatedEvidence(t, tok, "gpu0")
	dev, _ := ae["sampledevice"].(map[string]any)
	if dev["svn"] != float64(3) {
		t.Errorf("token claim sampledevice.svn = %v, want 3 (annotated evidence %v)", dev["svn"], ae)
	}
	if ae["report_data"] != hex.EncodeToString(reportData) {
		t.Errorf("token report_data = %v, want %x", ae["report_data"], reportData)
	}
	// Its settings reached it: min_svn = 2 refuses svn 1.
	_, _, err = attest(1)
	wantKBSError(t, err, 401, "AttestationError", "below the minimum")
}

// ootConfig is a complete kbs-host configuration; withOOT adds the
// out-of-tree verifier.
func ootConfig(t *testing.T, addr, plugins string, withOOT bool) string {
	base := filepath.Dir(plugins)
	cfg := fmt.Sprintf(`[http_server]
sockets = [%q]
insecure_http = true

[plugins]
dir = %q

[[plugins.verifier]]
name = "sample"
`, addr, plugins)
	if withOOT {
		cfg += `
[[plugins.verifier]]
name = "oot"
[plugins.verifier.config]
min_svn = 2
`
	}
	return cfg + fmt.Sprintf(`
[[plugins.resource]]
name = "fs"
routes = ["*"]
[plugins.resource.config]
dir = %q

[plugins.token]
name = "ear"

[storage]
dir = %q
`, filepath.Join(base, "repository"), filepath.Join(base, "state"))
}

// ootRun runs a command in dir and returns its stdout, failing the test with
// its output when it fails.
func ootRun(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func ootCopy(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// ootAppendManifest adds the binary's line to the manifest, as
// `sha256sum kbs-plugin-... >> manifest.sha256` does.
func ootAppendManifest(t *testing.T, dir, binary string) {
	t.Helper()
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	f, err := os.OpenFile(filepath.Join(dir, "manifest.sha256"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%x  %s\n", sum, filepath.Base(binary)); err != nil {
		t.Fatal(err)
	}
}

// ootAnnotatedEvidence returns a submodule's annotated evidence from a token
// (its payload, without checking the signature: the broker just issued it).
func ootAnnotatedEvidence(t *testing.T, tok, submod string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Submods map[string]map[string]any `json:"submods"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	ae, _ := claims.Submods[submod]["ear.veraison.annotated-evidence"].(map[string]any)
	if ae == nil {
		t.Fatalf("token has no annotated evidence for %s: %s", submod, payload)
	}
	return ae
}
