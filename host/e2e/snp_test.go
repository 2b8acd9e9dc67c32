package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbsclient"
)

// snpAttester is snp-test-attester running beside the test: it signs SNP
// reports with a test chain over the digests the test gives it.
type snpAttester struct {
	mu    sync.Mutex
	in    io.WriteCloser
	out   *bufio.Reader
	roots string
}

func startSNPAttester(t *testing.T, root, dir string) *snpAttester {
	t.Helper()
	bin := filepath.Join(dir, "snp-test-attester")
	build := exec.Command("go", "build", "-o", bin, "./plugins/lib/snp/snptest/cmd/snp-test-attester")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building snp-test-attester: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	in, _ := cmd.StdinPipe()
	outPipe, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	a := &snpAttester{in: in, out: bufio.NewReaderSize(outPipe, 1<<20)}
	line, err := a.out.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(line), &a.roots); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *snpAttester) evidence(digest []byte) (json.RawMessage, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := fmt.Fprintf(a.in, "%s\n", hex.EncodeToString(digest)); err != nil {
		return nil, err
	}
	line, err := a.out.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	return json.RawMessage(line), nil
}

// TestSNPHandshake: a guest handshake with SNP evidence signed by a test
// chain over the real challenge, through the real daemon and the real snp
// plugin (built with the kbs_snp_test_roots tag so that it trusts the
// test chain instead of AMD's).
func TestSNPHandshake(t *testing.T) {
	b := bins(t)
	root := repoRoot(t)
	work := t.TempDir()
	a := startSNPAttester(t, root, work)

	pluginDir := filepath.Join(work, "plugins")
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kbs-plugin-resource-fs", "kbs-plugin-token-ear"} {
		data, err := os.ReadFile(filepath.Join(b.pluginDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pluginDir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-tags", "kbs_snp_test_roots", "-o", filepath.Join(pluginDir, "kbs-plugin-verifier-snp"), "./plugins/verifier/snp/cmd/kbs-plugin-verifier-snp")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the snp plugin: %v\n%s", err, out)
	}
	if out, err := exec.Command(b.host, "plugins", "manifest", pluginDir).CombinedOutput(); err != nil {
		t.Fatalf("manifest: %v\n%s", err, out)
	}
	repo := filepath.Join(work, "repository")
	writeFile(t, filepath.Join(repo, "default", "key", "snp"), []byte("snp secret"))
	policy := filepath.Join(work, "allow.rego")
	writeFile(t, policy, []byte("package policy\ndefault allow := true\n"))
	addr := freeAddr(t)
	rootsTOML, _ := json.Marshal(a.roots)
	cfg := filepath.Join(work, "kbs.toml")
	writeFile(t, cfg, []byte(fmt.Sprintf(`
[http_server]
sockets = [%q]
insecure_http = true
[plugins]
dir = %q
[[plugins.verifier]]
name = "snp"
[plugins.verifier.config]
kds_disabled = true
test_roots_pem = { Milan = %s }
[[plugins.resource]]
name = "fs"
[plugins.resource.config]
dir = %q
[plugins.token]
name = "ear"
[policy]
resource_policy_file = %q
[storage]
dir = %q
`, addr, pluginDir, rootsTOML, repo, policy, filepath.Join(work, "state"))))
	br := startConfig(t, cfg, "http://"+addr, nil)

	ctx := context.Background()
	k, _ := guest.NewKey(guest.KindECP256)
	jwk, _ := k.PublicJWKJSON()
	c := kbsclient.New(br.URL)
	ch, err := c.Auth(ctx, "snp")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Attest(ctx, ch, jwk, a.evidence)
	if err != nil {
		t.Fatalf("attest with test-signed SNP evidence: %v\nlogs:\n%s", err, br.logs.String())
	}
	claims := tokenClaims(t, tok)
	snp := claims["submods"].(map[string]any)["cpu0"].(map[string]any)["ear.veraison.annotated-evidence"].(map[string]any)["snp"].(map[string]any)
	if snp["reported_tcb_snp"] == nil || snp["measurement"] == nil {
		t.Fatalf("token lacks SNP claims: %v", snp)
	}
	body, err := c.GetResource(ctx, "default/key/snp", "")
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := k.DecryptJSON(body); err != nil || string(plain) != "snp secret" {
		t.Fatalf("secret %q %v", plain, err)
	}

	// Evidence signed over another digest is refused.
	c2 := kbsclient.New(br.URL)
	ch2, err := c2.Auth(ctx, "snp")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c2.Attest(ctx, ch2, jwk, func(d []byte) (json.RawMessage, error) {
		d = append([]byte(nil), d...)
		d[0] ^= 1
		return a.evidence(d)
	})
	if kbsclient.StatusOf(err) != 401 || !strings.Contains(strings.ToLower(err.Error()), "report_data") {
		t.Fatalf("evidence over the wrong digest: %v, want 401 about the report data", err)
	}
}

// tokenClaims decodes a JWT's claims without verifying it (the broker did).
func tokenClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
