// Package config loads the kbs-host configuration: a TOML (or YAML) file
// plus environment overrides, decoded strictly so that a misspelt key is an
// error naming it rather than a setting silently ignored.
//
// Names follow trustee's where the meaning is the same ([http_server],
// [attestation_token]), so that a trustee user recognises them.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/gokbs/kbs/host/internal/adminauth"
)

// EnvPrefix starts every environment override. Nesting uses a double
// underscore, because keys contain single ones:
// KBS_HTTP_SERVER__INSECURE_HTTP=true sets http_server.insecure_http.
// Variables without a double underscore are not settings and are ignored.
const EnvPrefix = "KBS_"

// Config is the whole host configuration.
type Config struct {
	HTTPServer       HTTPServer       `koanf:"http_server"`
	Session          Session          `koanf:"session"`
	AttestationToken AttestationToken `koanf:"attestation_token"`
	Plugins          Plugins          `koanf:"plugins"`
	Admin            adminauth.Config `koanf:"admin"`
	Policy           Policy           `koanf:"policy"`
	Storage          Storage          `koanf:"storage"`
	ResourceCache    ResourceCache    `koanf:"resource_cache"`
	Log              Log              `koanf:"log"`
	Debug            Debug            `koanf:"debug"`
}

// HTTPServer is the listener.
type HTTPServer struct {
	// Sockets are the addresses to listen on.
	Sockets []string `koanf:"sockets"`
	// InsecureHTTP serves plain HTTP. Without it, PrivateKey and
	// Certificate are required.
	InsecureHTTP bool   `koanf:"insecure_http"`
	PrivateKey   string `koanf:"private_key"`
	Certificate  string `koanf:"certificate"`
	// PayloadRequestSize is the largest request body, in MiB. trustee's
	// default of 2 was too small for TDX evidence with a full event log.
	PayloadRequestSize int `koanf:"payload_request_size"`
	// ReadHeaderTimeout and ReadTimeout bound slow clients.
	ReadHeaderTimeout time.Duration `koanf:"read_header_timeout"`
	ReadTimeout       time.Duration `koanf:"read_timeout"`
	WriteTimeout      time.Duration `koanf:"write_timeout"`
	// MaxHeaderBytes bounds the request head; large enough for a verbose
	// EAR token in an Authorization header (trustee issue #1563).
	MaxHeaderBytes int `koanf:"max_header_bytes"`
}

// Session governs the RCAR handshake sessions.
type Session struct {
	// Timeout is how long a session (and its cookie) lives from auth.
	Timeout time.Duration `koanf:"timeout"`
	// MaxSessions bounds the sessions held at once; auth beyond it is
	// refused with 503 until old ones expire. Memory store only: Redis's
	// own maxmemory bounds the redis store.
	MaxSessions int `koanf:"max_sessions"`
	// StorageType is where sessions live: "memory" (this process, the
	// default) or "redis" (at storage.redis_url, shared by replicas, so a
	// load balancer needs no sticky sessions). trustee's
	// session_storage_type; the case of the value does not matter.
	StorageType string `koanf:"storage_type"`
	// AuthRate bounds new handshakes (POST /kbs/v0/auth) per second, over
	// all clients; beyond it auth answers 429. With max_sessions it keeps
	// a flood of auth calls from filling the session store. 0: no limit.
	AuthRate float64 `koanf:"auth_rate"`
	// AuthBurst is how many auth calls may come at once above AuthRate
	// (a cluster scaling up starts many pods together).
	AuthBurst int `koanf:"auth_burst"`
}

// Debug holds diagnostics that are off by default.
type Debug struct {
	// PprofListen, when set, serves Go's profiler (net/http/pprof) on this
	// loopback address, apart from the broker's sockets.
	PprofListen string `koanf:"pprof_listen"`
}

// AttestationToken says which token issuers are trusted (trustee's
// [attestation_token]). The broker always trusts its own token plugin.
type AttestationToken struct {
	TrustedCertsPaths []string `koanf:"trusted_certs_paths"`
	TrustedJWKSets    []string `koanf:"trusted_jwk_sets"`
	ExtraTEEKeyPaths  []string `koanf:"extra_teekey_paths"`
	// InsecureHeaderJWK trusts whatever key a token's header carries.
	// Development only.
	InsecureHeaderJWK bool          `koanf:"insecure_header_jwk"`
	Leeway            time.Duration `koanf:"leeway"`
	// JWKSTimeout bounds one fetch of an https JWK set.
	JWKSTimeout time.Duration `koanf:"jwks_timeout"`
	// JWKSMinRefresh is the least time between two fetches of one https
	// set (a token with an unknown key, or a failed fetch, triggers one).
	JWKSMinRefresh time.Duration `koanf:"jwks_min_refresh"`
	// JWKSMaxAge is how long a fetched set is used before it is fetched
	// again; if that fetch fails, the keys already fetched stay in use.
	JWKSMaxAge time.Duration `koanf:"jwks_max_age"`
}

// Plugins lists the plugins to run and their settings.
type Plugins struct {
	// Dir holds the kbs-plugin-* binaries and manifest.sha256.
	Dir          string        `koanf:"dir"`
	StartTimeout time.Duration `koanf:"start_timeout"`
	CallTimeout  time.Duration `koanf:"call_timeout"`
	// GOMAXPROCS is each plugin process's; 0 is half the host's, at least 1.
	GOMAXPROCS int          `koanf:"gomaxprocs"`
	Verifier   []PluginSpec `koanf:"verifier"`
	Resource   []PluginSpec `koanf:"resource"`
	Token      *PluginSpec  `koanf:"token"`
}

// PluginSpec is one plugin instance.
type PluginSpec struct {
	// Name selects the binary kbs-plugin-<kind>-<name>.
	Name string `koanf:"name"`
	// Routes (resource backends only) are the repo or repo/type prefixes
	// that this backend serves; "*" or none makes it the default.
	Routes []string `koanf:"routes"`
	// Config is the plugin's own settings, handed to it as JSON.
	Config map[string]any `koanf:"config"`
}

// Policy holds the initial resource policy.
type Policy struct {
	// ResourcePolicyFile, if set, is loaded as the resource policy at
	// start when none is stored yet.
	ResourcePolicyFile string `koanf:"resource_policy_file"`
	// DevAllowAll makes the first resource policy allow every request
	// (set by --dev; not a file setting).
	DevAllowAll bool `koanf:"-"`
}

// Storage is where durable state (policies, reference values) lives.
type Storage struct {
	// StorageType is "bolt" (the embedded file in Dir, one process; the
	// default) or "redis" (at RedisURL, shared by replicas). The case of
	// the value does not matter.
	StorageType string `koanf:"storage_type"`
	// Dir holds the embedded store (kbs.db). Required for bolt: state must
	// survive a restart, so there is no in-memory default.
	Dir string `koanf:"dir"`
	// RedisURL is the Redis or Valkey of the redis state and session
	// stores: redis://[:password@]host:port[/db], rediss:// for TLS.
	RedisURL string `koanf:"redis_url"`
	// KeyPrefix starts every key the broker writes to Redis, so that
	// several brokers (or other users) can share one.
	KeyPrefix string `koanf:"key_prefix"`
	// Timeout bounds every Redis call: past it the request that needed
	// Redis gets a 503.
	Timeout time.Duration `koanf:"timeout"`
	// RefreshInterval is how often a replica checks the redis state store
	// for policies and reference values changed through another replica;
	// a change is in force everywhere within about this delay.
	RefreshInterval time.Duration `koanf:"refresh_interval"`
}

// ResourceCache keeps resource values briefly in front of the resource
// backends: each backend call crosses into a plugin process and, for a
// remote backend, spends a round trip and the vault's throttling budget,
// while a cluster scaling up asks for the same few secrets at once. The
// resource policy is still evaluated, and the value sealed, per request.
type ResourceCache struct {
	// TTL is how long a value is served without asking the backend again:
	// a change made outside this host (another replica, the backend
	// itself, a CSI rotation) is seen within it; changes through this
	// host's admin API at once. 0 turns the cache off.
	TTL time.Duration `koanf:"ttl"`
	// MaxEntries bounds the values held. 0 holds none.
	MaxEntries int `koanf:"max_entries"`
	// MaxBytes bounds the total size of the values held; a value larger
	// than MaxBytes/16 is never held. 0 holds none.
	MaxBytes int64 `koanf:"max_bytes"`
}

// On reports whether resource values are cached at all.
func (r ResourceCache) On() bool { return r.TTL > 0 && r.MaxEntries > 0 && r.MaxBytes > 0 }

// Storage and session store types.
const (
	StorageBolt   = "bolt"
	StorageRedis  = "redis"
	SessionMemory = "memory"
	SessionRedis  = "redis"
)

// Log configures the host's logging.
type Log struct {
	Level string `koanf:"level"`
	JSON  bool   `koanf:"json"`
	// AuditFile receives the audit log (admin changes, resource releases
	// and denials) as JSON lines; "" sends it to the main log, named audit.
	AuditFile string `koanf:"audit_file"`
}

// Default returns the settings used for every key the file leaves out.
func Default() Config {
	return Config{
		HTTPServer: HTTPServer{
			Sockets:            []string{"127.0.0.1:8080"},
			PayloadRequestSize: 16,
			ReadHeaderTimeout:  10 * time.Second,
			ReadTimeout:        60 * time.Second,
			WriteTimeout:       60 * time.Second,
			MaxHeaderBytes:     1 << 20,
		},
		Session:          Session{Timeout: 5 * time.Minute, MaxSessions: 20000, StorageType: SessionMemory, AuthRate: 1000, AuthBurst: 2000},
		AttestationToken: AttestationToken{Leeway: 60 * time.Second, JWKSTimeout: 10 * time.Second, JWKSMinRefresh: 30 * time.Second, JWKSMaxAge: 10 * time.Minute},
		Storage:          Storage{StorageType: StorageBolt, KeyPrefix: "kbs:", Timeout: 2 * time.Second, RefreshInterval: time.Second},
		Plugins:          Plugins{StartTimeout: 10 * time.Second, CallTimeout: 30 * time.Second},
		ResourceCache:    ResourceCache{TTL: 5 * time.Second, MaxEntries: 1024, MaxBytes: 16 << 20},
		Log:              Log{Level: "info"},
	}
}

// Load reads path (TOML, or YAML by extension) over the defaults, then the
// KBS_* environment, and validates the result. path may be "" for defaults
// and environment only.
func Load(path string, environ []string) (*Config, error) {
	return LoadOver(Default(), path, environ)
}

// LoadOver is Load over the given base configuration instead of Default
// (dev mode's embedded configuration, for one).
func LoadOver(base Config, path string, environ []string) (*Config, error) {
	k := koanf.New(".")
	if path != "" {
		var parser koanf.Parser = toml.Parser()
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml":
			parser = yaml.Parser()
		}
		if err := k.Load(file.Provider(path), parser); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := k.Load(env.Provider(".", env.Opt{
		Prefix:        EnvPrefix,
		EnvironFunc:   func() []string { return environ },
		TransformFunc: envKey,
	}), nil); err != nil {
		return nil, fmt.Errorf("config environment: %w", err)
	}
	cfg := base
	if err := decode(k, &cfg); err != nil {
		if path != "" {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// envKey maps KBS_HTTP_SERVER__INSECURE_HTTP to http_server.insecure_http.
// A comma-separated value sets a list. Every setting lives in a section,
// so a variable without "__" is not a setting (KBS_URL, KBS_CONFIG_FILE and
// the like belong to other tools) and is left alone.
func envKey(k, v string) (string, any) {
	if !strings.Contains(k, "__") {
		return "", nil
	}
	key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, EnvPrefix), "__", "."))
	if strings.Contains(v, ",") {
		return key, strings.Split(v, ",")
	}
	return key, v
}

func decode(k *koanf.Koanf, cfg *Config) error {
	return k.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				mapstructure.StringToTimeDurationHookFunc(),
				mapstructure.StringToSliceHookFunc(","),
			),
			// ErrorUnused makes an unknown key an error that names it.
			ErrorUnused:      true,
			WeaklyTypedInput: true,
			Result:           cfg,
			TagName:          "koanf",
		},
	})
}

// Validate checks the settings that would otherwise fail late.
func (c *Config) Validate() error {
	var errs []error
	if len(c.HTTPServer.Sockets) == 0 {
		errs = append(errs, errors.New("http_server.sockets: at least one address is required"))
	}
	for _, s := range c.HTTPServer.Sockets {
		if _, _, err := net.SplitHostPort(s); err != nil {
			errs = append(errs, fmt.Errorf("http_server.sockets: %q: %w", s, err))
		}
	}
	if !c.HTTPServer.InsecureHTTP && (c.HTTPServer.PrivateKey == "" || c.HTTPServer.Certificate == "") {
		errs = append(errs, errors.New("http_server: set private_key and certificate, or insecure_http = true"))
	}
	if c.HTTPServer.PayloadRequestSize <= 0 {
		errs = append(errs, errors.New("http_server.payload_request_size must be a positive number of MiB"))
	}
	if c.Session.Timeout <= 0 {
		errs = append(errs, errors.New("session.timeout must be positive"))
	}
	if c.Plugins.GOMAXPROCS < 0 {
		errs = append(errs, errors.New("plugins.gomaxprocs must be 0 (half the host's CPUs) or a positive number"))
	}
	if c.Session.AuthRate < 0 {
		errs = append(errs, errors.New("session.auth_rate must be 0 (no limit) or a positive rate per second"))
	}
	if c.Session.AuthRate > 0 && c.Session.AuthBurst < 1 {
		errs = append(errs, errors.New("session.auth_burst must be at least 1 when session.auth_rate is set"))
	}
	if a := c.Debug.PprofListen; a != "" {
		if host, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("debug.pprof_listen: %q: %w", a, err))
		} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			errs = append(errs, fmt.Errorf("debug.pprof_listen: %q is not a loopback address: the profiler must not be reachable from the network", a))
		}
	}
	if c.ResourceCache.TTL < 0 {
		errs = append(errs, errors.New("resource_cache.ttl must be 0 (no cache) or positive"))
	}
	if c.ResourceCache.MaxEntries < 0 {
		errs = append(errs, errors.New("resource_cache.max_entries must be 0 (no cache) or positive"))
	}
	if c.ResourceCache.MaxBytes < 0 {
		errs = append(errs, errors.New("resource_cache.max_bytes must be 0 (no cache) or a positive number of bytes"))
	}
	if c.Session.MaxSessions <= 0 {
		errs = append(errs, errors.New("session.max_sessions must be positive"))
	}
	if c.Plugins.Dir == "" {
		errs = append(errs, errors.New("plugins.dir is required"))
	}
	for kind, specs := range map[string][]PluginSpec{"verifier": c.Plugins.Verifier, "resource": c.Plugins.Resource} {
		for i, s := range specs {
			if s.Name == "" {
				errs = append(errs, fmt.Errorf("plugins.%s[%d].name is required", kind, i))
			}
			if kind == "verifier" && len(s.Routes) > 0 {
				errs = append(errs, fmt.Errorf("plugins.verifier[%d] (%s): routes apply to resource backends only", i, s.Name))
			}
		}
	}
	if c.Plugins.Token != nil && c.Plugins.Token.Name == "" {
		errs = append(errs, errors.New("plugins.token.name is required"))
	}
	errs = append(errs, c.validateStores()...)
	return errors.Join(errs...)
}

// validateStores checks [storage] and the session store, and normalises
// the store types to lower case.
func (c *Config) validateStores() []error {
	var errs []error
	st, ss := &c.Storage, &c.Session
	st.StorageType = strings.ToLower(st.StorageType)
	ss.StorageType = strings.ToLower(ss.StorageType)
	switch st.StorageType {
	case StorageBolt:
		if st.Dir == "" {
			errs = append(errs, errors.New("storage.dir is required: policies and reference values are kept there"))
		} else if fi, err := os.Stat(st.Dir); err == nil && !fi.IsDir() {
			errs = append(errs, fmt.Errorf("storage.dir %s is not a directory", st.Dir))
		}
	case StorageRedis:
	default:
		errs = append(errs, fmt.Errorf("storage.storage_type %q: use %q or %q", st.StorageType, StorageBolt, StorageRedis))
	}
	switch ss.StorageType {
	case SessionMemory, SessionRedis:
	default:
		errs = append(errs, fmt.Errorf("session.storage_type %q: use %q or %q", ss.StorageType, SessionMemory, SessionRedis))
	}
	if st.StorageType == StorageRedis || ss.StorageType == SessionRedis {
		switch {
		case st.RedisURL == "":
			errs = append(errs, errors.New("storage.redis_url is required when the state or the sessions are kept in redis"))
		case !strings.HasPrefix(st.RedisURL, "redis://") && !strings.HasPrefix(st.RedisURL, "rediss://") && !strings.HasPrefix(st.RedisURL, "unix://"):
			errs = append(errs, errors.New("storage.redis_url must start with redis://, rediss:// or unix://"))
		}
	}
	if st.Timeout <= 0 {
		errs = append(errs, errors.New("storage.timeout must be positive"))
	}
	if st.RefreshInterval <= 0 {
		errs = append(errs, errors.New("storage.refresh_interval must be positive"))
	}
	at := c.AttestationToken
	if at.JWKSTimeout <= 0 || at.JWKSMinRefresh <= 0 || at.JWKSMaxAge <= 0 {
		errs = append(errs, errors.New("attestation_token: jwks_timeout, jwks_min_refresh and jwks_max_age must be positive"))
	}
	return errs
}
