// Package vault is a resource backend that keeps resources in a HashiCorp
// Vault (or OpenBao) KV secrets engine, version 1 or 2, at trustee's path:
// <mount>/<repo>/<type>/<tag>, in the field "data".
package vault

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/vault/api"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
)

// Config is the plugin's settings. vault_url, token, mount_path and
// ca_certs are named as in trustee's Vault backend.
type Config struct {
	// VaultURL is the server, e.g. https://vault.example.com:8200.
	VaultURL string `json:"vault_url"`
	// MountPath is the KV engine's mount; default "secret".
	MountPath string `json:"mount_path"`
	// KVVersion is the engine's version, 1 (default, as trustee) or 2.
	KVVersion int `json:"kv_version"`
	// Namespace is a Vault Enterprise namespace (X-Vault-Namespace).
	Namespace string `json:"namespace"`
	// Token or TokenFile authenticate with a token; AppRole with a role.
	// Exactly one of the three.
	Token     string   `json:"token"`
	TokenFile string   `json:"token_file"`
	AppRole   *AppRole `json:"approle"`
	// CACerts are PEM files trusted for the server's certificate, instead
	// of the system roots.
	CACerts []string `json:"ca_certs"`
	// Timeout bounds every call, retries and logins included. Default 10s.
	Timeout *Duration `json:"timeout"`
	// ReadOnly refuses Put and Delete.
	ReadOnly bool `json:"read_only"`
}

// AppRole is the AppRole auth method's login.
type AppRole struct {
	// MountPath of the auth method; default "approle".
	MountPath    string `json:"mount_path"`
	RoleID       string `json:"role_id"`
	SecretIDFile string `json:"secret_id_file"`
}

// Duration is a setting written as a Go duration string ("10s").
type Duration = sdk.Duration

const defaultTimeout = 10 * time.Second

// Backend is the Vault resource backend. The zero value refuses every call
// until Configure succeeds.
type Backend struct {
	st atomic.Pointer[state]
}

type state struct {
	client   *api.Client
	server   string // host, for messages
	mount    string
	v2       bool
	readOnly bool
	timeout  time.Duration

	// AppRole: the login client (no token) and credentials; mu serialises
	// logins so that an expired token causes one, not one per request.
	login    *api.Client
	approle  *AppRole
	secretID string
	mu       sync.Mutex
}

var (
	_ resource.Backend = (*Backend)(nil)
	_ sdk.Configurer   = (*Backend)(nil)
)

// New returns an unconfigured backend.
func New() *Backend { return &Backend{} }

// Configure checks the settings and builds the client. It does not contact
// Vault (AppRole logs in at the first request), so the broker starts while
// Vault is down.
func (b *Backend) Configure(_ context.Context, config []byte) error {
	var cfg Config
	if err := sdk.DecodeConfig(config, &cfg); err != nil {
		return err
	}
	st, err := newState(cfg)
	if err != nil {
		return err
	}
	b.st.Store(st)
	auth, kv := "token", 1
	if st.approle != nil {
		auth = "approle"
	}
	if st.v2 {
		kv = 2
	}
	sdk.Logger().Info("vault backend configured", "server", st.server, "mount", st.mount, "kv_version", kv,
		"auth", auth, "read_only", st.readOnly)
	return nil
}

func newState(cfg Config) (*state, error) {
	u, err := url.Parse(cfg.VaultURL)
	if cfg.VaultURL == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, sdk.InvalidArgument("vault settings: vault_url must be an http(s) URL such as https://vault.example.com:8200")
	}
	st := &state{server: u.Host, mount: strings.Trim(cfg.MountPath, "/"), readOnly: cfg.ReadOnly, timeout: defaultTimeout}
	if st.mount == "" {
		st.mount = "secret"
	}
	for _, seg := range strings.Split(st.mount, "/") {
		if resource.ValidateSegment(seg) != nil {
			return nil, sdk.InvalidArgument("vault settings: mount_path %q is not a valid path", cfg.MountPath)
		}
	}
	switch cfg.KVVersion {
	case 0, 1:
	case 2:
		st.v2 = true
	default:
		return nil, sdk.InvalidArgument("vault settings: kv_version must be 1 or 2")
	}
	if cfg.Timeout != nil {
		if *cfg.Timeout == 0 {
			return nil, sdk.InvalidArgument("vault settings: timeout: a zero duration would never answer")
		}
		st.timeout = time.Duration(*cfg.Timeout)
	}

	vc := api.DefaultConfig()
	vc.Address = strings.TrimRight(cfg.VaultURL, "/")
	vc.Timeout = st.timeout
	vc.MinRetryWait, vc.MaxRetryWait, vc.MaxRetries = 100*time.Millisecond, time.Second, 2
	// Retry what Vault answers as transient (5xx, 412 on a performance
	// standby), not a refused connection: retrying that only waits out the
	// timeout and hides the reason.
	vc.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if err != nil {
			return false, nil
		}
		return api.DefaultRetryPolicy(ctx, resp, err)
	}
	if t, ok := vc.HttpClient.Transport.(*http.Transport); ok {
		t.Proxy = nil // the plugin has no environment; be explicit about it
	}
	if len(cfg.CACerts) > 0 {
		var bundle []byte
		for _, f := range cfg.CACerts {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, sdk.InvalidArgument("vault settings: ca_certs: %v", err)
			}
			bundle = append(append(bundle, pem...), '\n')
		}
		if err := vc.ConfigureTLS(&api.TLSConfig{CACertBytes: bundle}); err != nil {
			return nil, sdk.InvalidArgument("vault settings: ca_certs: %v", err)
		}
	}
	st.client, err = api.NewClient(vc)
	if err != nil {
		return nil, sdk.InvalidArgument("vault settings: %v", err)
	}
	st.client.ClearToken()
	if cfg.Namespace != "" {
		st.client.SetNamespace(cfg.Namespace)
	}

	n := 0
	for _, set := range []bool{cfg.Token != "", cfg.TokenFile != "", cfg.AppRole != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, sdk.InvalidArgument("vault settings: set exactly one of token, token_file and approle")
	}
	switch {
	case cfg.Token != "":
		st.client.SetToken(cfg.Token)
	case cfg.TokenFile != "":
		tok, err := readSecretFile("token_file", cfg.TokenFile)
		if err != nil {
			return nil, err
		}
		st.client.SetToken(tok)
	default:
		ar := *cfg.AppRole
		if ar.RoleID == "" || ar.SecretIDFile == "" {
			return nil, sdk.InvalidArgument("vault settings: approle needs role_id and secret_id_file")
		}
		if ar.MountPath = strings.Trim(ar.MountPath, "/"); ar.MountPath == "" {
			ar.MountPath = "approle"
		}
		if st.secretID, err = readSecretFile("approle.secret_id_file", ar.SecretIDFile); err != nil {
			return nil, err
		}
		st.approle = &ar
		if st.login, err = st.client.Clone(); err != nil {
			return nil, sdk.InvalidArgument("vault settings: %v", err)
		}
		st.login.ClearToken()
	}
	return st, nil
}

func readSecretFile(setting, name string) (string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return "", sdk.InvalidArgument("vault settings: %s: %v", setting, errors.Unwrap(err))
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", sdk.InvalidArgument("vault settings: %s is empty", setting)
	}
	return s, nil
}

func (b *Backend) state() (*state, error) {
	st := b.st.Load()
	if st == nil {
		return nil, sdk.Unavailable("vault backend: not configured")
	}
	return st, nil
}

func (b *Backend) writable() (*state, error) {
	st, err := b.state()
	if err != nil {
		return nil, err
	}
	if st.readOnly {
		return nil, sdk.Unsupported("vault backend: read-only")
	}
	return st, nil
}

// dataPath is where a resource's value is read and written; metaPath is
// where it is listed and (KV v2) deleted.
func (st *state) dataPath(p resource.Path) string {
	if st.v2 {
		return st.mount + "/data/" + p.String()
	}
	return st.mount + "/" + p.String()
}

func (st *state) metaPath(rel string) string {
	if st.v2 {
		return st.mount + "/metadata/" + rel
	}
	return st.mount + "/" + rel
}

// do runs call with a valid token: with AppRole it logs in first when it
// has no token, and once more when Vault refuses the token (it expired).
func (st *state) do(ctx context.Context, call func() error) error {
	if st.approle == nil {
		return call()
	}
	tok := st.client.Token()
	if tok == "" {
		if err := st.relogin(ctx, ""); err != nil {
			return err
		}
		tok = st.client.Token()
	}
	err := call()
	var re *api.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
		if err := st.relogin(ctx, tok); err != nil {
			return err
		}
		err = call()
	}
	return err
}

// relogin logs in unless another request already replaced stale.
func (st *state) relogin(ctx context.Context, stale string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if cur := st.client.Token(); cur != "" && cur != stale {
		return nil
	}
	sec, err := st.login.Logical().WriteWithContext(ctx, "auth/"+st.approle.MountPath+"/login",
		map[string]any{"role_id": st.approle.RoleID, "secret_id": st.secretID})
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) {
			return sdk.Unavailable("vault %s: approle login refused (HTTP %d: %s); check role_id and secret_id",
				st.server, re.StatusCode, strings.Join(re.Errors, "; "))
		}
		return st.classify(ctx, "logging in", "with approle", err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return sdk.Unavailable("vault %s: approle login returned no token", st.server)
	}
	st.client.SetToken(sec.Auth.ClientToken)
	sdk.Logger().Debug("vault approle login", "server", st.server, "ttl_seconds", sec.Auth.LeaseDuration)
	return nil
}

// Get reads the resource's field "data".
func (b *Backend) Get(ctx context.Context, p resource.Path) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	st, err := b.state()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	var sec *api.Secret
	err = st.do(ctx, func() (err error) {
		sec, err = st.client.Logical().ReadWithContext(ctx, st.dataPath(p))
		return err
	})
	if err != nil {
		return nil, st.classify(ctx, "reading", "resource "+p.String(), err)
	}
	fields, err := st.fields(p, sec)
	if err != nil {
		return nil, err
	}
	return decode(p, fields)
}

// fields returns the key/value pairs stored at a path, nil when there is
// nothing (never written, deleted, or a KV v2 version soft-deleted).
func (st *state) fields(p resource.Path, sec *api.Secret) (map[string]any, error) {
	if sec != nil && sec.Data == nil && len(sec.Warnings) > 0 {
		// Vault explains a v1 request to a v2 mount (and the like) this way.
		return nil, sdk.Internal("vault %s: reading resource %s: %s (check mount_path and kv_version)",
			st.server, p, strings.Join(sec.Warnings, "; "))
	}
	if sec == nil || sec.Data == nil {
		return nil, sdk.NotFound("resource %s not found", p)
	}
	if !st.v2 {
		return sec.Data, nil
	}
	inner, _ := sec.Data["data"].(map[string]any)
	if inner == nil {
		return nil, sdk.NotFound("resource %s not found", p)
	}
	return inner, nil
}

// Field names: trustee keeps the value in "data" as a string. Values that
// are not UTF-8 are stored base64 and marked with encoding=base64.
const (
	fieldData     = "data"
	fieldEncoding = "encoding"
	encBase64     = "base64"
)

func decode(p resource.Path, fields map[string]any) ([]byte, error) {
	v, ok := fields[fieldData].(string)
	if !ok {
		return nil, sdk.Internal("resource %s: the Vault secret has no string field %q", p, fieldData)
	}
	switch enc, _ := fields[fieldEncoding].(string); enc {
	case "":
		return []byte(v), nil
	case encBase64:
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, sdk.Internal("resource %s: field %q is marked base64 but is not", p, fieldData)
		}
		return b, nil
	default:
		return nil, sdk.Internal("resource %s: unknown encoding %q", p, enc)
	}
}

func encode(data []byte) map[string]any {
	if utf8.Valid(data) {
		return map[string]any{fieldData: string(data)}
	}
	return map[string]any{fieldData: base64.StdEncoding.EncodeToString(data), fieldEncoding: encBase64}
}

// Put writes the resource (a new version on KV v2).
func (b *Backend) Put(ctx context.Context, p resource.Path, data []byte) error {
	if err := p.Validate(); err != nil {
		return err
	}
	st, err := b.writable()
	if err != nil {
		return err
	}
	body := encode(data)
	if st.v2 {
		body = map[string]any{"data": body}
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	err = st.do(ctx, func() error {
		_, err := st.client.Logical().WriteWithContext(ctx, st.dataPath(p), body)
		return err
	})
	return st.classify(ctx, "writing", "resource "+p.String(), err)
}

// Delete removes the resource: on KV v2 every version and the metadata,
// so that it is gone from List too. Vault's deletes succeed for missing
// paths, so existence is checked first to report not_found.
func (b *Backend) Delete(ctx context.Context, p resource.Path) error {
	if err := p.Validate(); err != nil {
		return err
	}
	st, err := b.writable()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	what := "resource " + p.String()
	var sec *api.Secret
	err = st.do(ctx, func() (err error) {
		if st.v2 {
			sec, err = st.client.Logical().ReadWithContext(ctx, st.metaPath(p.String()))
		} else {
			sec, err = st.client.Logical().ReadWithContext(ctx, st.dataPath(p))
		}
		return err
	})
	if err != nil {
		return st.classify(ctx, "deleting", what, err)
	}
	if sec == nil || sec.Data == nil {
		return sdk.NotFound("%s not found", what)
	}
	err = st.do(ctx, func() error {
		_, err := st.client.Logical().DeleteWithContext(ctx, st.metaPath(p.String()))
		return err
	})
	return st.classify(ctx, "deleting", what, err)
}

// List walks the mount three levels deep (repos, types, tags), keeping
// names that are valid path segments.
func (b *Backend) List(ctx context.Context, repo string) ([]resource.Path, error) {
	st, err := b.state()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	repos := []string{repo}
	if repo == "" {
		if repos, err = st.list(ctx, ""); err != nil {
			return nil, err
		}
	} else if err := resource.ValidateSegment(repo); err != nil {
		return nil, sdk.InvalidArgument("repo: %v", err)
	}
	var out []resource.Path
	for _, r := range repos {
		types, err := st.list(ctx, r+"/")
		if err != nil {
			return nil, err
		}
		for _, t := range types {
			tags, err := st.list(ctx, r+"/"+t+"/")
			if err != nil {
				return nil, err
			}
			for _, tag := range tags {
				out = append(out, resource.Path{Repo: r, Type: t, Tag: tag})
			}
		}
	}
	return out, nil
}

// list returns the valid sub-directories of rel, or, at tag level (rel
// holds two slashes), the valid leaves.
func (st *state) list(ctx context.Context, rel string) ([]string, error) {
	var sec *api.Secret
	err := st.do(ctx, func() (err error) {
		sec, err = st.client.Logical().ListWithContext(ctx, st.metaPath(rel))
		return err
	})
	if err != nil {
		return nil, st.classify(ctx, "listing", "resources", err)
	}
	if sec == nil || sec.Data == nil {
		return nil, nil
	}
	keys, _ := sec.Data["keys"].([]any)
	leaves := strings.Count(rel, "/") == 2
	var out []string
	for _, k := range keys {
		s, _ := k.(string)
		name, isDir := strings.CutSuffix(s, "/")
		if isDir == leaves || resource.ValidateSegment(name) != nil {
			continue
		}
		out = append(out, name)
	}
	return out, nil
}

// classify turns a Vault client error into the SDK's classes. Vault's
// messages name paths and reasons, never the token.
func (st *state) classify(ctx context.Context, op, what string, err error) error {
	if err == nil {
		return nil
	}
	var se *sdk.Error
	if errors.As(err, &se) {
		return err
	}
	var re *api.ResponseError
	switch {
	case errors.As(err, &re):
		reason := strings.Join(re.Errors, "; ")
		switch {
		case re.StatusCode == http.StatusNotFound:
			return sdk.NotFound("%s not found", what)
		case re.StatusCode == http.StatusBadRequest:
			return sdk.InvalidArgument("vault %s: %s %s: %s", st.server, op, what, reason)
		case re.StatusCode == http.StatusForbidden:
			return sdk.Unavailable("vault %s: %s %s: permission denied; check the token's policy for %s", st.server, op, what, st.mount)
		case re.StatusCode == http.StatusTooManyRequests || re.StatusCode >= 500:
			return sdk.Unavailable("vault %s: %s %s: HTTP %d: %s", st.server, op, what, re.StatusCode, reason)
		}
		return sdk.Internal("vault %s: %s %s: HTTP %d: %s", st.server, op, what, re.StatusCode, reason)
	case ctx.Err() != nil:
		return sdk.Unavailable("vault %s: %s %s: no answer within %s", st.server, op, what, st.timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return sdk.Unavailable("vault %s: %s %s: unreachable: %v", st.server, op, what, ue.Err)
	}
	return sdk.Unavailable("vault %s: %s %s: %v", st.server, op, what, err)
}
