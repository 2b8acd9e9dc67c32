// Package adminauth authenticates and authorises calls to the admin API:
// Bearer JWTs checked against the keys the operator configured (trustee's
// three configuration generations, see Config), then role ACLs over the
// request URI.
//
// Only asymmetric signatures are accepted (EdDSA, ES256/384/512,
// RS256/384/512, PS256/384/512), each only with a key of its own type, so
// an HS256 token "signed" with a public key is refused. Every token must
// carry exp.
package adminauth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// ErrUnauthenticated is a missing, malformed, unverifiable or expired token
// (HTTP 401). ErrForbidden is a valid token whose role may not use the
// endpoint, or an admin API that is switched off (HTTP 403). Every error
// Authorize returns matches one of them with errors.Is.
var (
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrForbidden       = errors.New("forbidden")
	ErrMissingToken    = fmt.Errorf("%w: missing bearer token", ErrUnauthenticated)
)

// Leeway is the clock skew allowed on exp, nbf and iat (trustee's
// verifier allows 60 s).
const Leeway = 60 * time.Second

// Principal is who made an admin call, for the audit log.
type Principal struct {
	// Subject is the token's sub claim; when absent, the persona ID
	// (generation 2) or "admin" (generation 1). "anonymous" under
	// InsecureAllowAll.
	Subject string
	// Role is the role the ACLs were checked for: the role claim
	// (generation 3), the persona ID (generation 2), "admin" (generation 1).
	Role string
}

// Authorizer checks admin requests. It is safe for concurrent use.
type Authorizer struct {
	mode string
	// providers are tried in order; the first that verifies the token
	// decides who the caller is.
	providers []*provider
	// acls nil means every authenticated caller may use every endpoint.
	acls []acl
	now  func() time.Time
}

type acl struct {
	role    string
	re      *regexp.Regexp
	methods []string
}

// provider is one source of trusted keys plus what its tokens must say.
type provider struct {
	name     string // for messages: persona ID, "auth_public_key", key URI
	keys     *keySet
	issuer   string
	audience string
	// persona is set for generation 2: the role of whoever this key
	// verifies.
	persona string
	// needRole requires a string role claim (generation 3).
	needRole bool
}

// New builds an Authorizer from the configuration, reading every key (and
// fetching remote key sets) now, so that a bad key fails the start.
func New(ctx context.Context, cfg Config) (*Authorizer, error) {
	gens := 0
	if cfg.AuthPublicKey != "" || cfg.InsecureAPI {
		gens++
	}
	if cfg.Type != "" || len(cfg.Personas) > 0 || len(cfg.Roles) > 0 {
		gens++
	}
	if cfg.AuthorizationMode != "" || len(cfg.Authentication.BearerJWT.IdentityProviders) > 0 || len(cfg.Authorization.RegexACL.ACLs) > 0 {
		gens++
	}
	if gens > 1 {
		return nil, errors.New("admin: mixes settings of several generations (auth_public_key, type/personas, authorization_mode); use one")
	}
	a := &Authorizer{now: time.Now}
	var err error
	switch {
	case cfg.InsecureAPI:
		a.mode = ModeInsecureAllowAll
	case cfg.AuthPublicKey != "":
		err = a.initPublicKey(cfg.AuthPublicKey)
	case cfg.Type != "" || len(cfg.Personas) > 0 || len(cfg.Roles) > 0:
		err = a.initSimple(cfg)
	case cfg.AuthorizationMode != "" || gens > 0:
		err = a.initAuthenticated(ctx, cfg)
	default:
		a.mode = ModeDenyAll
	}
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Mode is the effective mode: one of the Mode constants.
func (a *Authorizer) Mode() string { return a.mode }

// Insecure reports whether every admin request is allowed without a token;
// the host logs it loudly at start.
func (a *Authorizer) Insecure() bool { return a.mode == ModeInsecureAllowAll }

func (a *Authorizer) initPublicKey(path string) error {
	a.mode = ModePublicKey
	ks, err := loadEd25519(path)
	if err != nil {
		return fmt.Errorf("admin: auth_public_key: %w", err)
	}
	a.providers = []*provider{{name: "auth_public_key", keys: ks, persona: "admin"}}
	return nil
}

func (a *Authorizer) initSimple(cfg Config) error {
	switch cfg.Type {
	case ModeInsecureAllowAll, ModeDenyAll:
		if len(cfg.Personas) > 0 || len(cfg.Roles) > 0 {
			return fmt.Errorf("admin: type %q takes no personas or roles", cfg.Type)
		}
		a.mode = cfg.Type
		return nil
	case ModeSimple, "":
	default:
		return fmt.Errorf("admin: unknown type %q (want %s, %s or %s)", cfg.Type, ModeSimple, ModeInsecureAllowAll, ModeDenyAll)
	}
	a.mode = ModeSimple
	ids := map[string]bool{}
	for i, p := range cfg.Personas {
		if p.ID == "" || p.PublicKeyPath == "" {
			return fmt.Errorf("admin: personas[%d]: id and public_key_path are required", i)
		}
		if ids[p.ID] {
			return fmt.Errorf("admin: persona %q defined twice", p.ID)
		}
		ids[p.ID] = true
		ks, err := loadEd25519(p.PublicKeyPath)
		if err != nil {
			return fmt.Errorf("admin: persona %q: %w", p.ID, err)
		}
		a.providers = append(a.providers, &provider{name: "persona " + p.ID, keys: ks, persona: p.ID})
	}
	for i, r := range cfg.Roles {
		if r.ID == "" {
			return fmt.Errorf("admin: roles[%d]: id is required", i)
		}
		// Generation-2 regexes were not required to be anchored; anchoring
		// them here makes them match whole URIs only, which can only
		// narrow what they allow.
		re, err := regexp.Compile(`^(?:` + r.AllowedEndpoints + `)$`)
		if err != nil {
			return fmt.Errorf("admin: role %q: allowed_endpoints: %w", r.ID, err)
		}
		a.acls = append(a.acls, acl{role: r.ID, re: re})
	}
	return nil
}

func (a *Authorizer) initAuthenticated(ctx context.Context, cfg Config) error {
	bj := cfg.Authentication.BearerJWT
	switch cfg.AuthorizationMode {
	case ModeInsecureAllowAll, ModeDenyAll:
		if len(bj.IdentityProviders) > 0 || len(cfg.Authorization.RegexACL.ACLs) > 0 {
			return fmt.Errorf("admin: authorization_mode %q takes no identity providers or ACLs", cfg.AuthorizationMode)
		}
		a.mode = cfg.AuthorizationMode
		return nil
	case ModeAuthenticatedAuthorization:
	case "":
		return fmt.Errorf("admin: identity providers or ACLs are set but authorization_mode is not %q", ModeAuthenticatedAuthorization)
	default:
		return fmt.Errorf("admin: unknown authorization_mode %q (want %s, %s or %s)", cfg.AuthorizationMode,
			ModeAuthenticatedAuthorization, ModeInsecureAllowAll, ModeDenyAll)
	}
	a.mode = ModeAuthenticatedAuthorization
	if len(bj.IdentityProviders) == 0 {
		return errors.New("admin: AuthenticatedAuthorization needs at least one identity provider")
	}
	fetch := fetcher{insecureHTTP: bj.InsecurePublicKeyFromURI}
	for i, idp := range bj.IdentityProviders {
		if idp.PublicKeyURI == "" && idp.JWKSetURI == "" {
			return fmt.Errorf("admin: identity_providers[%d]: public_key_uri or jwk_set_uri is required", i)
		}
		ks, err := fetch.keySet(ctx, idp.PublicKeyURI, idp.JWKSetURI)
		if err != nil {
			return fmt.Errorf("admin: identity_providers[%d]: %w", i, err)
		}
		name := idp.PublicKeyURI
		if name == "" {
			name = idp.JWKSetURI
		}
		a.providers = append(a.providers, &provider{name: name, keys: ks, issuer: idp.Issuer, audience: idp.Audience, needRole: true})
	}
	// Without ACLs nobody is allowed anything, as in trustee.
	a.acls = []acl{}
	for i, r := range cfg.Authorization.RegexACL.ACLs {
		if r.Role == "" {
			return fmt.Errorf("admin: acls[%d]: role is required", i)
		}
		if !strings.HasPrefix(r.AllowedEndpoints, "^/kbs") || !strings.HasSuffix(r.AllowedEndpoints, "$") {
			return fmt.Errorf("admin: acls[%d]: allowed_endpoints %q must start with ^/kbs and end with $", i, r.AllowedEndpoints)
		}
		re, err := regexp.Compile(r.AllowedEndpoints)
		if err != nil {
			return fmt.Errorf("admin: acls[%d]: %w", i, err)
		}
		methods := make([]string, len(r.Methods))
		for j, m := range r.Methods {
			methods[j] = strings.ToUpper(m)
		}
		a.acls = append(a.acls, acl{role: r.Role, re: re, methods: methods})
	}
	return nil
}

func loadEd25519(path string) (*keySet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := parsePEMKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, k := range keys {
		if _, ok := k.pub.(ed25519.PublicKey); !ok {
			return nil, fmt.Errorf("%s: want an Ed25519 public key, got %T", path, k.pub)
		}
	}
	return staticKeySet(keys), nil
}

// Authorize checks one admin request: authorization is the raw
// Authorization header, requestURI the path and query as received
// ("/kbs/v0/resource-policy"). Errors match ErrUnauthenticated (401) or
// ErrForbidden (403) and say why; they never contain the token.
func (a *Authorizer) Authorize(ctx context.Context, authorization, method, requestURI string) (Principal, error) {
	switch a.mode {
	case ModeInsecureAllowAll:
		return Principal{Subject: "anonymous", Role: ModeInsecureAllowAll}, nil
	case ModeDenyAll:
		return Principal{}, fmt.Errorf("%w: the admin API is disabled (DenyAll)", ErrForbidden)
	}
	raw, err := bearer(authorization)
	if err != nil {
		return Principal{}, err
	}
	p, err := a.authenticate(ctx, raw)
	if err != nil {
		return Principal{}, err
	}
	if a.acls == nil {
		return p, nil
	}
	for _, c := range a.acls {
		if c.role != p.Role || !c.re.MatchString(requestURI) {
			continue
		}
		if len(c.methods) > 0 && !slices.Contains(c.methods, strings.ToUpper(method)) {
			continue
		}
		return p, nil
	}
	return p, fmt.Errorf("%w: role %q may not %s %s", ErrForbidden, p.Role, method, requestURI)
}

func bearer(h string) (string, error) {
	h = strings.TrimSpace(h)
	if h == "" || strings.EqualFold(h, "Bearer") {
		return "", ErrMissingToken
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: the Authorization header is not a Bearer token", ErrUnauthenticated)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", ErrMissingToken
	}
	return tok, nil
}

// adminClaims are the claims read from every token.
type adminClaims struct {
	jwt.Claims
	Role any `json:"role"`
}

// failure ranks why a provider refused a token: the most specific reason
// (a verified signature with a bad claim) is the one reported.
type failure struct {
	rank int
	msg  string
}

func (a *Authorizer) authenticate(ctx context.Context, raw string) (Principal, error) {
	tok, err := jwt.ParseSigned(raw, asymmetricAlgs)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: malformed token or unaccepted algorithm: %v", ErrUnauthenticated, err)
	}
	if len(tok.Headers) != 1 {
		return Principal{}, fmt.Errorf("%w: want exactly one signature", ErrUnauthenticated)
	}
	hdr := tok.Headers[0]
	worst := failure{msg: "no configured key verifies the token"}
	refuse := func(rank int, format string, args ...any) {
		if rank > worst.rank {
			worst = failure{rank: rank, msg: fmt.Sprintf(format, args...)}
		}
	}
	now := a.now()
	for _, p := range a.providers {
		var c adminClaims
		if !p.keys.verify(ctx, tok, hdr, &c) {
			continue
		}
		if c.Expiry == nil {
			refuse(2, "the token has no exp")
			continue
		}
		if err := c.ValidateWithLeeway(jwt.Expected{Time: now}, Leeway); err != nil {
			switch {
			case errors.Is(err, jwt.ErrExpired):
				refuse(2, "the token expired at %s", c.Expiry.Time().UTC().Format(time.RFC3339))
			case errors.Is(err, jwt.ErrNotValidYet):
				refuse(2, "the token is not valid yet (nbf)")
			default:
				refuse(2, "%v", err)
			}
			continue
		}
		if p.issuer != "" && c.Issuer != p.issuer {
			refuse(1, "issuer %q is not trusted for this key", c.Issuer)
			continue
		}
		if p.audience != "" && !slices.Contains(c.Audience, p.audience) {
			refuse(1, "audience %q missing from the token", p.audience)
			continue
		}
		if !p.needRole {
			sub := c.Subject
			if sub == "" {
				sub = p.persona
			}
			return Principal{Subject: sub, Role: p.persona}, nil
		}
		role, ok := c.Role.(string)
		if !ok || role == "" {
			// trustee stops here too: a verified token without a role is
			// refused, not tried against the next provider.
			return Principal{}, fmt.Errorf("%w: the token has no string role claim", ErrUnauthenticated)
		}
		return Principal{Subject: c.Subject, Role: role}, nil
	}
	return Principal{}, fmt.Errorf("%w: %s", ErrUnauthenticated, worst.msg)
}
