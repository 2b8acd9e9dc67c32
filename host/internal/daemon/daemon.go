// Package daemon assembles kbs-host from its configuration: the plugin
// manager, the session store, token trust, policies and the HTTP server,
// and runs it until its context ends.
package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gokbs/kbs/host/internal/admin"
	"github.com/gokbs/kbs/host/internal/adminauth"
	"github.com/gokbs/kbs/host/internal/api"
	"github.com/gokbs/kbs/host/internal/config"
	"github.com/gokbs/kbs/host/internal/metrics"
	"github.com/gokbs/kbs/host/internal/plugins"
	"github.com/gokbs/kbs/host/internal/protocol"
	"github.com/gokbs/kbs/host/internal/rescache"
	"github.com/gokbs/kbs/host/internal/session"
	"github.com/gokbs/kbs/host/internal/tokens"
	"github.com/gokbs/kbs/host/internal/tokenverify"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/token"
)

// Daemon is a configured, running broker.
type Daemon struct {
	cfg      *config.Config
	log      hclog.Logger
	plugins  *plugins.Manager
	sessions session.Store
	server   *http.Server
	closers  []func()
}

// New starts the plugins and builds the broker; call Serve to listen.
func New(ctx context.Context, cfg *config.Config, log hclog.Logger) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: log}
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	specs, err := pluginSpecs(cfg)
	if err != nil {
		return nil, err
	}
	m := metrics.New()
	d.plugins, err = plugins.New(ctx, plugins.Options{
		Dir:          cfg.Plugins.Dir,
		StartTimeout: cfg.Plugins.StartTimeout,
		CallTimeout:  cfg.Plugins.CallTimeout,
		GOMAXPROCS:   cfg.Plugins.GOMAXPROCS,
		Logger:       log,
		OnCall:       m.PluginCall,
	}, specs)
	if err != nil {
		return nil, fmt.Errorf("starting plugins: %w", err)
	}
	d.closers = append(d.closers, func() { _ = d.plugins.Close() })

	tv, err := d.tokenVerifier(ctx)
	if err != nil {
		return nil, err
	}
	rc, err := openRedis(cfg, log)
	if err != nil {
		return nil, err
	}
	if rc != nil {
		d.closers = append(d.closers, func() { _ = rc.Close() })
	}
	var closeSessions func()
	d.sessions, closeSessions = newSessions(cfg, rc)
	d.closers = append(d.closers, closeSessions)
	d.watch(m)

	audit, closeAudit, err := auditLogger(cfg, log)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, closeAudit)
	pol, err := newPolicies(ctx, cfg, rc, log)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, pol.Close)
	adm, err := newAdmin(ctx, cfg, pol, audit, log)
	if err != nil {
		return nil, err
	}
	cache, err := resourceCache(cfg, log)
	if err != nil {
		return nil, err
	}
	if cache != nil {
		// Clears the values held, so that no secret outlives the broker's
		// shutdown in memory longer than it must.
		d.closers = append(d.closers, cache.Close)
	}
	svc := &protocol.Service{
		Plugins:        d.plugins,
		Sessions:       d.sessions,
		Tokens:         tv,
		Appraiser:      pol.appraiser,
		ResourcePolicy: pol.resources,
		SessionTimeout: cfg.Session.Timeout,
		Log:            log.Named("protocol"),
		Audit:          audit,
		Observe:        m,
		Cache:          cache,
	}
	srv := &api.Server{
		Protocol:  svc,
		Ready:     d.readiness(pol),
		Admin:     adm,
		MaxBody:   int64(cfg.HTTPServer.PayloadRequestSize) << 20,
		Log:       log.Named("api"),
		Extra:     adm.Routes,
		Metrics:   m,
		AuthLimit: authLimiter(cfg),
	}
	d.server = &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: cfg.HTTPServer.ReadHeaderTimeout,
		ReadTimeout:       cfg.HTTPServer.ReadTimeout,
		WriteTimeout:      cfg.HTTPServer.WriteTimeout,
		MaxHeaderBytes:    cfg.HTTPServer.MaxHeaderBytes,
		ErrorLog:          log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	ok = true
	return d, nil
}

// resourceCache is the [resource_cache] in front of the resource
// backends, or nil when it is off.
func resourceCache(cfg *config.Config, log hclog.Logger) (*rescache.Cache[resource.Path], error) {
	rc := cfg.ResourceCache
	if !rc.On() {
		log.Info("resource cache off: every resource request asks its backend")
		return nil, nil
	}
	c, err := rescache.New[resource.Path](rescache.Options{TTL: rc.TTL, MaxEntries: rc.MaxEntries, MaxBytes: rc.MaxBytes})
	if err != nil {
		return nil, fmt.Errorf("resource_cache: %w", err)
	}
	log.Info("resource cache on: a value changed outside this host is served for up to ttl",
		"ttl", rc.TTL, "max_entries", rc.MaxEntries, "max_bytes", rc.MaxBytes)
	return c, nil
}

// tokenVerifier trusts the own token issuer plus [attestation_token].
func (d *Daemon) tokenVerifier(ctx context.Context) (*tokens.Verifier, error) {
	at := d.cfg.AttestationToken
	var external *tokenverify.Verifier
	if len(at.TrustedCertsPaths) > 0 || len(at.TrustedJWKSets) > 0 || at.InsecureHeaderJWK {
		if at.InsecureHeaderJWK {
			d.log.Warn("attestation_token.insecure_header_jwk is on: any self-signed token is accepted (development only)")
		}
		var err error
		external, err = tokenverify.New(tokenverify.Config{
			JWKSets:           at.TrustedJWKSets,
			CertPaths:         at.TrustedCertsPaths,
			InsecureHeaderJWK: at.InsecureHeaderJWK,
			Leeway:            at.Leeway,
			HTTPClient:        &http.Client{Timeout: at.JWKSTimeout},
			MinRefresh:        at.JWKSMinRefresh,
			MaxAge:            at.JWKSMaxAge,
		})
		if err != nil {
			return nil, fmt.Errorf("attestation_token: %w", err)
		}
	}
	var issuer tokens.IssuerSource
	if d.cfg.Plugins.Token != nil {
		issuer = func() (token.Issuer, error) { return d.plugins.TokenIssuer() }
	}
	tv, err := tokens.New(ctx, external, issuer, at.ExtraTEEKeyPaths, at.Leeway)
	if err != nil {
		return nil, fmt.Errorf("attestation_token: %w", err)
	}
	return tv, nil
}

func pluginSpecs(cfg *config.Config) ([]plugins.Spec, error) {
	var specs []plugins.Spec
	add := func(kind string, s config.PluginSpec) error {
		raw, err := json.Marshal(s.Config)
		if err != nil {
			return fmt.Errorf("plugins.%s %s: settings: %w", kind, s.Name, err)
		}
		if s.Config == nil {
			raw = nil
		}
		specs = append(specs, plugins.Spec{Kind: kind, Name: s.Name, Config: raw, Routes: s.Routes})
		return nil
	}
	for _, s := range cfg.Plugins.Verifier {
		if err := add(sdk.KindVerifier, s); err != nil {
			return nil, err
		}
	}
	for _, s := range cfg.Plugins.Resource {
		if err := add(sdk.KindResource, s); err != nil {
			return nil, err
		}
	}
	if cfg.Plugins.Token != nil {
		if err := add(sdk.KindToken, *cfg.Plugins.Token); err != nil {
			return nil, err
		}
	}
	return specs, nil
}

// newAdmin builds admin authentication and the admin endpoints.
func newAdmin(ctx context.Context, cfg *config.Config, pol *policies, audit hclog.Logger, log hclog.Logger) (*admin.Admin, error) {
	auth, err := adminauth.New(ctx, cfg.Admin)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	switch {
	case auth.Insecure():
		log.Warn("ADMIN API IS OPEN: admin mode InsecureAllowAll lets anyone who reaches the broker change resources, policies and reference values; development only")
	case auth.Mode() == adminauth.ModeDenyAll:
		log.Info("admin API disabled (DenyAll): configure [admin] to manage the broker over HTTP")
	default:
		log.Info("admin API enabled", "mode", auth.Mode())
	}
	return &admin.Admin{
		Auth:      auth,
		Policies:  pol.engine,
		RefValues: pol.refvalues,
		Audit:     audit,
		MaxBody:   int64(cfg.HTTPServer.PayloadRequestSize) << 20,
	}, nil
}

// auditLogger is the audit log: JSON lines in log.audit_file, or the main
// log under the name "audit".
func auditLogger(cfg *config.Config, log hclog.Logger) (hclog.Logger, func(), error) {
	if cfg.Log.AuditFile == "" {
		return log.Named("audit"), func() {}, nil
	}
	f, err := os.OpenFile(cfg.Log.AuditFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("log.audit_file: %w", err)
	}
	l := hclog.New(&hclog.LoggerOptions{Name: "audit", Output: f, JSONFormat: true, Level: hclog.Info})
	return l, func() { _ = f.Close() }, nil
}

// Listen opens every configured socket. It is separate from Serve so that
// a caller learns about a busy port before it says the broker is up.
func (d *Daemon) Listen() ([]net.Listener, error) {
	var lns []net.Listener
	for _, addr := range d.cfg.HTTPServer.Sockets {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, fmt.Errorf("listening on %s: %w", addr, err)
		}
		lns = append(lns, ln)
	}
	if err := d.listenPprof(); err != nil {
		for _, l := range lns {
			_ = l.Close()
		}
		return nil, err
	}
	if !d.cfg.HTTPServer.InsecureHTTP {
		cert, err := tls.LoadX509KeyPair(d.cfg.HTTPServer.Certificate, d.cfg.HTTPServer.PrivateKey)
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, fmt.Errorf("http_server TLS: %w", err)
		}
		d.server.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		for i, l := range lns {
			lns[i] = tls.NewListener(l, d.server.TLSConfig)
		}
	}
	return lns, nil
}

// Serve serves on lns until ctx ends, then shuts down gracefully and stops
// every plugin.
func (d *Daemon) Serve(ctx context.Context, lns []net.Listener) error {
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func(ln net.Listener) { errc <- d.server.Serve(ln) }(ln)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = d.server.Shutdown(shutdownCtx)
	d.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close stops the plugins and background work.
func (d *Daemon) Close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

// Plugins exposes the manager (for status output).
func (d *Daemon) Plugins() *plugins.Manager { return d.plugins }

// ensureDir creates dir with owner-only permissions.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Clean(dir), err)
	}
	return nil
}
