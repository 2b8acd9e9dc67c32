// Package akv is a resource backend that keeps resources as Azure Key Vault
// secrets, one secret per repo/type/tag (see SecretName for the mapping).
//
// It authenticates with azidentity (workload identity, managed identity or
// a client secret, from the plugin's own settings: the host does not pass
// its environment to plugins), reads through a short in-memory cache, and
// refuses writes unless configured to allow them.
package akv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
)

// Base64ContentType marks a secret whose value is the standard base64 of
// the resource's bytes: Key Vault values are strings, and resources that
// are not UTF-8 text are stored this way.
const Base64ContentType = "application/octet-stream;base64"

// Credential kinds.
const (
	CredentialChain            = "chain"
	CredentialWorkloadIdentity = "workload_identity"
	CredentialManagedIdentity  = "managed_identity"
	CredentialClientSecret     = "client_secret"
)

// Config is the plugin's settings.
type Config struct {
	// VaultURL is the vault, e.g. https://myvault.vault.azure.net.
	VaultURL string `json:"vault_url"`
	// Credential is chain (default), workload_identity, managed_identity or
	// client_secret.
	Credential string `json:"credential"`
	// TenantID and ClientID identify the application (workload identity,
	// client secret) or the user-assigned managed identity (ClientID only).
	TenantID string `json:"tenant_id"`
	ClientID string `json:"client_id"`
	// ClientSecretFile holds the application's client secret.
	ClientSecretFile string `json:"client_secret_file"`
	// FederatedTokenFile is the projected service account token of
	// workload identity (AZURE_FEDERATED_TOKEN_FILE in a pod); it is read
	// again at each token request, so rotations are picked up.
	FederatedTokenFile string `json:"federated_token_file"`
	// AuthorityHost is the Microsoft Entra endpoint; default the public
	// cloud's https://login.microsoftonline.com/.
	AuthorityHost string `json:"authority_host"`
	// DisableInstanceDiscovery skips Microsoft Entra's instance discovery,
	// which always asks the public cloud: set it for an authority_host in a
	// disconnected or private cloud.
	DisableInstanceDiscovery bool `json:"disable_instance_discovery"`
	// CAFile is a PEM bundle trusted besides the system roots, for a vault
	// or authority behind a private CA.
	CAFile string `json:"ca_file"`
	// DisableChallengeResourceVerification accepts an auth challenge whose
	// resource is not the vault's domain (vaults behind a custom domain).
	DisableChallengeResourceVerification bool `json:"disable_challenge_resource_verification"`
	// NamePrefix is put before every secret name, so that one vault can
	// hold other secrets (or several brokers' resources).
	NamePrefix string `json:"name_prefix"`
	// CacheTTL is how long a read value is served from memory; 0 disables
	// the cache. Default 30s.
	CacheTTL *Duration `json:"cache_ttl"`
	// Timeout bounds every call to Key Vault, retries and token requests
	// included. Default 10s.
	Timeout *Duration `json:"timeout"`
	// Writable allows Put and Delete; default false (read-only).
	Writable bool `json:"writable"`
}

// Duration is a setting written as a Go duration string ("10s").
type Duration = sdk.Duration

const (
	defaultCacheTTL = 30 * time.Second
	defaultTimeout  = 10 * time.Second
)

// Backend is the Key Vault resource backend. The zero value refuses every
// call until Configure succeeds.
type Backend struct {
	st atomic.Pointer[state]
}

type state struct {
	client   *azsecrets.Client
	vault    string // host, for messages
	prefix   string
	writable bool
	timeout  time.Duration
	cache    *cache
}

var (
	_ resource.Backend = (*Backend)(nil)
	_ sdk.Configurer   = (*Backend)(nil)
)

// New returns an unconfigured backend.
func New() *Backend { return &Backend{} }

// Configure checks the settings and builds the client. It does not contact
// Key Vault: the broker starts even while the vault is unreachable, and
// requests then fail as unavailable.
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
	sdk.Logger().Info("key vault backend configured", "vault", st.vault, "credential", credentialName(cfg),
		"writable", st.writable, "cache_ttl", st.cache.ttl.String(), "name_prefix", st.prefix)
	return nil
}

func credentialName(cfg Config) string {
	if cfg.Credential == "" {
		return CredentialChain
	}
	return cfg.Credential
}

func newState(cfg Config) (*state, error) {
	u, err := url.Parse(cfg.VaultURL)
	if cfg.VaultURL == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, sdk.InvalidArgument("akv settings: vault_url must be an https URL such as https://myvault.vault.azure.net")
	}
	for _, c := range cfg.NamePrefix {
		if !(c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return nil, sdk.InvalidArgument("akv settings: name_prefix may hold only letters, digits and dashes")
		}
	}
	st := &state{vault: u.Host, prefix: cfg.NamePrefix, writable: cfg.Writable, timeout: defaultTimeout}
	if cfg.Timeout != nil {
		if *cfg.Timeout == 0 {
			return nil, sdk.InvalidArgument("akv settings: timeout must be positive")
		}
		st.timeout = time.Duration(*cfg.Timeout)
	}
	ttl := defaultCacheTTL
	if cfg.CacheTTL != nil {
		ttl = time.Duration(*cfg.CacheTTL)
	}
	st.cache = newCache(ttl, 4096)

	opts := azcore.ClientOptions{
		Retry: policy.RetryOptions{MaxRetries: 2, TryTimeout: st.timeout, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: 2 * time.Second},
		// Key Vault's responses never go to the log: azcore logs only when
		// a listener is set, and none is.
		Logging: policy.LogOptions{},
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the plugin has no environment; be explicit about it
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, sdk.InvalidArgument("akv settings: ca_file: %v", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, sdk.InvalidArgument("akv settings: ca_file %s holds no PEM certificate", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	opts.Transport = &http.Client{Transport: tr, Timeout: st.timeout}
	if cfg.AuthorityHost != "" {
		a, err := url.Parse(cfg.AuthorityHost)
		if err != nil || a.Scheme != "https" || a.Host == "" {
			return nil, sdk.InvalidArgument("akv settings: authority_host must be an https URL")
		}
		opts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: cfg.AuthorityHost, Services: map[cloud.ServiceName]cloud.ServiceConfiguration{}}
	} else {
		opts.Cloud = cloud.AzurePublic
	}
	cred, err := credential(cfg, opts)
	if err != nil {
		return nil, err
	}
	st.client, err = azsecrets.NewClient(strings.TrimRight(cfg.VaultURL, "/"), cred, &azsecrets.ClientOptions{
		ClientOptions:                        opts,
		DisableChallengeResourceVerification: cfg.DisableChallengeResourceVerification,
	})
	if err != nil {
		return nil, sdk.InvalidArgument("akv settings: %v", err)
	}
	return st, nil
}

// credential builds the configured credential. The chain tries workload
// identity (when a federated token file is set), then the client secret
// (when a secret file is set), then managed identity: the order of
// azidentity's default chain, without its environment lookups.
func credential(cfg Config, opts azcore.ClientOptions) (azcore.TokenCredential, error) {
	kind := credentialName(cfg)
	var creds []azcore.TokenCredential
	want := func(k string) bool { return kind == k || kind == CredentialChain }
	if want(CredentialWorkloadIdentity) && (cfg.FederatedTokenFile != "" || kind == CredentialWorkloadIdentity) {
		if cfg.FederatedTokenFile == "" || cfg.TenantID == "" || cfg.ClientID == "" {
			return nil, sdk.InvalidArgument("akv settings: workload_identity needs tenant_id, client_id and federated_token_file")
		}
		c, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: opts, TenantID: cfg.TenantID, ClientID: cfg.ClientID, TokenFilePath: cfg.FederatedTokenFile,
			DisableInstanceDiscovery: cfg.DisableInstanceDiscovery,
		})
		if err != nil {
			return nil, sdk.InvalidArgument("akv settings: workload identity: %v", err)
		}
		creds = append(creds, c)
	}
	if want(CredentialClientSecret) && (cfg.ClientSecretFile != "" || kind == CredentialClientSecret) {
		if cfg.ClientSecretFile == "" || cfg.TenantID == "" || cfg.ClientID == "" {
			return nil, sdk.InvalidArgument("akv settings: client_secret needs tenant_id, client_id and client_secret_file")
		}
		raw, err := os.ReadFile(cfg.ClientSecretFile)
		if err != nil {
			return nil, sdk.InvalidArgument("akv settings: client_secret_file: %v", errors.Unwrap(err))
		}
		secret := strings.TrimSpace(string(raw))
		if secret == "" {
			return nil, sdk.InvalidArgument("akv settings: client_secret_file is empty")
		}
		c, err := azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, secret, &azidentity.ClientSecretCredentialOptions{
			ClientOptions: opts, DisableInstanceDiscovery: cfg.DisableInstanceDiscovery,
		})
		if err != nil {
			return nil, sdk.InvalidArgument("akv settings: client secret credential: %v", err)
		}
		creds = append(creds, c)
	}
	if want(CredentialManagedIdentity) {
		mo := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if cfg.ClientID != "" && kind == CredentialManagedIdentity {
			mo.ID = azidentity.ClientID(cfg.ClientID)
		}
		c, err := azidentity.NewManagedIdentityCredential(mo)
		if err != nil {
			return nil, sdk.InvalidArgument("akv settings: managed identity: %v", err)
		}
		creds = append(creds, c)
	}
	switch {
	case len(creds) == 0:
		return nil, sdk.InvalidArgument("akv settings: credential %q is not one of chain, workload_identity, managed_identity, client_secret", kind)
	case len(creds) == 1:
		return creds[0], nil
	}
	c, err := azidentity.NewChainedTokenCredential(creds, nil)
	if err != nil {
		return nil, sdk.InvalidArgument("akv settings: credential chain: %v", err)
	}
	return c, nil
}

func (b *Backend) state() (*state, error) {
	st := b.st.Load()
	if st == nil {
		return nil, sdk.Unavailable("akv backend: not configured")
	}
	return st, nil
}

func (b *Backend) writable() (*state, error) {
	st, err := b.state()
	if err != nil {
		return nil, err
	}
	if !st.writable {
		return nil, sdk.Unsupported("akv backend: read-only (set writable to allow writes)")
	}
	return st, nil
}

// Get returns the secret's value, from the cache while it is fresh.
func (b *Backend) Get(ctx context.Context, p resource.Path) ([]byte, error) {
	st, err := b.state()
	if err != nil {
		return nil, err
	}
	name, err := SecretName(st.prefix, p)
	if err != nil {
		return nil, err
	}
	if v, ok := st.cache.get(name); ok {
		return v, nil
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	resp, err := st.client.GetSecret(ctx, name, "", nil)
	if err != nil {
		return nil, st.classify(ctx, "reading", p, err)
	}
	if resp.Value == nil {
		return nil, sdk.Internal("resource %s: key vault returned a secret without a value", p)
	}
	data := []byte(*resp.Value)
	if resp.ContentType != nil && *resp.ContentType == Base64ContentType {
		if data, err = base64.StdEncoding.DecodeString(*resp.Value); err != nil {
			return nil, sdk.Internal("resource %s: secret %s is marked %s but is not base64", p, name, Base64ContentType)
		}
	}
	st.cache.put(name, data)
	return data, nil
}

// Put sets the secret (a new version of it). UTF-8 text is stored as is,
// so that it reads back the same through the portal, the CLI and the CSI
// driver; other bytes are stored base64 with Base64ContentType.
func (b *Backend) Put(ctx context.Context, p resource.Path, data []byte) error {
	st, err := b.writable()
	if err != nil {
		return err
	}
	name, err := SecretName(st.prefix, p)
	if err != nil {
		return err
	}
	params := azsecrets.SetSecretParameters{}
	if utf8.Valid(data) {
		v := string(data)
		params.Value = &v
	} else {
		v, ct := base64.StdEncoding.EncodeToString(data), Base64ContentType
		params.Value, params.ContentType = &v, &ct
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	st.cache.drop(name)
	defer st.cache.drop(name)
	_, err = st.client.SetSecret(ctx, name, params, nil)
	if isConflict(err) {
		// Deleting a secret only soft-deletes it, and its name stays taken
		// until it is recovered or purged. Recover it (purging needs a
		// permission few deployments grant, and is refused by purge
		// protection), then set the new value as its latest version.
		err = st.recoverAndSet(ctx, name, params)
	}
	if err != nil {
		return st.classify(ctx, "writing", p, err)
	}
	return nil
}

func isConflict(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusConflict
}

func (st *state) recoverAndSet(ctx context.Context, name string, params azsecrets.SetSecretParameters) error {
	if _, err := st.client.RecoverDeletedSecret(ctx, name, nil); err != nil {
		return err
	}
	// Recovery completes asynchronously: the name stays in conflict for a
	// moment.
	delay := 100 * time.Millisecond
	for {
		_, err := st.client.SetSecret(ctx, name, params, nil)
		if !isConflict(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// Delete deletes the secret. Key Vault keeps it soft-deleted for its
// retention period; a later Put of the same path recovers and overwrites it.
func (b *Backend) Delete(ctx context.Context, p resource.Path) error {
	st, err := b.writable()
	if err != nil {
		return err
	}
	name, err := SecretName(st.prefix, p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	st.cache.drop(name)
	if _, err := st.client.DeleteSecret(ctx, name, nil); err != nil {
		return st.classify(ctx, "deleting", p, err)
	}
	return nil
}

// List returns the resources whose secret names SecretName produces; other
// secrets in the vault, and certificate-backed secrets, are skipped.
func (b *Backend) List(ctx context.Context, repo string) ([]resource.Path, error) {
	st, err := b.state()
	if err != nil {
		return nil, err
	}
	if repo != "" {
		if err := resource.ValidateSegment(repo); err != nil {
			return nil, sdk.InvalidArgument("repo: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	var out []resource.Path
	pager := st.client.NewListSecretPropertiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, st.classify(ctx, "listing", resource.Path{}, err)
		}
		for _, sp := range page.Value {
			if sp == nil || sp.ID == nil || (sp.Managed != nil && *sp.Managed) {
				continue
			}
			p, ok := ParseSecretName(st.prefix, sp.ID.Name())
			if ok && (repo == "" || p.Repo == repo) {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// classify turns a Key Vault or token error into the SDK's classes. The
// messages name the vault and the resource, never a credential.
func (st *state) classify(ctx context.Context, op string, p resource.Path, err error) error {
	what := "resource " + p.String()
	if p == (resource.Path{}) {
		what = "resources"
	}
	var re *azcore.ResponseError
	var afe *azidentity.AuthenticationFailedError
	switch {
	case errors.As(err, &afe):
		return sdk.Unavailable("key vault %s: %s %s: authentication failed: %s; check the credential settings",
			st.vault, op, what, authError(afe))
	case errors.As(err, &re):
		switch {
		case re.StatusCode == http.StatusNotFound:
			return sdk.NotFound("%s not found", what)
		case re.StatusCode == http.StatusBadRequest:
			return sdk.InvalidArgument("key vault %s: %s %s: %s", st.vault, op, what, re.ErrorCode)
		case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
			return sdk.Unavailable("key vault %s: %s %s: access denied (HTTP %d %s); check the identity's secret permissions",
				st.vault, op, what, re.StatusCode, re.ErrorCode)
		case re.StatusCode == http.StatusTooManyRequests || re.StatusCode >= 500:
			return sdk.Unavailable("key vault %s: %s %s: HTTP %d %s", st.vault, op, what, re.StatusCode, re.ErrorCode)
		}
		return sdk.Internal("key vault %s: %s %s: HTTP %d %s", st.vault, op, what, re.StatusCode, re.ErrorCode)
	case ctx.Err() != nil:
		return sdk.Unavailable("key vault %s: %s %s: no answer within %s", st.vault, op, what, st.timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return sdk.Unavailable("key vault %s: %s %s: unreachable: %v", st.vault, op, what, ue.Err)
	}
	// The auth challenge policy's errors (a challenge for another domain:
	// see disable_challenge_resource_verification).
	return sdk.Unavailable("key vault %s: %s %s: %v", st.vault, op, what, err)
}

// authError summarises a token failure: the HTTP status and Entra's error
// code (AADSTS7000215 is a wrong client secret), or the first line of the
// SDK's message when no response came. Neither holds a credential.
func authError(afe *azidentity.AuthenticationFailedError) string {
	if afe.RawResponse == nil {
		msg, _, _ := strings.Cut(afe.Error(), "\n")
		return msg
	}
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if raw, err := runtime.Payload(afe.RawResponse); err == nil {
		_ = json.Unmarshal(raw, &body)
	}
	code, _, _ := strings.Cut(body.Description, ":")
	if !strings.HasPrefix(code, "AADSTS") {
		code = ""
	}
	return strings.TrimSpace(fmt.Sprintf("token endpoint answered HTTP %d %s %s", afe.RawResponse.StatusCode, body.Error, code))
}
