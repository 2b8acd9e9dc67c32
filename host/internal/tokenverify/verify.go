// Package tokenverify verifies attestation tokens (compact JWS JWTs) the way
// the trustee KBS does ([attestation_token]), so that Bearer tokens from a
// CoCo guest, tokens this broker issued, and admin tokens can be checked
// against configured trust: JWK sets (inline, file or https with OpenID
// discovery), x5c chains to trusted certificates, or, for development
// only, the header jwk itself.
package tokenverify

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

var (
	// ErrInvalidToken: the token is malformed, forged, expired or signed by
	// a key that is not trusted. The caller's fault (HTTP 401).
	ErrInvalidToken = errors.New("invalid token")
	// ErrUnavailable: a remote key set could not be fetched, so the token
	// could not be checked. May succeed later (HTTP 503).
	ErrUnavailable = errors.New("token key source unavailable")
)

// Algorithms are the JWS algorithms accepted. "none" and HMAC are never
// accepted: a verifier holds only public keys.
var Algorithms = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512,
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.EdDSA,
}

// Defaults for the zero values of Config.
const (
	DefaultLeeway     = 60 * time.Second
	DefaultTimeout    = 10 * time.Second
	DefaultMinRefresh = 30 * time.Second
	DefaultMaxAge     = 10 * time.Minute
)

// maxJWKSBytes bounds a fetched key set or discovery document.
const maxJWKSBytes = 1 << 20

// Config says what a Verifier trusts. At least one of JWKSets, JWKSJSON,
// CertPaths or InsecureHeaderJWK must be set.
type Config struct {
	// JWKSets are trusted JWK sets by location: "file:///path", a local
	// path, or an "https://" URL. An https set is fetched on first use; if
	// the URL does not answer with a non-empty set, "<url>/.well-known/
	// openid-configuration" is read and its jwks_uri fetched instead.
	JWKSets []string
	// JWKSJSON are trusted JWK sets given inline ({"keys":[…]}), e.g. the
	// broker's own token issuer's set.
	JWKSJSON [][]byte
	// CertPaths are PEM bundles; every certificate in them is a trust
	// anchor for a token whose header carries jwk and x5c.
	CertPaths []string
	// InsecureHeaderJWK trusts whatever key the token header carries.
	// Development only: anyone can then mint a valid token.
	InsecureHeaderJWK bool

	// Leeway for exp and nbf; 0 means DefaultLeeway, negative means none.
	Leeway time.Duration
	// HTTPClient fetches https sets; nil means a client with DefaultTimeout.
	HTTPClient *http.Client
	// MinRefresh is the least time between two fetches of one https set
	// (an unknown kid triggers a fetch); 0 means DefaultMinRefresh.
	MinRefresh time.Duration
	// MaxAge is how long a fetched set is used before it is fetched again;
	// 0 means DefaultMaxAge. If that fetch fails the old keys stay in use.
	MaxAge time.Duration
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	insecure   bool
	roots      *x509.CertPool
	static     keySet
	remote     []*remoteSet
	leeway     time.Duration
	client     *http.Client
	minRefresh time.Duration
	maxAge     time.Duration
	now        func() time.Time
}

// New builds a Verifier, reading every local key set and certificate
// bundle now. Remote sets are fetched on first use.
func New(cfg Config) (*Verifier, error) {
	if len(cfg.JWKSets) == 0 && len(cfg.JWKSJSON) == 0 && len(cfg.CertPaths) == 0 && !cfg.InsecureHeaderJWK {
		return nil, errors.New("token verifier trusts nothing: configure trusted JWK sets, trusted certificates or insecure_header_jwk")
	}
	v := &Verifier{
		insecure:   cfg.InsecureHeaderJWK,
		leeway:     cfg.Leeway,
		client:     cfg.HTTPClient,
		minRefresh: cfg.MinRefresh,
		maxAge:     cfg.MaxAge,
		now:        cfg.Now,
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if v.client == nil {
		v.client = &http.Client{Timeout: DefaultTimeout}
	}
	if v.minRefresh == 0 {
		v.minRefresh = DefaultMinRefresh
	}
	if v.maxAge == 0 {
		v.maxAge = DefaultMaxAge
	}
	if v.now == nil {
		v.now = time.Now
	}

	for i, raw := range cfg.JWKSJSON {
		keys, err := parseJWKS(raw)
		if err != nil {
			return nil, fmt.Errorf("trusted jwk set %d: %w", i, err)
		}
		v.static = append(v.static, keys...)
	}
	for _, loc := range cfg.JWKSets {
		if strings.HasPrefix(loc, "https://") {
			if _, err := url.Parse(loc); err != nil {
				return nil, fmt.Errorf("trusted jwk set %q: %w", loc, err)
			}
			v.remote = append(v.remote, &remoteSet{url: loc})
			continue
		}
		if strings.Contains(loc, "://") && !strings.HasPrefix(loc, "file://") {
			return nil, fmt.Errorf("trusted jwk set %q: only file:// and https:// locations are supported", loc)
		}
		raw, err := os.ReadFile(strings.TrimPrefix(loc, "file://"))
		if err != nil {
			return nil, fmt.Errorf("trusted jwk set: %w", err)
		}
		keys, err := parseJWKS(raw)
		if err != nil {
			return nil, fmt.Errorf("trusted jwk set %q: %w", loc, err)
		}
		v.static = append(v.static, keys...)
	}
	if len(cfg.CertPaths) > 0 {
		v.roots = x509.NewCertPool()
		for _, p := range cfg.CertPaths {
			if err := addPEMBundle(v.roots, p); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}

func addPEMBundle(pool *x509.CertPool, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("trusted certificates: %w", err)
	}
	n := 0
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("trusted certificates %q: %w", path, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return fmt.Errorf("trusted certificates %q: no PEM certificate", path)
	}
	return nil
}

// Verify checks token's signature against the configured trust and its
// exp (required) and nbf (when present), and returns its claims. Numbers
// in the claims are json.Number. Errors wrap ErrInvalidToken or
// ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, token string) (map[string]any, error) {
	jws, err := jose.ParseSignedCompact(token, Algorithms)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	hdr := jws.Signatures[0].Header
	alg := hdr.Algorithm

	keys, err := v.keysFor(ctx, hdr)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if payload, err := jws.Verify(k); err == nil {
			return v.checkClaims(payload)
		}
	}
	return nil, fmt.Errorf("%w: signature does not verify with the trusted %s key", ErrInvalidToken, alg)
}

// keysFor returns the public keys a token with this header may be
// verified with (raw crypto keys, never a shared secret).
func (v *Verifier) keysFor(ctx context.Context, hdr jose.Header) ([]crypto.PublicKey, error) {
	alg := hdr.Algorithm
	jwk := hdr.JSONWebKey
	if jwk != nil {
		// The key's own alg pins the algorithm, so a token cannot pick an
		// algorithm its key was not meant for.
		if jwk.Algorithm != alg {
			return nil, fmt.Errorf("%w: header jwk alg %q does not match token alg %q", ErrInvalidToken, jwk.Algorithm, alg)
		}
		if !usable(jwk, alg) {
			return nil, fmt.Errorf("%w: header jwk is not a public %s key", ErrInvalidToken, alg)
		}
		if v.insecure {
			return []crypto.PublicKey{jwk.Key}, nil
		}
		if v.roots != nil {
			opts := x509.VerifyOptions{
				Roots:       v.roots,
				CurrentTime: v.now(),
				KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
			}
			var chains [][]*x509.Certificate
			var err error
			if len(jwk.Certificates) > 0 {
				// trustee's issuers put the chain in the header jwk's own
				// x5c (go-jose has checked that x5c[0] holds the jwk's key).
				chains, err = verifyChain(jwk.Certificates, opts)
			} else {
				chains, err = hdr.Certificates(opts)
			}
			switch {
			case errors.Is(err, jose.ErrMissingX5cHeader):
				// Not x5c-anchored; a trusted key set may still hold it.
			case err != nil:
				return nil, fmt.Errorf("%w: x5c chain: %v", ErrInvalidToken, err)
			default:
				leaf, ok := chains[0][0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
				if !ok || !leaf.Equal(jwk.Key) {
					return nil, fmt.Errorf("%w: header jwk is not the x5c leaf certificate's key", ErrInvalidToken)
				}
				return []crypto.PublicKey{jwk.Key}, nil
			}
		}
	}
	if hdr.KeyID == "" && jwk == nil {
		return nil, fmt.Errorf("%w: token header has neither kid nor jwk", ErrInvalidToken)
	}
	var thumb string
	if jwk != nil {
		thumb = thumbprint(jwk)
	}
	q := query{kid: hdr.KeyID, thumb: thumb, alg: alg}
	keys := v.static.find(q)
	var unavailable error
	if len(keys) == 0 {
		for _, r := range v.remote {
			found, err := r.find(ctx, v, q)
			if err != nil {
				unavailable = errors.Join(unavailable, err)
			}
			keys = append(keys, found...)
		}
	}
	if len(keys) == 0 {
		if unavailable != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, unavailable)
		}
		if jwk != nil && hdr.KeyID == "" {
			return nil, fmt.Errorf("%w: header jwk is not trusted (no x5c chain to a trusted certificate, not in a trusted key set)", ErrInvalidToken)
		}
		return nil, fmt.Errorf("%w: no trusted %s key with kid %q", ErrInvalidToken, alg, hdr.KeyID)
	}
	return keys, nil
}

// verifyChain verifies certs (leaf first) up to the trusted roots.
func verifyChain(certs []*x509.Certificate, opts x509.VerifyOptions) ([][]*x509.Certificate, error) {
	opts.Intermediates = x509.NewCertPool()
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	return certs[0].Verify(opts)
}

// usable reports whether k is a public key that can verify alg.
func usable(k *jose.JSONWebKey, alg string) bool {
	switch k.Key.(type) {
	case *ecdsa.PublicKey:
		return strings.HasPrefix(alg, "ES")
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	default:
		return false
	}
}

// UnverifiedClaims reads a compact JWS's claims as Verify returns them,
// WITHOUT checking its signature or its times: only for a token whose
// origin the caller already trusts (one its own issuer just returned).
func UnverifiedClaims(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrInvalidToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrInvalidToken)
	}
	return decodeClaims(payload)
}

func decodeClaims(payload []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, fmt.Errorf("%w: claims are not a JSON object", ErrInvalidToken)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the claims", ErrInvalidToken)
	}
	return claims, nil
}

func (v *Verifier) checkClaims(payload []byte) (map[string]any, error) {
	claims, err := decodeClaims(payload)
	if err != nil {
		return nil, err
	}
	now := v.now()
	exp, ok, err := numericDate(claims, "exp")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: no exp claim", ErrInvalidToken)
	}
	if now.After(exp.Add(v.leeway)) {
		return nil, fmt.Errorf("%w: expired at %s", ErrInvalidToken, exp.UTC().Format(time.RFC3339))
	}
	nbf, ok, err := numericDate(claims, "nbf")
	if err != nil {
		return nil, err
	}
	if ok && now.Add(v.leeway).Before(nbf) {
		return nil, fmt.Errorf("%w: not valid before %s", ErrInvalidToken, nbf.UTC().Format(time.RFC3339))
	}
	return claims, nil
}

func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	raw, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := raw.(json.Number)
	if !ok {
		return time.Time{}, false, fmt.Errorf("%w: %s is not a number", ErrInvalidToken, name)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return time.Time{}, false, fmt.Errorf("%w: %s is not a valid NumericDate", ErrInvalidToken, name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}
