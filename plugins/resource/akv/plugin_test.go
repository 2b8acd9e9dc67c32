package akv_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gokbs/kbs/plugins/resource/akv"
	"github.com/gokbs/kbs/plugins/resource/akv/internal/fakekv"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/serve"
)

// logFile receives everything the plugin logs (sdk.Logger writes to the
// stderr it saw first), so that tests can check what reached the log.
var logFile string

func TestMain(m *testing.M) {
	f, err := os.CreateTemp("", "akv-plugin-log-")
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

const clientSecret = "s3cr3t-client-value~Q8" // must never reach a log

func options() serve.Options {
	return serve.Options{Name: "akv", Version: "0.1.0", Capabilities: []string{"write"}, Resource: akv.New()}
}

// env is a fake Key Vault with the files the plugin's settings name.
type env struct {
	kv                 *fakekv.Server
	caFile, secretFile string
	federatedFile      string
}

func newEnv(t *testing.T, opts fakekv.Options) *env {
	t.Helper()
	if opts.ClientSecret == "" {
		opts.ClientSecret = clientSecret
	}
	if opts.FederatedToken == "" {
		opts.FederatedToken = "eyJhbGciOiJSUzI1NiJ9.projected-sa-token.sig"
	}
	e := &env{kv: fakekv.Start(opts)}
	t.Cleanup(e.kv.Close)
	dir := t.TempDir()
	e.caFile = filepath.Join(dir, "ca.pem")
	e.secretFile = filepath.Join(dir, "client-secret")
	e.federatedFile = filepath.Join(dir, "azure-identity-token")
	for name, data := range map[string][]byte{e.caFile: e.kv.CAPEM(), e.secretFile: []byte(opts.ClientSecret + "\n"), e.federatedFile: []byte(opts.FederatedToken)} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// config returns settings for a client-secret credential; extra keys are
// merged in (nil values delete keys).
func (e *env) config(extra map[string]any) []byte {
	m := map[string]any{
		"vault_url":      e.kv.URL,
		"authority_host": e.kv.URL,
		// Discovery always asks login.microsoftonline.com.
		"disable_instance_discovery": true,
		"ca_file":                    e.caFile,
		"tenant_id":                  fakekv.DefaultTenantID,
		"client_id":                  fakekv.DefaultClientID,
		"credential":                 "client_secret",
		"client_secret_file":         e.secretFile,
		// The fake's challenge names https://vault.azure.net, as Key Vault
		// does; its own host is 127.0.0.1, which cannot match.
		"disable_challenge_resource_verification": true,
		"writable": true,
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

func (e *env) start(t *testing.T, extra map[string]any) resource.Backend {
	t.Helper()
	return plugintest.Start(t, options(), e.config(extra)).Resource()
}

var cocoOne = resource.Path{Repo: "default", Type: "akv", Tag: "coco_one"}

func TestConformance(t *testing.T) {
	e := newEnv(t, fakekv.Options{PageSize: 2})
	e.kv.SetSecret("unrelated-secret", "x", "")
	plugintest.ResourceConformance(t, options(), e.config(nil))
	if e.kv.Count("challenge") != 1 || e.kv.Count("token") != 1 {
		t.Errorf("challenges = %d, token requests = %d; want one of each (the SDK caches both)",
			e.kv.Count("challenge"), e.kv.Count("token"))
	}
}

func TestOperatorCreatedSecret(t *testing.T) {
	e := newEnv(t, fakekv.Options{})
	// As `az keyvault secret set --name default--akv--coco-5fone --value "a secret"`.
	e.kv.SetSecret("default--akv--coco-5fone", "a secret", "")
	b := e.start(t, map[string]any{"writable": nil})
	got, err := b.Get(context.Background(), cocoOne)
	if err != nil || string(got) != "a secret" {
		t.Fatalf("Get = %q, %v; want %q", got, err, "a secret")
	}
	// Key Vault names are case-insensitive; the mapping never relies on case.
	e.kv.SetSecret("DEFAULT--AKV--COCO-5FTWO", "two", "")
	got, err = b.Get(context.Background(), resource.Path{Repo: "default", Type: "akv", Tag: "coco_two"})
	if err != nil || string(got) != "two" {
		t.Fatalf("Get(coco_two) = %q, %v", got, err)
	}
	list, err := b.List(context.Background(), "default")
	slices.SortFunc(list, func(a, b resource.Path) int { return strings.Compare(a.String(), b.String()) })
	if err != nil || len(list) != 2 || list[0] != cocoOne || list[1].Tag != "coco_two" {
		t.Fatalf("List = %v, %v", list, err)
	}
}

func TestReadOnlyByDefault(t *testing.T) {
	e := newEnv(t, fakekv.Options{})
	b := e.start(t, map[string]any{"writable": nil})
	ctx := context.Background()
	if err := b.Put(ctx, cocoOne, []byte("x")); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Put = %v, want unsupported", err)
	}
	if err := b.Delete(ctx, cocoOne); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Delete = %v, want unsupported", err)
	}
	if e.kv.Count("set")+e.kv.Count("delete") != 0 {
		t.Error("a read-only backend sent a write to Key Vault")
	}
}

func TestValueEncoding(t *testing.T) {
	e := newEnv(t, fakekv.Options{})
	b := e.start(t, nil)
	ctx := context.Background()
	cases := []struct {
		name       string
		data       []byte
		stored, ct string
	}{
		{"utf-8 text stored as is", []byte("a secret ✓\n"), "a secret ✓\n", ""},
		{"binary stored as base64", []byte{0, 0xff, 0xfe, 'x'}, base64.StdEncoding.EncodeToString([]byte{0, 0xff, 0xfe, 'x'}), akv.Base64ContentType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := resource.Path{Repo: "default", Type: "enc", Tag: strings.ReplaceAll(c.name, " ", "_")}
			if err := b.Put(ctx, p, c.data); err != nil {
				t.Fatal(err)
			}
			name, _ := akv.SecretName("", p)
			v, ct, ok := e.kv.Secret(name)
			if !ok || v != c.stored || ct != c.ct {
				t.Fatalf("stored %q (%q), %v; want %q (%q)", v, ct, ok, c.stored, c.ct)
			}
			got, err := b.Get(ctx, p)
			if err != nil || !bytes.Equal(got, c.data) {
				t.Fatalf("Get = %q, %v", got, err)
			}
		})
	}
}

func TestCache(t *testing.T) {
	e := newEnv(t, fakekv.Options{})
	name, _ := akv.SecretName("", cocoOne)
	e.kv.SetSecret(name, "v1", "")
	ctx := context.Background()
	t.Run("served from memory within the ttl", func(t *testing.T) {
		b := e.start(t, map[string]any{"cache_ttl": "1h"})
		before := e.kv.Count("get")
		for range 3 {
			if got, err := b.Get(ctx, cocoOne); err != nil || string(got) != "v1" {
				t.Fatalf("Get = %q, %v", got, err)
			}
		}
		if n := e.kv.Count("get") - before; n != 1 {
			t.Errorf("%d Key Vault reads for 3 Gets, want 1", n)
		}
		e.kv.SetSecret(name, "v2", "")
		if got, _ := b.Get(ctx, cocoOne); string(got) != "v1" {
			t.Errorf("Get within the ttl = %q, want the cached v1", got)
		}
		// A write through the backend drops the cached value.
		if err := b.Put(ctx, cocoOne, []byte("v3")); err != nil {
			t.Fatal(err)
		}
		if got, _ := b.Get(ctx, cocoOne); string(got) != "v3" {
			t.Errorf("Get after Put = %q, want v3", got)
		}
	})
	t.Run("expires", func(t *testing.T) {
		b := e.start(t, map[string]any{"cache_ttl": "50ms"})
		e.kv.SetSecret(name, "v4", "")
		if got, _ := b.Get(ctx, cocoOne); string(got) != "v4" {
			t.Fatalf("Get = %q", got)
		}
		e.kv.SetSecret(name, "v5", "")
		time.Sleep(80 * time.Millisecond)
		if got, _ := b.Get(ctx, cocoOne); string(got) != "v5" {
			t.Errorf("Get after the ttl = %q, want v5", got)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		b := e.start(t, map[string]any{"cache_ttl": "0s"})
		before := e.kv.Count("get")
		b.Get(ctx, cocoOne)
		b.Get(ctx, cocoOne)
		if n := e.kv.Count("get") - before; n != 2 {
			t.Errorf("%d Key Vault reads for 2 Gets without a cache, want 2", n)
		}
	})
}

func TestPutAfterDeleteRecoversSoftDeletedSecret(t *testing.T) {
	e := newEnv(t, fakekv.Options{})
	b := e.start(t, nil)
	ctx := context.Background()
	for i, step := range []func() error{
		func() error { return b.Put(ctx, cocoOne, []byte("first")) },
		func() error { return b.Delete(ctx, cocoOne) },
		func() error { return b.Put(ctx, cocoOne, []byte("second")) },
	} {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if got, err := b.Get(ctx, cocoOne); err != nil || string(got) != "second" {
		t.Fatalf("Get = %q, %v; want second", got, err)
	}
	if e.kv.Count("recover") != 1 {
		t.Errorf("recover calls = %d, want 1", e.kv.Count("recover"))
	}
}

func TestCredentials(t *testing.T) {
	cases := []struct {
		name        string
		extra       map[string]any
		federated   bool // set federated_token_file
		wrongSecret bool // client_secret_file holds another secret
		wantErr     string
	}{
		{name: "client secret"},
		{name: "workload identity", extra: map[string]any{"credential": "workload_identity", "client_secret_file": nil}, federated: true},
		{name: "chain of workload identity and client secret", extra: map[string]any{"credential": nil}, federated: true},
		{name: "wrong client secret", wrongSecret: true, wantErr: "authentication failed: token endpoint answered HTTP 401 invalid_client AADSTS7000215"},
		{name: "challenge resource verified by default", extra: map[string]any{"disable_challenge_resource_verification": nil}, wantErr: "challenge resource"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, fakekv.Options{})
			extra := map[string]any{}
			maps.Copy(extra, c.extra)
			if c.federated {
				extra["federated_token_file"] = e.federatedFile
			}
			if c.wrongSecret {
				wrong := filepath.Join(t.TempDir(), "wrong")
				if err := os.WriteFile(wrong, []byte("not-the-secret"), 0o600); err != nil {
					t.Fatal(err)
				}
				extra["client_secret_file"] = wrong
			}
			e.kv.SetSecret("default--akv--coco-5fone", "a secret", "")
			b := e.start(t, extra)
			got, err := b.Get(context.Background(), cocoOne)
			if c.wantErr == "" {
				if err != nil || string(got) != "a secret" {
					t.Fatalf("Get = %q, %v", got, err)
				}
				return
			}
			if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Get error = %v, want unavailable mentioning %q", err, c.wantErr)
			}
			if strings.Contains(err.Error(), clientSecret) || strings.Contains(err.Error(), "not-the-secret") {
				t.Fatalf("error shows a credential: %v", err)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	e := newEnv(t, fakekv.Options{})
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
	closed := "https://" + l.Addr().String()
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
	}{
		{"closed port", closed, "unreachable"},
		{"no answer", "https://" + hang.Addr().String(), "within 1s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := e.start(t, map[string]any{"vault_url": c.url, "timeout": "1s"})
			start := time.Now()
			_, err := b.Get(context.Background(), cocoOne)
			elapsed := time.Since(start)
			if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Get error = %v, want unavailable mentioning %q", err, c.want)
			}
			t.Logf("%s after %s", err, elapsed)
			if elapsed > 3*time.Second {
				t.Errorf("Get took %s with timeout 1s", elapsed)
			}
			if err := b.Put(context.Background(), cocoOne, []byte("x")); !errors.Is(err, sdk.ErrUnavailable) {
				t.Errorf("Put error = %v, want unavailable", err)
			}
			if _, err := b.List(context.Background(), ""); !errors.Is(err, sdk.ErrUnavailable) {
				t.Errorf("List error = %v, want unavailable", err)
			}
		})
	}
}

func TestSettingsErrors(t *testing.T) {
	e := newEnv(t, fakekv.Options{})
	cases := []struct {
		name  string
		extra map[string]any
		want  string
	}{
		{"unknown key", map[string]any{"vault": "x"}, "vault"},
		{"no vault_url", map[string]any{"vault_url": nil}, "vault_url"},
		{"plain http", map[string]any{"vault_url": "http://127.0.0.1:1"}, "https"},
		{"bad prefix", map[string]any{"name_prefix": "kbs_"}, "name_prefix"},
		{"bad duration", map[string]any{"cache_ttl": "soon"}, "duration"},
		{"zero timeout", map[string]any{"timeout": "0s"}, "timeout"},
		{"client secret without file", map[string]any{"client_secret_file": nil}, "client_secret_file"},
		{"workload identity without token file", map[string]any{"credential": "workload_identity"}, "federated_token_file"},
		{"unknown credential", map[string]any{"credential": "password"}, "password"},
		{"missing ca file", map[string]any{"ca_file": "/nonexistent/ca.pem"}, "ca_file"},
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
	if _, err := akv.New().Get(context.Background(), cocoOne); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Get before Configure = %v, want unavailable", err)
	}
}

// TestCredentialsNeverLogged runs a session with every kind of failure and
// checks the plugin's log for the client secret, the federated token, the
// access tokens and the secret values.
func TestCredentialsNeverLogged(t *testing.T) {
	e := newEnv(t, fakekv.Options{})
	b := e.start(t, nil)
	ctx := context.Background()
	value := "resource-value-" + fmt.Sprint(time.Now().UnixNano())
	b.Put(ctx, cocoOne, []byte(value))
	b.Get(ctx, cocoOne)
	b.Get(ctx, resource.Path{Repo: "default", Type: "akv", Tag: "missing"})
	e.kv.Close()
	b.Get(ctx, resource.Path{Repo: "default", Type: "akv", Tag: "other"})
	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("key vault backend configured")) {
		t.Fatalf("the plugin log was not captured:\n%s", log)
	}
	for _, s := range []string{clientSecret, "projected-sa-token", value} {
		if bytes.Contains(log, []byte(s)) {
			t.Errorf("the plugin log contains %q", s)
		}
	}
}
