package adminauth

// Config is the [admin] section of the host configuration. It reads the
// three generations of trustee's admin configuration unchanged, so that an
// existing kbs-config.toml keeps working; exactly one generation may be
// used at a time, and an empty section denies every admin request.
//
// Generation 1 (trustee up to v0.15): one Ed25519 public key.
//
//	[admin]
//	auth_public_key = "/etc/kbs/admin.pub"   # Ed25519, PEM "PUBLIC KEY"
//	insecure_api = false                     # true = InsecureAllowAll
//
// Generation 2 (trustee v0.16 to v0.20): personas with Ed25519 keys; the
// persona whose key verifies the token is its role. Without roles every
// persona may use every endpoint.
//
//	[admin]
//	type = "Simple"                          # or "InsecureAllowAll", "DenyAll"
//	[[admin.personas]]
//	id = "admin"
//	public_key_path = "/etc/kbs/admin.pub"
//	[[admin.roles]]                          # optional
//	id = "admin"
//	allowed_endpoints = "^/kbs/v0/.+$"       # regex over path and query
//
// Generation 3 (trustee v0.21 and later): identity providers and a required
// string "role" claim, authorised by regex ACLs.
//
//	[admin]
//	authorization_mode = "AuthenticatedAuthorization"   # or "InsecureAllowAll", "DenyAll"
//	[admin.authentication.bearer_jwt]
//	insecure_public_key_from_uri = false                # allow http:// key sources
//	identity_providers = [
//	  { issuer = "TrusteeInDocker", audience = "KBS", public_key_uri = "/etc/kbs/admin.pub" },
//	  { issuer = "https://idp.example", jwk_set_uri = "https://idp.example/jwks.json" },
//	]
//	[admin.authorization.regex_acl]
//	acls = [
//	  { role = "admin", allowed_endpoints = "^/kbs/v0/.+$" },
//	  { role = "auditor", allowed_endpoints = "^/kbs/v0/(resource-policy|reference-value/.+)$", methods = ["GET"] },
//	]
//
// Key sources (public_key_uri, jwk_set_uri) are a path, file://, https://
// or (with insecure_public_key_from_uri) http://. PEM keys may be Ed25519,
// ECDSA (P-256/384/521) or RSA (2048 bits or more). A JWKS URI that does
// not serve keys is tried as an OpenID issuer
// (<uri>/.well-known/openid-configuration, then its jwks_uri).
//
// ACL regexes must start with "^/kbs" and end with "$" (trustee's rule) and
// are matched against the request's path and query. methods is an
// extension: when set, the ACL only applies to those HTTP methods.
type Config struct {
	// Generation 1.
	AuthPublicKey string `koanf:"auth_public_key"`
	InsecureAPI   bool   `koanf:"insecure_api"`

	// Generation 2.
	Type     string    `koanf:"type"`
	Personas []Persona `koanf:"personas"`
	Roles    []Role    `koanf:"roles"`

	// Generation 3.
	AuthorizationMode string         `koanf:"authorization_mode"`
	Authentication    Authentication `koanf:"authentication"`
	Authorization     Authorization  `koanf:"authorization"`
}

// Persona is a generation-2 admin identity.
type Persona struct {
	ID            string `koanf:"id"`
	PublicKeyPath string `koanf:"public_key_path"`
}

// Role limits a generation-2 persona of the same ID to some endpoints.
type Role struct {
	ID               string `koanf:"id"`
	AllowedEndpoints string `koanf:"allowed_endpoints"`
}

// Authentication is [admin.authentication].
type Authentication struct {
	BearerJWT BearerJWT `koanf:"bearer_jwt"`
}

// BearerJWT is [admin.authentication.bearer_jwt].
type BearerJWT struct {
	IdentityProviders        []IdentityProvider `koanf:"identity_providers"`
	InsecurePublicKeyFromURI bool               `koanf:"insecure_public_key_from_uri"`
}

// IdentityProvider trusts the keys of one token issuer. Issuer and
// Audience, when set, must match the token's iss and one of its aud.
type IdentityProvider struct {
	Issuer       string `koanf:"issuer"`
	Audience     string `koanf:"audience"`
	PublicKeyURI string `koanf:"public_key_uri"`
	JWKSetURI    string `koanf:"jwk_set_uri"`
}

// Authorization is [admin.authorization].
type Authorization struct {
	RegexACL RegexACL `koanf:"regex_acl"`
}

// RegexACL is [admin.authorization.regex_acl].
type RegexACL struct {
	ACLs []ACL `koanf:"acls"`
}

// ACL lets a role reach the endpoints its regex matches.
type ACL struct {
	Role             string   `koanf:"role"`
	AllowedEndpoints string   `koanf:"allowed_endpoints"`
	Methods          []string `koanf:"methods"`
}

// Modes, as trustee spells them.
const (
	ModeInsecureAllowAll           = "InsecureAllowAll"
	ModeDenyAll                    = "DenyAll"
	ModeSimple                     = "Simple"
	ModeAuthenticatedAuthorization = "AuthenticatedAuthorization"
	// ModePublicKey is generation 1 (auth_public_key); it has no spelling
	// in trustee's configuration.
	ModePublicKey = "PublicKey"
)
