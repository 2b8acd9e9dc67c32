package kms_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/gokbs/kbs/plugins/resource/kms"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/serve"
)

// logFile receives everything the plugin logs (sdk.Logger writes to the
// stderr it saw first), so that tests can check what reached the log.
var logFile string

func TestMain(m *testing.M) {
	f, err := os.CreateTemp("", "kms-plugin-log-")
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
	if hsmDir != "" {
		os.RemoveAll(hsmDir)
	}
	os.Exit(code)
}

const awsSecretKey = "wJalrXUtnFEMI/K7MDENG/never-logged" // local-kms accepts any

func options() serve.Options {
	return serve.Options{Name: "kms", Version: "0.1.0", Capabilities: []string{"write", "rewrap"}, Resource: kms.New()}
}

// keyManager is one of the two providers, started for a test.
type keyManager struct {
	name string
	// keys are two keys the settings can name; keys[0] wraps by default.
	keys [2]string
	// recorded is what an envelope records for keys[i].
	recorded [2]string
	// settings returns plugin settings using key, with extra merged in.
	settings func(dir, key string, extra map[string]any) []byte
	// retire makes a key unusable (disabled in KMS, deleted from the HSM).
	retire func(t *testing.T, i int)
	// stop takes the key manager down; endpoint is its URL (AWS only).
	stop     func()
	endpoint string
}

func merge(m, extra map[string]any) []byte {
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

func awsManager(t *testing.T) *keyManager {
	k := startLocalKMS(t)
	secretFile := filepath.Join(t.TempDir(), "aws-secret")
	if err := os.WriteFile(secretFile, []byte(awsSecretKey), 0o600); err != nil {
		t.Fatal(err)
	}
	return &keyManager{
		name:     "aws",
		keys:     [2]string{awsAlias, awsKey2},
		recorded: [2]string{awsARN(awsKey1), awsARN(awsKey2)},
		settings: func(dir, key string, extra map[string]any) []byte {
			return merge(map[string]any{"dir": dir, "aws": map[string]any{
				"key_id": key, "region": awsRegion, "endpoint": k.URL,
				"access_key_id": "AKIDEXAMPLE", "secret_access_key_file": secretFile,
			}}, extra)
		},
		retire: func(t *testing.T, i int) {
			// DisableKey takes no alias.
			key := []string{awsKey1, awsKey2}[i]
			c := awskms.New(awskms.Options{Region: awsRegion, BaseEndpoint: aws.String(k.URL),
				Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", awsSecretKey, "")})
			if _, err := c.DisableKey(context.Background(), &awskms.DisableKeyInput{KeyId: aws.String(key)}); err != nil {
				t.Fatal(err)
			}
		},
		stop:     k.stop,
		endpoint: k.URL,
	}
}

func hsmManager(t *testing.T) *keyManager {
	h := startSoftHSM(t)
	var rnd [4]byte
	rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	k1, k2 := "kbs-kek-1-"+suffix, "kbs-kek-2-"+suffix
	h.newKey(t, k1)
	h.newKey(t, k2)
	return &keyManager{
		name:     "pkcs11",
		keys:     [2]string{k1, k2},
		recorded: [2]string{k1, k2},
		settings: func(dir, key string, extra map[string]any) []byte {
			return merge(map[string]any{"dir": dir, "pkcs11": map[string]any{
				"module": softHSMModule, "token_label": hsmToken, "pin_file": h.pinFile, "key_label": key,
				"module_env": map[string]string{"SOFTHSM2_CONF": h.conf},
			}}, extra)
		},
		retire: func(t *testing.T, i int) { h.deleteKey(t, []string{k1, k2}[i]) },
	}
}

var managers = []struct {
	name  string
	start func(t *testing.T) *keyManager
}{
	{"aws kms (local-kms)", awsManager},
	{"pkcs11 (softhsm2)", hsmManager},
}

// eachManager runs f once per key manager, skipping those not installed.
func eachManager(t *testing.T, f func(t *testing.T, km *keyManager)) {
	for _, m := range managers {
		t.Run(m.name, func(t *testing.T) { f(t, m.start(t)) })
	}
}

func TestConformance(t *testing.T) {
	eachManager(t, func(t *testing.T, km *keyManager) {
		plugintest.ResourceConformance(t, options(), km.settings(filepath.Join(t.TempDir(), "store"), km.keys[0], nil))
	})
}

func readEnvelope(t *testing.T, dir string, p resource.Path) (raw []byte, env map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, p.Repo, p.Type, p.Tag))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("envelope is not JSON: %v\n%s", err, raw)
	}
	return raw, env
}

var secretPath = resource.Path{Repo: "default", Type: "key", Tag: "db-password"}

// TestOnlyCiphertextOnDisk is the point of this backend: what is on disk
// does not contain the secret, in any usual encoding.
func TestOnlyCiphertextOnDisk(t *testing.T) {
	eachManager(t, func(t *testing.T, km *keyManager) {
		dir := filepath.Join(t.TempDir(), "store")
		b := plugintest.Start(t, options(), km.settings(dir, km.keys[0], nil)).Resource()
		ctx := context.Background()
		plain := []byte("correct horse battery staple: the plaintext secret")
		if err := b.Put(ctx, secretPath, plain); err != nil {
			t.Fatal(err)
		}
		raw, env := readEnvelope(t, dir, secretPath)
		for _, enc := range [][]byte{plain, []byte("correct horse"), []byte(base64.StdEncoding.EncodeToString(plain)),
			[]byte(base64.StdEncoding.EncodeToString(plain)[:16]), []byte(hex.EncodeToString(plain)[:16])} {
			if bytes.Contains(raw, enc) {
				t.Fatalf("the envelope on disk contains %q:\n%s", enc, raw)
			}
		}
		if env["version"] != 1.0 || env["provider"] == "" || env["key"] != km.recorded[0] {
			t.Errorf("envelope header = version %v provider %v key %v; want key %s", env["version"], env["provider"], env["key"], km.recorded[0])
		}
		// The files are the owner's only.
		fi, _ := os.Stat(filepath.Join(dir, secretPath.Repo, secretPath.Type, secretPath.Tag))
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("envelope mode = %v, want 0600", fi.Mode().Perm())
		}
		if got, err := b.Get(ctx, secretPath); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Get = %q, %v", got, err)
		}
		// Two puts of the same value use two data keys.
		if err := b.Put(ctx, secretPath, plain); err != nil {
			t.Fatal(err)
		}
		_, env2 := readEnvelope(t, dir, secretPath)
		if env2["wrapped_key"] == env["wrapped_key"] || env2["ciphertext"] == env["ciphertext"] {
			t.Error("a second Put reused the data key or the nonce")
		}
	})
}

func TestTamperedEnvelopes(t *testing.T) {
	eachManager(t, func(t *testing.T, km *keyManager) {
		dir := filepath.Join(t.TempDir(), "store")
		b := plugintest.Start(t, options(), km.settings(dir, km.keys[0], nil)).Resource()
		ctx := context.Background()
		if err := b.Put(ctx, secretPath, []byte("secret")); err != nil {
			t.Fatal(err)
		}
		raw, _ := readEnvelope(t, dir, secretPath)
		flip := func(field string) func(map[string]any) {
			return func(env map[string]any) {
				v, _ := base64.StdEncoding.DecodeString(env[field].(string))
				v[len(v)-1] ^= 1
				env[field] = base64.StdEncoding.EncodeToString(v)
			}
		}
		cases := []struct {
			name   string
			target resource.Path
			edit   func(map[string]any)
			want   string
		}{
			{"ciphertext flipped", secretPath, flip("ciphertext"), "does not open"},
			{"wrapped key flipped", secretPath, flip("wrapped_key"), "does not decrypt"},
			{"moved to another path", resource.Path{Repo: "default", Type: "key", Tag: "other"}, func(map[string]any) {}, "does not decrypt"},
			{"other provider", secretPath, func(env map[string]any) { env["provider"] = "vault-transit" }, "provider"},
			{"other version", secretPath, func(env map[string]any) { env["version"] = 2 }, "version"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var env map[string]any
				json.Unmarshal(raw, &env)
				c.edit(env)
				edited, _ := json.Marshal(env)
				file := filepath.Join(dir, c.target.Repo, c.target.Type, c.target.Tag)
				if err := os.WriteFile(file, edited, 0o600); err != nil {
					t.Fatal(err)
				}
				_, err := b.Get(ctx, c.target)
				if !errors.Is(err, sdk.ErrInternal) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("Get = %v, want internal mentioning %q", err, c.want)
				}
			})
		}
		if err := os.WriteFile(filepath.Join(dir, "default", "key", "garbage"), []byte("not json"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Get(ctx, resource.Path{Repo: "default", Type: "key", Tag: "garbage"}); !errors.Is(err, sdk.ErrInternal) {
			t.Fatalf("Get(garbage) = %v, want internal", err)
		}
	})
}

// TestRewrap rotates to a second key: every data key is re-wrapped, the
// sealed resources are untouched, and the old key can then be retired.
func TestRewrap(t *testing.T) {
	eachManager(t, func(t *testing.T, km *keyManager) {
		dir := filepath.Join(t.TempDir(), "store")
		ctx := context.Background()
		old := plugintest.Start(t, options(), km.settings(dir, km.keys[0], nil)).Resource()
		paths := []resource.Path{secretPath, {Repo: "default", Type: "key", Tag: "two"}, {Repo: "other", Type: "cert", Tag: "three"}}
		for i, p := range paths {
			if err := old.Put(ctx, p, []byte("value "+p.String())); err != nil {
				t.Fatalf("Put %d: %v", i, err)
			}
		}
		before := map[resource.Path]map[string]any{}
		for _, p := range paths {
			_, before[p] = readEnvelope(t, dir, p)
		}

		// Without rewrap, the new key only wraps new data keys.
		b := plugintest.Start(t, options(), km.settings(dir, km.keys[1], nil)).Resource()
		if _, env := readEnvelope(t, dir, secretPath); env["key"] != km.recorded[0] {
			t.Fatalf("without rewrap the envelope changed to key %v", env["key"])
		}
		if got, err := b.Get(ctx, secretPath); err != nil || string(got) != "value "+secretPath.String() {
			t.Fatalf("Get under the old key = %q, %v", got, err)
		}

		b = plugintest.Start(t, options(), km.settings(dir, km.keys[1], map[string]any{"rewrap": true})).Resource()
		for _, p := range paths {
			_, env := readEnvelope(t, dir, p)
			if env["key"] != km.recorded[1] {
				t.Errorf("%s: key after rewrap = %v, want %s", p, env["key"], km.recorded[1])
			}
			if env["wrapped_key"] == before[p]["wrapped_key"] {
				t.Errorf("%s: wrapped key unchanged by rewrap", p)
			}
			if env["ciphertext"] != before[p]["ciphertext"] || env["nonce"] != before[p]["nonce"] {
				t.Errorf("%s: rewrap rewrote the sealed resource", p)
			}
		}
		// A second run finds nothing to do.
		raw1, _ := readEnvelope(t, dir, secretPath)
		plugintest.Start(t, options(), km.settings(dir, km.keys[1], map[string]any{"rewrap": true}))
		if raw2, _ := readEnvelope(t, dir, secretPath); !bytes.Equal(raw1, raw2) {
			t.Error("a second rewrap rewrote an envelope already under the key")
		}

		km.retire(t, 0)
		fresh := plugintest.Start(t, options(), km.settings(dir, km.keys[1], nil)).Resource()
		for _, p := range paths {
			if got, err := fresh.Get(ctx, p); err != nil || string(got) != "value "+p.String() {
				t.Errorf("Get(%s) after the old key was retired = %q, %v", p, got, err)
			}
		}
	})
}

// TestRewrapFailsWithoutTheOldKey: an envelope whose key is gone cannot
// be re-wrapped, and Configure says which one.
func TestRewrapFailsWithoutTheOldKey(t *testing.T) {
	eachManager(t, func(t *testing.T, km *keyManager) {
		dir := filepath.Join(t.TempDir(), "store")
		b := plugintest.Start(t, options(), km.settings(dir, km.keys[0], nil)).Resource()
		if err := b.Put(context.Background(), secretPath, []byte("x")); err != nil {
			t.Fatal(err)
		}
		km.retire(t, 0)
		err := plugintest.ConfigureError(t, options(), km.settings(dir, km.keys[1], map[string]any{"rewrap": true}))
		if err == nil || !strings.Contains(err.Error(), secretPath.String()) {
			t.Fatalf("Configure(rewrap) = %v, want an error naming %s", err, secretPath)
		}
		t.Log(err)
	})
}

func TestUnreachableKMS(t *testing.T) {
	km := awsManager(t)
	dir := filepath.Join(t.TempDir(), "store")
	ctx := context.Background()
	b := plugintest.Start(t, options(), km.settings(dir, km.keys[0], map[string]any{"timeout": "2s"})).Resource()
	if err := b.Put(ctx, secretPath, []byte("x")); err != nil {
		t.Fatal(err)
	}
	// The KMS goes down after the resource was stored.
	km.stop()
	cases := []struct {
		name string
		op   func() error
	}{
		{"get", func() error { _, err := b.Get(ctx, secretPath); return err }},
		{"put", func() error { return b.Put(ctx, secretPath, []byte("y")) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			err := c.op()
			t.Logf("%v after %s", err, time.Since(start))
			if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "unreachable") {
				t.Fatalf("error = %v, want unavailable saying unreachable", err)
			}
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("took %s with timeout 2s", d)
			}
		})
	}
	// The failed Put left the stored envelope as it was.
	if _, env := readEnvelope(t, dir, secretPath); env["key"] != km.recorded[0] {
		t.Errorf("envelope changed by a failed Put")
	}
	// Missing resources are still not_found: no KMS call is needed.
	if _, err := b.Get(ctx, resource.Path{Repo: "default", Type: "key", Tag: "missing"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want not_found", err)
	}

	// A KMS endpoint that accepts connections and never answers.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	settings := km.settings(dir, km.keys[0], map[string]any{"timeout": "1s"})
	settings = bytes.Replace(settings, []byte(strings.TrimPrefix(km.endpoint, "http://")), []byte(hang.Addr().String()), 1)
	b = plugintest.Start(t, options(), settings).Resource()
	start := time.Now()
	_, err = b.Get(ctx, secretPath)
	t.Logf("%v after %s", err, time.Since(start))
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("Get from a silent KMS = %v, want unavailable saying no answer", err)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("took %s with timeout 1s", d)
	}
}

func TestUnavailableKeys(t *testing.T) {
	eachManager(t, func(t *testing.T, km *keyManager) {
		dir := filepath.Join(t.TempDir(), "store")
		b := plugintest.Start(t, options(), km.settings(dir, km.keys[0], nil)).Resource()
		ctx := context.Background()
		if err := b.Put(ctx, secretPath, []byte("x")); err != nil {
			t.Fatal(err)
		}
		km.retire(t, 0)
		// A new process: the HSM provider caches key handles.
		b = plugintest.Start(t, options(), km.settings(dir, km.keys[0], nil)).Resource()
		_, err := b.Get(ctx, secretPath)
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("Get with the key retired = %v, want unavailable", err)
		}
		t.Log(err)
		if err := b.Put(ctx, secretPath, []byte("y")); !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("Put with the key retired = %v, want unavailable", err)
		}
	})
}

func TestReadOnly(t *testing.T) {
	km := awsManager(t)
	dir := filepath.Join(t.TempDir(), "store")
	w := plugintest.Start(t, options(), km.settings(dir, km.keys[0], nil)).Resource()
	if err := w.Put(context.Background(), secretPath, []byte("x")); err != nil {
		t.Fatal(err)
	}
	b := plugintest.Start(t, options(), km.settings(dir, km.keys[0], map[string]any{"read_only": true})).Resource()
	if err := b.Put(context.Background(), secretPath, []byte("y")); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Put = %v, want unsupported", err)
	}
	if err := b.Delete(context.Background(), secretPath); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Delete = %v, want unsupported", err)
	}
	if got, err := b.Get(context.Background(), secretPath); err != nil || string(got) != "x" {
		t.Errorf("Get = %q, %v", got, err)
	}
}

func TestSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	aws := map[string]any{"key_id": awsAlias, "region": awsRegion, "endpoint": "http://127.0.0.1:1"}
	with := func(m map[string]any, k string, v any) map[string]any {
		m = maps.Clone(m)
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name     string
		settings map[string]any
		want     string
	}{
		{"unknown key", map[string]any{"dir": dir, "aws": aws, "bucket": "x"}, "bucket"},
		{"no dir", map[string]any{"aws": aws}, "dir"},
		{"no provider", map[string]any{"dir": dir}, "exactly one"},
		{"two providers", map[string]any{"dir": dir, "aws": aws, "pkcs11": map[string]any{}}, "exactly one"},
		{"aws without key", map[string]any{"dir": dir, "aws": with(aws, "key_id", nil)}, "key_id"},
		{"aws without region", map[string]any{"dir": dir, "aws": with(aws, "region", nil)}, "region"},
		{"aws bad endpoint", map[string]any{"dir": dir, "aws": with(aws, "endpoint", "127.0.0.1:1")}, "endpoint"},
		{"aws half credentials", map[string]any{"dir": dir, "aws": with(aws, "access_key_id", "AKID")}, "secret_access_key_file"},
		{"aws unknown field", map[string]any{"dir": dir, "aws": with(aws, "profile", "x")}, "profile"},
		{"pkcs11 incomplete", map[string]any{"dir": dir, "pkcs11": map[string]any{"module": softHSMModule}}, "pin_file"},
		{"pkcs11 missing module", map[string]any{"dir": dir, "pkcs11": map[string]any{"module": "/nonexistent.so",
			"token_label": "t", "pin_file": "/x", "key_label": "k"}}, "module"},
		{"bad timeout", map[string]any{"dir": dir, "aws": aws, "timeout": "-1s"}, "duration"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, _ := json.Marshal(c.settings)
			err := plugintest.ConfigureError(t, options(), raw)
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Configure = %v, want invalid_argument mentioning %q", err, c.want)
			}
		})
	}
}

func TestNotConfigured(t *testing.T) {
	if _, err := kms.New().Get(context.Background(), secretPath); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Get before Configure = %v, want unavailable", err)
	}
}

func TestCredentialsNeverLogged(t *testing.T) {
	eachManager(t, func(t *testing.T, km *keyManager) {
		dir := filepath.Join(t.TempDir(), "store")
		b := plugintest.Start(t, options(), km.settings(dir, km.keys[0], nil)).Resource()
		ctx := context.Background()
		b.Put(ctx, secretPath, []byte("value-never-logged"))
		b.Get(ctx, secretPath)
		plugintest.Start(t, options(), km.settings(dir, km.keys[1], map[string]any{"rewrap": true}))
	})
	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("kms backend configured")) {
		t.Skipf("no key manager ran, nothing was logged")
	}
	for _, s := range []string{awsSecretKey, hsmPIN, "value-never-logged"} {
		if bytes.Contains(log, []byte(s)) {
			t.Errorf("the plugin log contains %q", s)
		}
	}
}
