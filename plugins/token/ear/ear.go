// Package ear issues EAR attestation tokens (draft-ietf-rats-ear) as JWTs
// signed with ES256, in the shape trustee's attestation service issues them,
// so that guests, trustee KBSes in passport mode and policies written for
// trustee accept them.
//
// The header carries the public key as "jwk" (with "alg", which trustee's
// verifier requires, and "x5c" when a certificate chain is configured) and
// its RFC 7638 thumbprint as "kid", which also names the key in the JWKS.
package ear

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/token"
)

// Version is the plugin's version, also the default "build" of the
// verifier identity.
const Version = "0.1.0"

// Defaults of the settings. Issuer and profile are trustee's, so that
// relying parties that check them keep working.
const (
	DefaultDuration  = 5 * time.Minute
	DefaultIssuer    = "CoCo-Attestation-Service"
	DefaultProfile   = "tag:github.com,2024:confidential-containers/Trustee"
	DefaultDeveloper = "https://github.com/gokbs/kbs"
	DefaultBuild     = "kbs-plugin-token-ear " + Version
)

// Config is the plugin's settings.
type Config struct {
	// SigningKeyPath names a PEM file with an EC P-256 private key (PKCS#8
	// or SEC 1). Without it an ephemeral key is generated at start, and
	// tokens stop verifying when the plugin restarts.
	SigningKeyPath string `json:"signing_key_path"`
	// CertChainPath names a PEM file with the signing key's certificate
	// chain, leaf first. It is published as the header jwk's x5c, which
	// trustee's KBS needs to trust the token through a CA.
	CertChainPath string `json:"cert_chain_path"`
	// Duration is the tokens' lifetime as a Go duration ("5m").
	Duration  string `json:"duration"`
	Issuer    string `json:"issuer"`
	Profile   string `json:"profile"`
	Developer string `json:"developer"`
	Build     string `json:"build"`
}

// Issuer issues EAR tokens. It owns its signing key, parsed once in
// Configure; the key never leaves it.
type Issuer struct {
	now  func() time.Time // nil means time.Now; tests fix the clock
	mu   sync.Mutex       // serializes the lazy default setup
	sign atomic.Pointer[signer]
}

// signer is everything Issue needs, prepared once.
type signer struct {
	jose     jose.Signer
	kid      string
	jwks     json.RawMessage
	duration time.Duration
	issuer   string
	profile  string
	verifier verifierID
}

type verifierID struct {
	Developer string `json:"developer"`
	Build     string `json:"build"`
}

var (
	_ token.Issuer   = (*Issuer)(nil)
	_ sdk.Configurer = (*Issuer)(nil)
)

// New returns an issuer. Until Configure is called it signs with an
// ephemeral key and the default settings.
func New() *Issuer { return &Issuer{now: time.Now} }

// Configure loads the signing key and settings.
func (i *Issuer) Configure(_ context.Context, config []byte) error {
	var cfg Config
	if err := sdk.DecodeConfig(config, &cfg); err != nil {
		return err
	}
	s, err := newSigner(cfg)
	if err != nil {
		return err
	}
	i.sign.Store(s)
	return nil
}

func (i *Issuer) signer() (*signer, error) {
	if s := i.sign.Load(); s != nil {
		return s, nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if s := i.sign.Load(); s != nil {
		return s, nil
	}
	s, err := newSigner(Config{})
	if err != nil {
		return nil, err
	}
	i.sign.Store(s)
	return s, nil
}

func newSigner(cfg Config) (*signer, error) {
	s := &signer{
		duration: DefaultDuration,
		issuer:   or(cfg.Issuer, DefaultIssuer),
		profile:  or(cfg.Profile, DefaultProfile),
		verifier: verifierID{Developer: or(cfg.Developer, DefaultDeveloper), Build: or(cfg.Build, DefaultBuild)},
	}
	if cfg.Duration != "" {
		d, err := time.ParseDuration(cfg.Duration)
		if err != nil {
			return nil, sdk.InvalidArgument("ear settings: duration: %v", err)
		}
		if d < time.Second {
			return nil, sdk.InvalidArgument("ear settings: duration %s is shorter than a second", d)
		}
		s.duration = d
	}

	var key *ecdsa.PrivateKey
	var err error
	switch {
	case cfg.SigningKeyPath != "":
		if key, err = loadSigningKey(cfg.SigningKeyPath); err != nil {
			return nil, sdk.InvalidArgument("ear settings: signing_key_path %s: %v", cfg.SigningKeyPath, err)
		}
	case cfg.CertChainPath != "":
		return nil, sdk.InvalidArgument("ear settings: cert_chain_path needs signing_key_path (no certificate can match an ephemeral key)")
	default:
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, sdk.Internal("ear: generating an ephemeral key: %w", err)
		}
		sdk.Logger().Warn("signing EAR tokens with an ephemeral key: they stop verifying when the plugin restarts; set signing_key_path")
	}
	var chain []*x509.Certificate
	if cfg.CertChainPath != "" {
		if chain, err = loadChain(cfg.CertChainPath, &key.PublicKey); err != nil {
			return nil, sdk.InvalidArgument("ear settings: cert_chain_path %s: %v", cfg.CertChainPath, err)
		}
	}

	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.ES256)}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, sdk.Internal("ear: key thumbprint: %w", err)
	}
	s.kid = base64.RawURLEncoding.EncodeToString(tp)
	header := pub
	header.Certificates = chain
	headerJWK, err := json.Marshal(header)
	if err != nil {
		return nil, sdk.Internal("ear: header jwk: %w", err)
	}
	published := pub
	published.Use, published.KeyID = "sig", s.kid
	if s.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{published}}); err != nil {
		return nil, sdk.Internal("ear: jwks: %w", err)
	}
	opts := (&jose.SignerOptions{}).
		WithType("JWT").
		WithHeader("kid", s.kid).
		WithHeader("jwk", json.RawMessage(headerJWK))
	if s.jose, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts); err != nil {
		return nil, sdk.Internal("ear: signer: %w", err)
	}
	sdk.Logger().Info("EAR token signer ready", "kid", s.kid, "x5c", len(chain), "duration", s.duration.String(), "issuer", s.issuer)
	return s, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// loadSigningKey reads an EC P-256 private key. Its errors never quote the
// file's content.
func loadSigningKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var block *pem.Block
		if block, data = pem.Decode(data); block == nil {
			return nil, errors.New("no PEM private key found")
		}
		var key any
		switch block.Type {
		case "EC PARAMETERS":
			continue // openssl ecparam -genkey writes it before the key
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			return nil, errors.New("an RSA key; EAR tokens are signed with ES256 and need an EC P-256 key")
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("an encrypted key; give an unencrypted PKCS#8 or SEC 1 EC P-256 key")
		default:
			return nil, fmt.Errorf("unexpected PEM block %q, want an EC P-256 private key", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parsing the %s: %w", block.Type, err)
		}
		var ec *ecdsa.PrivateKey
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			ec = k
		case *rsa.PrivateKey:
			return nil, errors.New("an RSA key; EAR tokens are signed with ES256 and need an EC P-256 key")
		case ed25519.PrivateKey:
			return nil, errors.New("an Ed25519 key; EAR tokens are signed with ES256 and need an EC P-256 key")
		default:
			return nil, fmt.Errorf("a %T key; EAR tokens are signed with ES256 and need an EC P-256 key", key)
		}
		if ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("an EC key on %s; ES256 needs P-256", ec.Curve.Params().Name)
		}
		return ec, nil
	}
}

// loadChain reads a PEM certificate chain, leaf first, and checks that the
// leaf certifies pub and that each certificate is signed by the next one:
// a relying party would otherwise reject every token.
func loadChain(path string, pub *ecdsa.PublicKey) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	for {
		var block *pem.Block
		if block, data = pem.Decode(data); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(chain), err)
		}
		chain = append(chain, cert)
	}
	if len(chain) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	if leafKey, ok := chain[0].PublicKey.(*ecdsa.PublicKey); !ok || !leafKey.Equal(pub) {
		return nil, fmt.Errorf("the first certificate (%s) does not certify the signing key; the chain must start with the signing key's certificate", chain[0].Subject)
	}
	for n := 0; n+1 < len(chain); n++ {
		if err := chain[n].CheckSignatureFrom(chain[n+1]); err != nil {
			return nil, fmt.Errorf("certificate %d (%s) is not signed by certificate %d (%s); the chain must be leaf first: %w",
				n, chain[n].Subject, n+1, chain[n+1].Subject, err)
		}
	}
	if now := time.Now(); now.After(chain[0].NotAfter) {
		sdk.Logger().Warn("the token signing certificate has expired; relying parties that check x5c will reject tokens", "subject", chain[0].Subject.String(), "not_after", chain[0].NotAfter)
	}
	return chain, nil
}

// claims is the EAR claims set in trustee's JSON form.
type claims struct {
	Profile    string                     `json:"eat_profile"`
	IssuedAt   int64                      `json:"iat"`
	Expiry     int64                      `json:"exp"`
	Issuer     string                     `json:"iss"`
	VerifierID verifierID                 `json:"ear.verifier-id"`
	Submods    map[string]token.Appraisal `json:"submods"`
}

var statuses = map[string]bool{"affirming": true, "warning": true, "contraindicated": true, "none": true}

// Issue signs an EAR token for the appraisals in req.
func (i *Issuer) Issue(ctx context.Context, req *token.IssueRequest) (*token.Issued, error) {
	if req == nil || len(req.Submods) == 0 {
		return nil, sdk.InvalidArgument("ear: no submodule to sign (EAR needs at least one)")
	}
	for name, a := range req.Submods {
		if name == "" {
			return nil, sdk.InvalidArgument("ear: empty submodule name")
		}
		if !statuses[a.Status] {
			return nil, sdk.InvalidArgument("ear: submodule %q: status %q is not affirming, warning, contraindicated or none", name, a.Status)
		}
	}
	s, err := i.signer()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now
	if i.now != nil {
		now = i.now
	}
	iat := now().Unix()
	exp := iat + int64(s.duration/time.Second)
	payload, err := json.Marshal(claims{
		Profile:    s.profile,
		IssuedAt:   iat,
		Expiry:     exp,
		Issuer:     s.issuer,
		VerifierID: s.verifier,
		Submods:    req.Submods,
	})
	if err != nil {
		return nil, sdk.InvalidArgument("ear: claims: %v", err)
	}
	jws, err := s.jose.Sign(payload)
	if err != nil {
		return nil, sdk.Internal("ear: signing: %w", err)
	}
	compact, err := jws.CompactSerialize()
	if err != nil {
		return nil, sdk.Internal("ear: serializing: %w", err)
	}
	return &token.Issued{Token: compact, ExpiresAt: time.Unix(exp, 0)}, nil
}

// JWKS returns {"keys":[{kty,crv,x,y,alg:"ES256",use:"sig",kid}]}.
func (i *Issuer) JWKS(context.Context) (json.RawMessage, error) {
	s, err := i.signer()
	if err != nil {
		return nil, err
	}
	return s.jwks, nil
}
