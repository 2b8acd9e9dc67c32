package adminauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// asymmetricAlgs are the only algorithms a token may name. HMAC is absent
// on purpose: with it, a public key would become a signing secret.
var asymmetricAlgs = []jose.SignatureAlgorithm{
	jose.EdDSA, jose.ES256, jose.ES384, jose.ES512,
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
}

type key struct {
	kid  string
	pub  crypto.PublicKey
	algs []jose.SignatureAlgorithm
}

// algsFor lists the algorithms a public key may verify.
func algsFor(pub crypto.PublicKey) ([]jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return []jose.SignatureAlgorithm{jose.EdDSA}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []jose.SignatureAlgorithm{jose.ES256}, nil
		case elliptic.P384():
			return []jose.SignatureAlgorithm{jose.ES384}, nil
		case elliptic.P521():
			return []jose.SignatureAlgorithm{jose.ES512}, nil
		}
		return nil, fmt.Errorf("unsupported elliptic curve %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits; at least 2048 are required", k.N.BitLen())
		}
		return []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512}, nil
	}
	return nil, fmt.Errorf("unsupported public key type %T", pub)
}

// parsePEMKeys reads every public key (or certificate) of a PEM file.
func parsePEMKeys(b []byte) ([]key, error) {
	var keys []key
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		var pub crypto.PublicKey
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			// Never echo the block: it may be a private key given by mistake.
			return nil, fmt.Errorf("PEM block %q is not a public key or certificate", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM %s: %w", block.Type, err)
		}
		algs, err := algsFor(pub)
		if err != nil {
			return nil, err
		}
		keys = append(keys, key{pub: pub, algs: algs})
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return keys, nil
}

// parseJWKS reads the usable verification keys of a JWK Set.
func parseJWKS(b []byte) ([]key, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	var keys []key
	for _, jwk := range set.Keys {
		if jwk.Use == "enc" || !jwk.Valid() {
			continue
		}
		if !jwk.IsPublic() {
			jwk = jwk.Public()
		}
		if _, symmetric := jwk.Key.([]byte); symmetric {
			continue
		}
		algs, err := algsFor(jwk.Key)
		if err != nil {
			continue
		}
		if jwk.Algorithm != "" {
			alg := jose.SignatureAlgorithm(jwk.Algorithm)
			if !slices.Contains(algs, alg) {
				continue
			}
			algs = []jose.SignatureAlgorithm{alg}
		}
		keys = append(keys, key{kid: jwk.KeyID, pub: jwk.Key, algs: algs})
	}
	if len(keys) == 0 {
		return nil, errors.New("the JWK Set has no usable signature verification key")
	}
	return keys, nil
}

// keySet is the keys of one provider. A remote JWKS is fetched again when a
// token names a key ID it does not hold (key rotation at the identity
// provider), at most once per refreshInterval.
type keySet struct {
	mu        sync.RWMutex
	keys      []key
	refresh   func(ctx context.Context) ([]key, error)
	lastFetch time.Time
}

const refreshInterval = time.Minute

func staticKeySet(keys []key) *keySet { return &keySet{keys: keys} }

func (ks *keySet) current() []key {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.keys
}

// verify reports whether some key of the set verifies tok, decoding its
// claims into dst.
func (ks *keySet) verify(ctx context.Context, tok *jwt.JSONWebToken, hdr jose.Header, dst *adminClaims) bool {
	keys := ks.current()
	if tryKeys(keys, tok, hdr, dst) {
		return true
	}
	if ks.refresh == nil || hdr.KeyID == "" || slices.ContainsFunc(keys, func(k key) bool { return k.kid == hdr.KeyID }) {
		return false
	}
	ks.mu.Lock()
	if time.Since(ks.lastFetch) < refreshInterval {
		ks.mu.Unlock()
		return false
	}
	ks.lastFetch = time.Now()
	ks.mu.Unlock()
	fresh, err := ks.refresh(ctx)
	if err != nil {
		return false
	}
	ks.mu.Lock()
	ks.keys = fresh
	ks.mu.Unlock()
	return tryKeys(fresh, tok, hdr, dst)
}

func tryKeys(keys []key, tok *jwt.JSONWebToken, hdr jose.Header, dst *adminClaims) bool {
	byKID := hdr.KeyID != "" && slices.ContainsFunc(keys, func(k key) bool { return k.kid == hdr.KeyID })
	alg := jose.SignatureAlgorithm(hdr.Algorithm)
	for _, k := range keys {
		if byKID && k.kid != hdr.KeyID {
			continue
		}
		if !slices.Contains(k.algs, alg) {
			continue
		}
		var std jwt.Claims
		var extra struct {
			Role any `json:"role"`
		}
		if err := tok.Claims(k.pub, &std, &extra); err == nil {
			*dst = adminClaims{Claims: std, Role: extra.Role}
			return true
		}
	}
	return false
}

// fetcher reads key material from a path, file://, https:// or (when
// allowed) http:// URI.
type fetcher struct {
	insecureHTTP bool
}

const (
	maxKeyDocument = 1 << 20
	fetchTimeout   = 10 * time.Second
)

var httpClient = &http.Client{Timeout: fetchTimeout}

func (f fetcher) keySet(ctx context.Context, pemURI, jwksURI string) (*keySet, error) {
	var pemKeys []key
	if pemURI != "" {
		b, err := f.read(ctx, pemURI)
		if err != nil {
			return nil, fmt.Errorf("public_key_uri: %w", err)
		}
		if pemKeys, err = parsePEMKeys(b); err != nil {
			return nil, fmt.Errorf("public_key_uri %s: %w", pemURI, err)
		}
	}
	if jwksURI == "" {
		return staticKeySet(pemKeys), nil
	}
	load := func(ctx context.Context) ([]key, error) {
		keys, err := f.jwks(ctx, jwksURI)
		if err != nil {
			return nil, fmt.Errorf("jwk_set_uri %s: %w", jwksURI, err)
		}
		return append(slices.Clone(pemKeys), keys...), nil
	}
	keys, err := load(ctx)
	if err != nil {
		return nil, err
	}
	ks := &keySet{keys: keys, lastFetch: time.Now()}
	if isRemote(jwksURI) {
		ks.refresh = load
	}
	return ks, nil
}

// jwks reads a JWK Set; a remote URI that serves none is taken as an
// OpenID issuer and its discovery document's jwks_uri is read instead.
func (f fetcher) jwks(ctx context.Context, uri string) ([]key, error) {
	b, err := f.read(ctx, uri)
	if err == nil {
		keys, perr := parseJWKS(b)
		if perr == nil || !isRemote(uri) {
			return keys, perr
		}
		err = perr
	}
	if !isRemote(uri) {
		return nil, err
	}
	disc, derr := f.read(ctx, strings.TrimSuffix(uri, "/")+"/.well-known/openid-configuration")
	if derr != nil {
		return nil, err
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if json.Unmarshal(disc, &doc) != nil || doc.JWKSURI == "" {
		return nil, err
	}
	if b, err = f.read(ctx, doc.JWKSURI); err != nil {
		return nil, err
	}
	return parseJWKS(b)
}

func isRemote(uri string) bool {
	return strings.HasPrefix(uri, "https://") || strings.HasPrefix(uri, "http://")
}

func (f fetcher) read(ctx context.Context, uri string) ([]byte, error) {
	switch {
	case strings.HasPrefix(uri, "https://"):
	case strings.HasPrefix(uri, "http://"):
		if !f.insecureHTTP {
			return nil, fmt.Errorf("%s: http:// needs insecure_public_key_from_uri = true", uri)
		}
	default:
		b, err := os.ReadFile(strings.TrimPrefix(uri, "file://"))
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", uri, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxKeyDocument+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", uri, err)
	}
	if len(b) > maxKeyDocument {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", uri, maxKeyDocument)
	}
	return b, nil
}
