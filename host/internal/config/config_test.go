package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kbs.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimal = `
[http_server]
insecure_http = true
[plugins]
dir = "/plugins"
[storage]
dir = "/state"
`

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "..", "configs", "kbs.toml"), nil)
	if err != nil {
		t.Fatalf("configs/kbs.toml: %v", err)
	}
	if cfg.Plugins.Token == nil || cfg.Plugins.Token.Config["duration"] != "5m" {
		t.Errorf("token plugin settings = %+v", cfg.Plugins.Token)
	}
	if len(cfg.Plugins.Resource) != 1 || cfg.Plugins.Resource[0].Routes[0] != "*" {
		t.Errorf("resource plugins = %+v", cfg.Plugins.Resource)
	}
	// The example documents the defaults: the two must not drift apart.
	if cfg.ResourceCache != Default().ResourceCache {
		t.Errorf("resource_cache in configs/kbs.toml = %+v, defaults %+v", cfg.ResourceCache, Default().ResourceCache)
	}
}

func TestLoad(t *testing.T) {
	tests := map[string]struct {
		body    string
		env     []string
		wantErr string
		check   func(t *testing.T, c *Config)
	}{
		"defaults": {body: minimal, check: func(t *testing.T, c *Config) {
			if c.Session.Timeout != 5*time.Minute || c.HTTPServer.PayloadRequestSize != 16 || c.HTTPServer.Sockets[0] != "127.0.0.1:8080" {
				t.Errorf("defaults not applied: %+v", c)
			}
		}},
		"unknown key is named":     {body: minimal + "\n[session]\ntimout = \"1m\"\n", wantErr: "timout"},
		"unknown section is named": {body: minimal + "\n[sesion]\ntimeout = \"1m\"\n", wantErr: "sesion"},
		"env overrides file": {body: minimal, env: []string{"KBS_SESSION__TIMEOUT=2s", "KBS_HTTP_SERVER__SOCKETS=127.0.0.1:1,127.0.0.1:2"},
			check: func(t *testing.T, c *Config) {
				if c.Session.Timeout != 2*time.Second || len(c.HTTPServer.Sockets) != 2 {
					t.Errorf("env not applied: %v %v", c.Session.Timeout, c.HTTPServer.Sockets)
				}
			}},
		"unknown env key is named":           {body: minimal, env: []string{"KBS_SESSION__TIMOUT=2s"}, wantErr: "timout"},
		"TLS required without insecure_http": {body: "[plugins]\ndir=\"/p\"\n[storage]\ndir=\"/s\"\n", wantErr: "private_key and certificate"},
		"bad duration":                       {body: minimal + "\n[session]\ntimeout = \"soon\"\n", wantErr: "timeout"},
		"bad socket":                         {body: strings.Replace(minimal, "insecure_http = true", "insecure_http = true\nsockets = [\"nohost\"]", 1), wantErr: "nohost"},
		"storage required":                   {body: "[http_server]\ninsecure_http = true\n[plugins]\ndir = \"/p\"\n", wantErr: "storage.dir"},
		"routes on a verifier":               {body: minimal + "\n[[plugins.verifier]]\nname = \"sample\"\nroutes = [\"x\"]\n", wantErr: "routes apply to resource backends only"},
		"unknown admin key":                  {body: minimal + "\n[admin]\nmode = \"AllowSome\"\n", wantErr: "mode"},
		"yaml":                               {},
		"redis state and sessions": {body: "[http_server]\ninsecure_http = true\n[plugins]\ndir = \"/p\"\n[session]\nstorage_type = \"Redis\"\n[storage]\nstorage_type = \"Redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\n",
			check: func(t *testing.T, c *Config) {
				if c.Storage.StorageType != StorageRedis || c.Session.StorageType != SessionRedis || c.Storage.RefreshInterval != time.Second || c.Storage.KeyPrefix != "kbs:" {
					t.Errorf("redis settings = %+v %+v", c.Storage, c.Session)
				}
			}},
		"redis without url":     {body: minimal + "\n[session]\nstorage_type = \"redis\"\n", wantErr: "storage.redis_url is required"},
		"redis url scheme":      {body: minimal, env: []string{"KBS_STORAGE__STORAGE_TYPE=redis", "KBS_STORAGE__REDIS_URL=http://x"}, wantErr: "redis://"},
		"unknown storage type":  {body: minimal, env: []string{"KBS_STORAGE__STORAGE_TYPE=etcd"}, wantErr: "storage.storage_type \"etcd\""},
		"unknown session store": {body: minimal, env: []string{"KBS_SESSION__STORAGE_TYPE=disk"}, wantErr: "session.storage_type \"disk\""},
		"zero refresh interval": {body: minimal, env: []string{"KBS_STORAGE__REFRESH_INTERVAL=0s"}, wantErr: "refresh_interval"},
		"resource cache defaults": {body: minimal, check: func(t *testing.T, c *Config) {
			want := ResourceCache{TTL: 5 * time.Second, MaxEntries: 1024, MaxBytes: 16 << 20}
			if c.ResourceCache != want || !c.ResourceCache.On() {
				t.Errorf("resource_cache = %+v, want %+v", c.ResourceCache, want)
			}
		}},
		"resource cache from file": {body: minimal + "\n[resource_cache]\nttl = \"300ms\"\nmax_entries = 10\nmax_bytes = 4096\n",
			check: func(t *testing.T, c *Config) {
				if want := (ResourceCache{TTL: 300 * time.Millisecond, MaxEntries: 10, MaxBytes: 4096}); c.ResourceCache != want {
					t.Errorf("resource_cache = %+v, want %+v", c.ResourceCache, want)
				}
			}},
		"resource cache off": {body: minimal, env: []string{"KBS_RESOURCE_CACHE__TTL=0s"}, check: func(t *testing.T, c *Config) {
			if c.ResourceCache.On() {
				t.Errorf("ttl 0s leaves the cache on: %+v", c.ResourceCache)
			}
		}},
		"resource cache negative ttl":         {body: minimal, env: []string{"KBS_RESOURCE_CACHE__TTL=-1s"}, wantErr: "resource_cache.ttl"},
		"resource cache negative max_entries": {body: minimal, env: []string{"KBS_RESOURCE_CACHE__MAX_ENTRIES=-1"}, wantErr: "resource_cache.max_entries"},
		"resource cache negative max_bytes":   {body: minimal + "\n[resource_cache]\nmax_bytes = -1\n", wantErr: "resource_cache.max_bytes"},
		"resource cache unknown key":          {body: minimal + "\n[resource_cache]\nmax_size = 1\n", wantErr: "max_size"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var p string
			if name == "yaml" {
				p = filepath.Join(t.TempDir(), "kbs.yaml")
				_ = os.WriteFile(p, []byte("http_server:\n  insecure_http: true\nplugins:\n  dir: /p\nstorage:\n  dir: /s\n"), 0o600)
			} else {
				p = writeConfig(t, tc.body)
			}
			cfg, err := Load(p, tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, cfg)
			}
		})
	}
}
