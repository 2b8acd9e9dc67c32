package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"go/build"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gokbs/kbs/host/internal/guest"
)

// The resource backends through the real daemon: kbs-host routes
// default/<backend> to the backend's plugin and everything else to fs,
// and kbs-client puts, gets (after the guest handshake) and deletes.

var (
	toolMu    sync.Mutex
	toolBuilt = map[string]string{}
)

// buildTool builds a main package of the repository (a test server) once
// per test binary and returns the binary's path.
func buildTool(t *testing.T, pkg string) string {
	t.Helper()
	toolMu.Lock()
	defer toolMu.Unlock()
	if p, ok := toolBuilt[pkg]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "kbs-e2e-tool-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = repoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	toolBuilt[pkg] = out
	return out
}

// fakeServer is a test server process (fake Key Vault, fake Vault) that
// prints its URL on its first line and stops when its stdin closes.
type fakeServer struct {
	URL   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func startFakeServer(t *testing.T, bin string, args ...string) *fakeServer {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{cmd: cmd, stdin: stdin}
	t.Cleanup(f.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("%s printed no URL: %v", bin, err)
	}
	f.URL = strings.TrimSpace(line)
	return f
}

func (f *fakeServer) stop() {
	if f.cmd.ProcessState == nil {
		f.stdin.Close()
		done := make(chan struct{})
		go func() { f.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			f.cmd.Process.Kill()
			<-done
		}
	}
}

// backendBroker writes a configuration with the fs backend as default and
// the given [[plugins.resource]] sections, and starts kbs-host on it.
// It returns the broker and the fs repository directory.
func backendBroker(t *testing.T, sections string) (*broker, string) {
	t.Helper()
	dir := t.TempDir()
	addr := freeAddr(t)
	repo := filepath.Join(dir, "repository")
	policyFile := filepath.Join(dir, "resource-policy.rego")
	writeFile(t, policyFile, []byte("package policy\n\ndefault allow := true\n"))
	cfg := fmt.Sprintf(`[http_server]
sockets = [%q]
insecure_http = true

[plugins]
dir = %q

[[plugins.verifier]]
name = "sample"

[[plugins.resource]]
name = "fs"
routes = ["*"]
[plugins.resource.config]
dir = %q
%s
[plugins.token]
name = "ear"

[admin]
authorization_mode = "InsecureAllowAll"

[policy]
resource_policy_file = %q

[storage]
dir = %q

# These tests are of the backends themselves (a backend that is down is a
# 503): every request must reach the backend. TestResourceCache tests the cache.
[resource_cache]
ttl = "0s"
`, addr, bins(t).pluginDir, repo, sections, policyFile, filepath.Join(dir, "state"))
	path := filepath.Join(dir, "kbs.toml")
	writeFile(t, path, []byte(cfg))
	return startConfig(t, path, "http://"+addr, nil), repo
}

// clientGet runs `kbs-client get-resource` (a fresh guest: auth, attest
// with sample evidence, fetch, decrypt) and returns what it printed.
func clientGet(t *testing.T, br *broker, path string) (string, string, error) {
	t.Helper()
	return runClient(t, "--url", br.URL, "--timeout", "30s", "get-resource", "--path", path)
}

func clientPut(t *testing.T, br *broker, path string, data []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "resource")
	writeFile(t, f, data)
	if _, stderr, err := runClient(t, "--url", br.URL, "set-resource", "--path", path, "--resource-file", f); err != nil {
		t.Fatalf("kbs-client set-resource %s: %v: %s", path, err, stderr)
	}
}

// guestGet fetches path as an attested guest and returns the error, for
// checking status codes and the KBS error JSON.
func guestGet(t *testing.T, br *broker, path string) error {
	t.Helper()
	k, err := guest.NewKey(guest.KindECP256)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := handshake(t, br.URL, k)
	_, err = c.GetResource(context.Background(), path, "")
	return err
}

// backendUnderTest describes one backend for checkBackend.
type backendUnderTest struct {
	route string // repo/type routed to the backend
	// down takes the backend down; detail is a word of the 503's detail.
	down   func()
	detail string
	// stored checks, after the puts, where a value went (optional).
	stored func(t *testing.T, path string, value []byte)
	// secrets must never appear in the broker's logs.
	secrets []string
}

// checkBackend runs the admin and guest flows against a routed backend,
// then takes it down.
func checkBackend(t *testing.T, br *broker, fsRepo string, b backendUnderTest) {
	values := map[string][]byte{
		b.route + "/text":   []byte("a secret from " + b.route),
		b.route + "/binary": {0, 1, 2, 0xff, 0xfe, '\n', 0},
	}
	t.Run("admin put, guest get", func(t *testing.T) {
		for p, v := range values {
			clientPut(t, br, p, v)
			out, stderr, err := clientGet(t, br, p)
			if err != nil || out != string(v) {
				t.Fatalf("get-resource %s = %q, %v (%s); want %q", p, out, err, stderr, v)
			}
			if b.stored != nil {
				b.stored(t, p, v)
			}
			// The backend, not the default fs repository, holds it.
			if _, err := os.Lstat(filepath.Join(fsRepo, filepath.FromSlash(p))); err == nil {
				t.Errorf("%s was written to the fs repository", p)
			}
		}
		// Other paths still go to the default backend.
		clientPut(t, br, "default/key/on-disk", []byte("fs"))
		if b, err := os.ReadFile(filepath.Join(fsRepo, "default", "key", "on-disk")); err != nil || string(b) != "fs" {
			t.Fatalf("default/key/on-disk in the fs repository = %q, %v", b, err)
		}
	})
	t.Run("overwrite", func(t *testing.T) {
		p := b.route + "/text"
		clientPut(t, br, p, []byte("second value"))
		if out, _, err := clientGet(t, br, p); err != nil || out != "second value" {
			t.Fatalf("get-resource after overwrite = %q, %v", out, err)
		}
	})
	t.Run("list", func(t *testing.T) {
		repo := strings.SplitN(b.route, "/", 2)[0]
		out, stderr, err := runClient(t, "--url", br.URL, "list-resources", "--repo", repo)
		if err != nil {
			t.Fatalf("list-resources: %v: %s", err, stderr)
		}
		for p := range values {
			if !strings.Contains(out, p+"\n") {
				t.Errorf("list-resources --repo %s = %q, want it to hold %s", repo, out, p)
			}
		}
		if repo == "default" && !strings.Contains(out, "default/key/on-disk\n") {
			t.Errorf("list-resources = %q, want the fs backend's default/key/on-disk too", out)
		}
	})
	t.Run("missing is 404", func(t *testing.T) {
		wantKBSError(t, guestGet(t, br, b.route+"/missing"), http.StatusNotFound, "ResourceNotFound", "not found")
		_, stderr, err := clientGet(t, br, b.route+"/missing")
		if err == nil || !strings.Contains(stderr, "HTTP 404") {
			t.Fatalf("kbs-client get-resource missing = %v, %q; want a failure with HTTP 404", err, stderr)
		}
	})
	t.Run("delete", func(t *testing.T) {
		p := b.route + "/binary"
		if _, stderr, err := runClient(t, "--url", br.URL, "delete-resource", "--path", p); err != nil {
			t.Fatalf("delete-resource: %v: %s", err, stderr)
		}
		wantKBSError(t, guestGet(t, br, p), http.StatusNotFound, "ResourceNotFound", "not found")
		_, stderr, err := runClient(t, "--url", br.URL, "delete-resource", "--path", p)
		if err == nil || !strings.Contains(stderr, "HTTP 404") {
			t.Fatalf("second delete-resource = %v, %q; want HTTP 404", err, stderr)
		}
	})
	t.Run("backend down is 503 and the host stays up", func(t *testing.T) {
		b.down()
		start := time.Now()
		err := guestGet(t, br, b.route+"/text")
		wantKBSError(t, err, http.StatusServiceUnavailable, "PluginUnavailable", b.detail)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("the 503 took %s", d)
		}
		t.Logf("while down: %v", err)
		f := filepath.Join(t.TempDir(), "v")
		writeFile(t, f, []byte("x"))
		_, stderr, err := runClient(t, "--url", br.URL, "set-resource", "--path", b.route+"/new", "--resource-file", f)
		if err == nil || !strings.Contains(stderr, "HTTP 503") {
			t.Errorf("set-resource while down = %v, %q; want HTTP 503", err, stderr)
		}
		resp, err := http.Get(br.URL + "/healthz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("healthz while the backend is down = %v, %v", resp, err)
		}
		resp.Body.Close()
		if out, _, err := clientGet(t, br, "default/key/on-disk"); err != nil || out != "fs" {
			t.Fatalf("the fs backend while the other is down = %q, %v", out, err)
		}
	})
	t.Run("credentials and values not logged", func(t *testing.T) {
		logs := br.logs.String()
		// The plugins' own log lines reach the broker's log.
		if !strings.Contains(logs, "backend configured") {
			t.Fatalf("the plugin's log is not in the broker's log:\n%s", logs)
		}
		for _, s := range b.secrets {
			if strings.Contains(logs, s) {
				t.Errorf("the broker's log contains %q", s)
			}
		}
		for _, v := range values {
			if strings.Contains(logs, string(v)) {
				t.Errorf("the broker's log contains the value %q", v)
			}
		}
	})
}

func TestBackendAKV(t *testing.T) {
	dir := t.TempDir()
	const clientSecret = "e2e-akv-client-secret~never-logged"
	secretFile, caFile := filepath.Join(dir, "client-secret"), filepath.Join(dir, "ca.pem")
	writeFile(t, secretFile, []byte(clientSecret+"\n"))
	kv := startFakeServer(t, buildTool(t, "./plugins/resource/akv/internal/fakekv/cmd/fake-keyvault"),
		"-client-secret-file", secretFile, "-ca-out", caFile)
	br, repo := backendBroker(t, fmt.Sprintf(`
[[plugins.resource]]
name = "akv"
routes = ["default/akv"]
[plugins.resource.config]
vault_url = %[1]q
authority_host = %[1]q
disable_instance_discovery = true
disable_challenge_resource_verification = true
ca_file = %[2]q
credential = "client_secret"
tenant_id = "00000000-0000-0000-0000-00000000cafe"
client_id = "11111111-1111-1111-1111-111111111111"
client_secret_file = %[3]q
cache_ttl = "0s"
timeout = "3s"
writable = true
`, kv.URL, caFile, secretFile))
	checkBackend(t, br, repo, backendUnderTest{
		route: "default/akv", down: kv.stop, detail: "unreachable", secrets: []string{clientSecret},
	})
}

func TestBackendVault(t *testing.T) {
	dir := t.TempDir()
	const token = "hvs.e2e-vault-token-never-logged"
	tokenFile, caFile := filepath.Join(dir, "token"), filepath.Join(dir, "ca.pem")
	writeFile(t, tokenFile, []byte(token+"\n"))
	fake := buildTool(t, "./plugins/resource/vault/internal/fakevault/cmd/fake-vault")
	for _, c := range []struct {
		name, route, mount string
		version            int
	}{
		{"kv v1", "default/vault", "secret", 1},
		{"kv v2", "default/vault2", "kv2", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := startFakeServer(t, fake, "-token-file", tokenFile, "-ca-out", caFile)
			br, repo := backendBroker(t, fmt.Sprintf(`
[[plugins.resource]]
name = "vault"
routes = [%q]
[plugins.resource.config]
vault_url = %q
mount_path = %q
kv_version = %d
token_file = %q
ca_certs = [%q]
timeout = "3s"
`, c.route, v.URL, c.mount, c.version, tokenFile, caFile))
			checkBackend(t, br, repo, backendUnderTest{
				route: c.route, down: v.stop, detail: "unreachable", secrets: []string{token},
			})
		})
	}
}

func TestBackendKMS(t *testing.T) {
	bin := ""
	if p, err := exec.LookPath("local-kms"); err == nil {
		bin = p
	} else if p := filepath.Join(build.Default.GOPATH, "bin", "local-kms"); fileExists(p) {
		bin = p
	}
	if bin == "" {
		t.Skip("local-kms is not installed; install it with: go install github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6")
	}
	dir := t.TempDir()
	const awsSecret = "e2e-aws-secret-access-key/never-logged"
	secretFile, seedFile := filepath.Join(dir, "aws-secret"), filepath.Join(dir, "seed.yaml")
	writeFile(t, secretFile, []byte(awsSecret))
	writeFile(t, seedFile, []byte(`Keys:
  Symmetric:
    Aes:
      - Metadata:
          KeyId: bc436485-5092-42b8-92a3-0aa8b93536dc
        BackingKeys:
          - 5cdaead27fe7da2de47945d73cd6d79e36494e73802f3cd3869f1d2cb0b5d7a9
Aliases:
  - AliasName: alias/kbs
    TargetKeyId: bc436485-5092-42b8-92a3-0aa8b93536dc
`))
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	// local-kms binds 0.0.0.0:PORT; the test talks to 127.0.0.1 only.
	kms := exec.Command(bin)
	kms.Env = []string{"PORT=" + port, "KMS_DATA_PATH=" + filepath.Join(dir, "kms-data"), "KMS_SEED_PATH=" + seedFile,
		"KMS_REGION=eu-west-2", "KMS_ACCOUNT_ID=111122223333"}
	if err := kms.Start(); err != nil {
		t.Fatal(err)
	}
	stopKMS := func() {
		if kms.ProcessState == nil {
			kms.Process.Kill()
			kms.Wait()
		}
	}
	t.Cleanup(stopKMS)
	endpoint := "http://127.0.0.1:" + port
	for deadline := time.Now().Add(15 * time.Second); ; {
		if resp, err := http.Get(endpoint); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("local-kms did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	sealed := filepath.Join(dir, "sealed")
	br, repo := backendBroker(t, fmt.Sprintf(`
[[plugins.resource]]
name = "kms"
routes = ["default/sealed"]
[plugins.resource.config]
dir = %q
timeout = "3s"
[plugins.resource.config.aws]
key_id = "alias/kbs"
region = "eu-west-2"
endpoint = %q
access_key_id = "AKIDEXAMPLE"
secret_access_key_file = %q
`, sealed, endpoint, secretFile))
	checkBackend(t, br, repo, backendUnderTest{
		route: "default/sealed", down: stopKMS, detail: "unreachable", secrets: []string{awsSecret},
		stored: func(t *testing.T, p string, v []byte) {
			raw, err := os.ReadFile(filepath.Join(sealed, filepath.FromSlash(p)))
			if err != nil {
				t.Fatalf("no envelope for %s: %v", p, err)
			}
			if bytes.Contains(raw, v) || !bytes.Contains(raw, []byte(`"provider":"aws-kms"`)) {
				t.Fatalf("the envelope of %s holds the plaintext or is not an envelope:\n%s", p, raw)
			}
		},
	})
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestBackendCSIMount is the documented "KBS backed by AKV" flow without
// Kubernetes: the Secrets Store CSI driver mounts Key Vault secrets into
// the repository as files (through the kubelet's atomic writer: a
// timestamped directory, a "..data" symlink to it, and one symlink per
// secret through "..data"), the fs backend serves them, and an update
// swaps "..data" atomically.
func TestBackendCSIMount(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repository")
	akv := filepath.Join(repo, "default", "akv")
	// writeVersion writes a new timestamped directory and points ..data at
	// it with a rename, as the atomic writer does; it returns the old one.
	writeVersion := func(ts string, secrets map[string]string) {
		t.Helper()
		tsDir := filepath.Join(akv, ts)
		for name, v := range secrets {
			writeFile(t, filepath.Join(tsDir, name), []byte(v))
		}
		tmp := filepath.Join(akv, "..data_tmp")
		if err := os.Symlink(ts, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(akv, "..data")); err != nil {
			t.Fatal(err)
		}
		for name := range secrets {
			link := filepath.Join(akv, name)
			if _, err := os.Lstat(link); err != nil {
				if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	writeVersion("..2026_11_28_10_00_00.123456789", map[string]string{"coco_one": "a secret", "coco_two": "another secret"})

	addr := freeAddr(t)
	policyFile := filepath.Join(dir, "resource-policy.rego")
	writeFile(t, policyFile, []byte("package policy\n\ndefault allow := true\n"))
	cfgPath := filepath.Join(dir, "kbs.toml")
	writeFile(t, cfgPath, []byte(fmt.Sprintf(`[http_server]
sockets = [%q]
insecure_http = true

[plugins]
dir = %q

[[plugins.verifier]]
name = "sample"

[[plugins.resource]]
name = "fs"
[plugins.resource.config]
dir = %q
read_only = true

[plugins.token]
name = "ear"

[policy]
resource_policy_file = %q

[storage]
dir = %q

# A rotation must be seen by the next fetch, not after resource_cache.ttl.
[resource_cache]
ttl = "0s"
`, addr, bins(t).pluginDir, repo, policyFile, filepath.Join(dir, "state"))))
	br := startConfig(t, cfgPath, "http://"+addr, nil)

	for path, want := range map[string]string{"default/akv/coco_one": "a secret", "default/akv/coco_two": "another secret"} {
		out, stderr, err := clientGet(t, br, path)
		if err != nil || out != want {
			t.Fatalf("kbs-client get-resource --path %s = %q, %v (%s); want %q", path, out, err, stderr, want)
		}
	}
	// The driver's bookkeeping entries are not resources.
	wantKBSError(t, guestGet(t, br, "default/akv/..data"), http.StatusBadRequest, "InvalidRequestPath", "")

	// Key Vault rotates coco_one; the driver writes a new version.
	old := "..2026_11_28_10_00_00.123456789"
	writeVersion("..2026_11_28_10_02_00.987654321", map[string]string{"coco_one": "a rotated secret", "coco_two": "another secret"})
	if err := os.RemoveAll(filepath.Join(akv, old)); err != nil {
		t.Fatal(err)
	}
	if out, stderr, err := clientGet(t, br, "default/akv/coco_one"); err != nil || out != "a rotated secret" {
		t.Fatalf("after rotation get-resource = %q, %v (%s); want %q", out, err, stderr, "a rotated secret")
	}
}
