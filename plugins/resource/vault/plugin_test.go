package vault_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gokbs/kbs/plugins/resource/vault"
	"github.com/gokbs/kbs/plugins/resource/vault/internal/fakevault"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/serve"
)

// logFile receives everything the plugin logs (sdk.Logger writes to the
// stderr it saw first), so that tests can check what reached the log.
var logFile string

func TestMain(m *testing.M) {
	f, err := os.CreateTemp("", "vault-plugin-log-")
	if err != nil {
		panic(err)
	}
	logFile = f.Name()
	stderr := os.Stderr
	os.Stderr = f
	sdk.Logger()
	os.Stderr = stderr
	code := m.Run()
	f.Close()
	os.Remove(logFile)
	os.Exit(code)
}

const (
	rootToken = "hvs.ROOT-token-never-logged"
	roleID    = "5f2b7a6c-role"
	secretID  = "9d1e-secret-id-never-logged"
)

func options() serve.Options {
	return serve.Options{Name: "vault", Version: "0.1.0", Capabilities: []string{"write"}, Resource: vault.New()}
}

type env struct {
	vault                         *fakevault.Server
	caFile, tokenFile, secretFile string
}

func newEnv(t *testing.T, opts fakevault.Options) *env {
	t.Helper()
	opts.Token, opts.RoleID, opts.SecretID = rootToken, roleID, secretID
	e := &env{vault: fakevault.Start(opts)}
	t.Cleanup(e.vault.Close)
	dir := t.TempDir()
	e.caFile = filepath.Join(dir, "ca.pem")
	e.tokenFile = filepath.Join(dir, "token")
	e.secretFile = filepath.Join(dir, "secret-id")
	files := map[string][]byte{e.tokenFile: []byte(rootToken + "\n"), e.secretFile: []byte(secretID + "\n")}
	if opts.TLS {
		files[e.caFile] = e.vault.CAPEM()
	}
	for name, data := range files {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// config returns settings with token_file auth; extra keys are merged in
// (nil values delete keys).
func (e *env) config(extra map[string]any) []byte {
	m := map[string]any{"vault_url": e.vault.URL, "token_file": e.tokenFile}
	if strings.HasPrefix(e.vault.URL, "https:") {
		m["ca_certs"] = []string{e.caFile}
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, _ := json.Marshal(m)
	return b
}

func (e *env) approle() map[string]any {
	return map[string]any{"token_file": nil, "approle": map[string]any{"role_id": roleID, "secret_id_file": e.secretFile}}
}

func (e *env) start(t *testing.T, extra map[string]any) resource.Backend {
	t.Helper()
	return plugintest.Start(t, options(), e.config(extra)).Resource()
}

var one = resource.Path{Repo: "default", Type: "key", Tag: "one"}

func TestConformance(t *testing.T) {
	cases := []struct {
		name  string
		tls   bool
		extra map[string]any
	}{
		{"kv v1 over tls with a token file", true, nil},
		{"kv v2 over tls", true, map[string]any{"mount_path": "kv2", "kv_version": 2}},
		{"kv v1 over plain http", false, nil},
		{"kv v2 with approle", true, map[string]any{"mount_path": "kv2", "kv_version": 2, "token_file": nil,
			"approle": map[string]any{"role_id": roleID, "secret_id_file": "SECRET"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, fakevault.Options{TLS: c.tls})
			extra := maps.Clone(c.extra)
			if ar, ok := extra["approle"].(map[string]any); ok {
				ar["secret_id_file"] = e.secretFile
			}
			plugintest.ResourceConformance(t, options(), e.config(extra))
		})
	}
}

// TestTrusteeLayout checks the paths and fields trustee's Vault backend
// uses, in both directions: a secret written as `vault kv put secret/default/key/one data=...`
// is served, and a Put lands there.
func TestTrusteeLayout(t *testing.T) {
	cases := []struct {
		name, mount string
		version     int
	}{
		{"kv v1", "secret", 1},
		{"kv v2", "kv2", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, fakevault.Options{TLS: true})
			b := e.start(t, map[string]any{"mount_path": c.mount, "kv_version": c.version})
			ctx := context.Background()
			e.vault.Write(c.mount+"/default/key/one", map[string]any{"data": "a secret"})
			if got, err := b.Get(ctx, one); err != nil || string(got) != "a secret" {
				t.Fatalf("Get = %q, %v", got, err)
			}
			two := resource.Path{Repo: "default", Type: "key", Tag: "two"}
			if err := b.Put(ctx, two, []byte("text")); err != nil {
				t.Fatal(err)
			}
			if d, ok := e.vault.Read(c.mount + "/default/key/two"); !ok || d["data"] != "text" || len(d) != 1 {
				t.Fatalf("stored %v, %v; want {data: text}", d, ok)
			}
			bin := []byte{0xff, 0, 1}
			if err := b.Put(ctx, two, bin); err != nil {
				t.Fatal(err)
			}
			d, _ := e.vault.Read(c.mount + "/default/key/two")
			if d["data"] != base64.StdEncoding.EncodeToString(bin) || d["encoding"] != "base64" {
				t.Fatalf("stored %v; want base64 with encoding=base64", d)
			}
			if got, err := b.Get(ctx, two); err != nil || !bytes.Equal(got, bin) {
				t.Fatalf("Get(binary) = %v, %v", got, err)
			}
			list, err := b.List(ctx, "")
			slices.SortFunc(list, func(a, b resource.Path) int { return strings.Compare(a.String(), b.String()) })
			if err != nil || len(list) != 2 || list[0] != one || list[1] != two {
				t.Fatalf("List = %v, %v", list, err)
			}
		})
	}
}

func TestMalformedEntries(t *testing.T) {
	e := newEnv(t, fakevault.Options{})
	b := e.start(t, nil)
	cases := []struct {
		name   string
		fields map[string]any
		want   string
	}{
		{"no data field", map[string]any{"value": "x"}, `no string field "data"`},
		{"data not a string", map[string]any{"data": 5.0}, `no string field "data"`},
		{"bad base64", map[string]any{"data": "!!", "encoding": "base64"}, "not"},
		{"unknown encoding", map[string]any{"data": "x", "encoding": "rot13"}, "rot13"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.vault.Write("secret/default/key/bad", c.fields)
			_, err := b.Get(context.Background(), resource.Path{Repo: "default", Type: "key", Tag: "bad"})
			if !errors.Is(err, sdk.ErrInternal) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Get = %v, want internal mentioning %q", err, c.want)
			}
		})
	}
}

func TestWrongKVVersionIsExplained(t *testing.T) {
	e := newEnv(t, fakevault.Options{})
	b := e.start(t, map[string]any{"mount_path": "kv2"}) // a v2 mount, read as v1
	_, err := b.Get(context.Background(), one)
	if !errors.Is(err, sdk.ErrInternal) || !strings.Contains(err.Error(), "versioned") || !strings.Contains(err.Error(), "kv_version") {
		t.Fatalf("Get = %v, want internal naming the versioned engine and kv_version", err)
	}
}

func TestKV2SoftDeletedIsNotFound(t *testing.T) {
	e := newEnv(t, fakevault.Options{})
	b := e.start(t, map[string]any{"mount_path": "kv2", "kv_version": 2})
	e.vault.Write("kv2/default/key/one", map[string]any{"data": "x"})
	// As `vault kv delete kv2/default/key/one`: only the latest version,
	// and Vault keeps answering reads with its metadata (and a 404).
	req, _ := http.NewRequest(http.MethodDelete, e.vault.URL+"/v1/kv2/data/default/key/one", nil)
	req.Header.Set("X-Vault-Token", rootToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE = %v, %v", resp, err)
	}
	resp.Body.Close()
	if _, err := b.Get(context.Background(), one); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Get(soft-deleted) = %v, want not_found", err)
	}
}

func TestAppRole(t *testing.T) {
	e := newEnv(t, fakevault.Options{TLS: true})
	e.vault.Write("secret/default/key/one", map[string]any{"data": "a secret"})
	b := e.start(t, e.approle())
	ctx := context.Background()
	if e.vault.Count("login") != 0 {
		t.Fatal("Configure logged in: it must not contact Vault")
	}
	for range 3 {
		if got, err := b.Get(ctx, one); err != nil || string(got) != "a secret" {
			t.Fatalf("Get = %q, %v", got, err)
		}
	}
	if n := e.vault.Count("login"); n != 1 {
		t.Fatalf("%d logins for 3 reads, want 1", n)
	}
	// The token's TTL runs out: the next request is refused, logs in again
	// and succeeds.
	e.vault.ExpireTokens()
	if got, err := b.Get(ctx, one); err != nil || string(got) != "a secret" {
		t.Fatalf("Get after expiry = %q, %v", got, err)
	}
	if n := e.vault.Count("login"); n != 2 {
		t.Fatalf("logins = %d after the token expired, want 2", n)
	}
}

func TestAuthFailures(t *testing.T) {
	e := newEnv(t, fakevault.Options{TLS: true})
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("hvs.wrong-token-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		extra map[string]any
		want  string
	}{
		{"wrong token", map[string]any{"token_file": wrong}, "permission denied"},
		{"wrong secret id", map[string]any{"token_file": nil, "approle": map[string]any{"role_id": roleID, "secret_id_file": wrong}}, "approle login refused (HTTP 400: invalid secret id)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := e.start(t, c.extra)
			_, err := b.Get(context.Background(), one)
			if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Get = %v, want unavailable mentioning %q", err, c.want)
			}
			if strings.Contains(err.Error(), "wrong-token-value") {
				t.Fatalf("the error shows the credential: %v", err)
			}
		})
	}
}

func TestTLSNeedsTheCA(t *testing.T) {
	e := newEnv(t, fakevault.Options{TLS: true})
	b := e.start(t, map[string]any{"ca_certs": nil})
	_, err := b.Get(context.Background(), one)
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Get without the CA = %v, want unavailable naming the certificate", err)
	}
}

func TestReadOnly(t *testing.T) {
	e := newEnv(t, fakevault.Options{})
	b := e.start(t, map[string]any{"read_only": true})
	if err := b.Put(context.Background(), one, []byte("x")); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Put = %v, want unsupported", err)
	}
	if err := b.Delete(context.Background(), one); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Delete = %v, want unsupported", err)
	}
	if e.vault.Count("write")+e.vault.Count("delete") != 0 {
		t.Error("a read-only backend wrote to Vault")
	}
}

func TestUnreachable(t *testing.T) {
	e := newEnv(t, fakevault.Options{})
	// A port that accepts and never answers, then a closed port (in this
	// order, so that the closed one cannot be handed out again).
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cases := []struct {
		name, url, want string
		extra           map[string]any
	}{
		{"closed port", closed, "unreachable", nil},
		{"no answer", "http://" + hang.Addr().String(), "within 1s", nil},
		{"closed port with approle", closed, "unreachable", e.approle()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			extra := map[string]any{"vault_url": c.url, "timeout": "1s"}
			maps.Copy(extra, c.extra)
			b := e.start(t, extra)
			start := time.Now()
			_, err := b.Get(context.Background(), one)
			elapsed := time.Since(start)
			t.Logf("%v after %s", err, elapsed)
			if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Get = %v, want unavailable mentioning %q", err, c.want)
			}
			if elapsed > 3*time.Second {
				t.Errorf("Get took %s with timeout 1s", elapsed)
			}
			if err := b.Put(context.Background(), one, []byte("x")); !errors.Is(err, sdk.ErrUnavailable) {
				t.Errorf("Put = %v, want unavailable", err)
			}
			if _, err := b.List(context.Background(), ""); !errors.Is(err, sdk.ErrUnavailable) {
				t.Errorf("List = %v, want unavailable", err)
			}
		})
	}
}

func TestSettingsErrors(t *testing.T) {
	e := newEnv(t, fakevault.Options{})
	cases := []struct {
		name  string
		extra map[string]any
		want  string
	}{
		{"unknown key", map[string]any{"verify_ssl": true}, "verify_ssl"},
		{"no url", map[string]any{"vault_url": nil}, "vault_url"},
		{"ftp url", map[string]any{"vault_url": "ftp://x"}, "vault_url"},
		{"no auth", map[string]any{"token_file": nil}, "exactly one"},
		{"two auths", map[string]any{"token": "x"}, "exactly one"},
		{"kv version 3", map[string]any{"kv_version": 3}, "kv_version"},
		{"bad mount", map[string]any{"mount_path": "../sys"}, "mount_path"},
		{"approle without role", map[string]any{"token_file": nil, "approle": map[string]any{"secret_id_file": "x"}}, "role_id"},
		{"missing token file", map[string]any{"token_file": "/nonexistent"}, "token_file"},
		{"missing ca file", map[string]any{"ca_certs": []string{"/nonexistent"}}, "ca_certs"},
		{"bad timeout", map[string]any{"timeout": "0s"}, "duration"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := plugintest.ConfigureError(t, options(), e.config(c.extra))
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Configure = %v, want invalid_argument mentioning %q", err, c.want)
			}
		})
	}
}

func TestNotConfigured(t *testing.T) {
	if _, err := vault.New().Get(context.Background(), one); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Get before Configure = %v, want unavailable", err)
	}
}

func TestCredentialsNeverLogged(t *testing.T) {
	e := newEnv(t, fakevault.Options{TLS: true})
	ctx := context.Background()
	for _, extra := range []map[string]any{nil, e.approle(), {"token": rootToken, "token_file": nil}} {
		b := e.start(t, extra)
		b.Put(ctx, one, []byte("value-never-logged"))
		b.Get(ctx, one)
		b.Get(ctx, resource.Path{Repo: "default", Type: "key", Tag: "missing"})
	}
	e.vault.ExpireTokens()
	e.start(t, e.approle()).Get(ctx, one)
	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("vault backend configured")) {
		t.Fatalf("the plugin log was not captured:\n%s", log)
	}
	for _, s := range []string{rootToken, secretID, "hvs.", "value-never-logged"} {
		if bytes.Contains(log, []byte(s)) {
			t.Errorf("the plugin log contains %q", s)
		}
	}
}
