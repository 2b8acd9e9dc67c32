// Package cca verifies Arm CCA attestation tokens: the platform token
// signed by the platform's CPAK (a configured trust anchor), the realm
// token signed by the RAK that the platform token binds, the platform's
// reference values, and the binding of the realm to the runtime data and
// the init-data.
package cca

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TEE is the only TEE name this verifier handles.
const TEE = "cca"

// Config is the plugin's section of the host configuration: the two
// stores trustee's local CCA verifier reads.
type Config struct {
	// TAStore is the trust-anchor store (JSON): the CPAK public key of
	// each known platform, by instance ID.
	TAStore string `json:"ta_store"`
	// RVStore is the reference-value store (JSON): the acceptable
	// platform configurations and firmware measurements.
	RVStore string `json:"rv_store"`
}

// Verifier verifies CCA evidence. It holds only the stores, which a new
// configuration replaces as a whole.
type Verifier struct {
	stores atomic.Pointer[stores]
}

var (
	_ verifier.Verifier = (*Verifier)(nil)
	_ sdk.Configurer    = (*Verifier)(nil)
)

// New returns a verifier that must be configured before it verifies.
func New() *Verifier { return &Verifier{} }

// Configure loads the trust-anchor and reference-value stores.
func (v *Verifier) Configure(_ context.Context, raw []byte) error {
	var cfg Config
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return err
	}
	if cfg.TAStore == "" || cfg.RVStore == "" {
		return sdk.InvalidArgument("cca settings: ta_store and rv_store are required")
	}
	ta, err := os.ReadFile(cfg.TAStore)
	if err != nil {
		return sdk.InvalidArgument("cca settings: ta_store: %v", err)
	}
	rv, err := os.ReadFile(cfg.RVStore)
	if err != nil {
		return sdk.InvalidArgument("cca settings: rv_store: %v", err)
	}
	s := &stores{}
	if s.anchors, err = parseTAStore(ta); err != nil {
		return sdk.InvalidArgument("cca settings: ta_store %s: %v", cfg.TAStore, err)
	}
	if s.refs, err = parseRVStore(rv); err != nil {
		return sdk.InvalidArgument("cca settings: rv_store %s: %v", cfg.RVStore, err)
	}
	if len(s.anchors) == 0 {
		return sdk.InvalidArgument("cca settings: ta_store %s has no trust anchor", cfg.TAStore)
	}
	v.stores.Store(s)
	return nil
}

// tokenBytes extracts the CBOR token from trustee's evidence,
// {"token":[bytes]}. The guest's CCA attester sends that object inside a
// JSON string, so a string is unwrapped first; a base64 string for the
// token is accepted too.
func tokenBytes(raw []byte) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var inner string
		if err := json.Unmarshal(raw, &inner); err != nil {
			return nil, err
		}
		raw = []byte(inner)
	}
	var ev struct {
		Token json.RawMessage `json:"token"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, err
	}
	if len(ev.Token) == 0 {
		return nil, errors.New("token is missing")
	}
	var tok []byte
	switch ev.Token[0] {
	case '[':
		if err := json.Unmarshal(ev.Token, &tok); err != nil {
			return nil, fmt.Errorf("token: %v", err)
		}
	case '"':
		var s string
		if err := json.Unmarshal(ev.Token, &s); err != nil {
			return nil, fmt.Errorf("token: %v", err)
		}
		var err error
		if tok, err = base64.StdEncoding.Strict().DecodeString(s); err != nil {
			return nil, fmt.Errorf("token is not standard base64: %v", err)
		}
	default:
		return nil, errors.New("token is neither an array of bytes nor base64")
	}
	return tok, nil
}

// Verify checks the evidence and returns trustee's CCA claims.
func (v *Verifier) Verify(ctx context.Context, req *verifier.Request) (verifier.Claims, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.TEE != TEE {
		return nil, sdk.Unsupported("cca verifier: TEE %q is not %q", req.TEE, TEE)
	}
	if len(req.ReportData) == 0 {
		return nil, sdk.InvalidArgument("cca verifier: no expected report data")
	}
	raw, err := tokenBytes(req.Evidence)
	if err != nil {
		return nil, sdk.BadEvidence("cca evidence: %v", err)
	}
	t, err := parseToken(raw)
	if err != nil {
		return nil, sdk.BadEvidence("cca evidence: %v", err)
	}
	s := v.stores.Load()
	if s == nil {
		return nil, sdk.Unavailable("cca verifier: not configured (no ta_store, rv_store)")
	}
	if err := s.appraise(t); err != nil {
		return nil, sdk.BadEvidence("cca evidence: %v", err)
	}
	if subtle.ConstantTimeCompare(fit(req.ReportData, 64), t.realm.Challenge) != 1 {
		return nil, sdk.BadEvidence("cca evidence: the realm challenge does not match the expected runtime-data digest")
	}
	if len(req.InitDataDigest) > 0 && subtle.ConstantTimeCompare(fit(req.InitDataDigest, 64), t.realm.Perso) != 1 {
		return nil, sdk.BadEvidence("cca evidence: the realm personalization value does not match the init-data digest")
	}
	return t.claims(), nil
}

// appraise checks the platform against its trust anchor and reference
// values, the realm against the RAK, and the binding between the two.
func (s *stores) appraise(t *token) error {
	p := &t.platform
	if !p.secured() {
		return fmt.Errorf("the platform's lifecycle state %#x is not secured", *p.Lifecycle)
	}
	ta, ok := s.anchors[hex.EncodeToString(p.InstID)]
	if !ok {
		return fmt.Errorf("platform instance %x has no trust anchor", p.InstID)
	}
	if !bytes.Equal(ta.implID, p.ImplID) {
		return fmt.Errorf("platform instance %x claims implementation %x, its trust anchor %x", p.InstID, p.ImplID, ta.implID)
	}
	if err := verifySign1(t.platformMsg, ta.key); err != nil {
		return fmt.Errorf("platform token signature: %w", err)
	}
	if err := verifySign1(t.realmMsg, t.rak); err != nil {
		return fmt.Errorf("realm token signature: %w", err)
	}
	// The platform token vouches for the RAK through its challenge: the
	// hash of the RAK as the realm token encodes it.
	h, err := hashByName(*t.realm.PubKeyHashAlgID)
	if err != nil {
		return fmt.Errorf("realm public key hash: %w", err)
	}
	h.Write(t.realm.PubKey)
	if !bytes.Equal(h.Sum(nil), p.Challenge) {
		return errors.New("the platform token does not bind the realm's RAK")
	}
	for _, rv := range s.refs[hex.EncodeToString(p.ImplID)] {
		if rv.matches(p) {
			return nil
		}
	}
	return fmt.Errorf("platform %x matches no reference value (configuration and firmware)", p.ImplID)
}

// fit right-pads b with zeros, or truncates it, to n bytes.
func fit(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// claims are trustee's CCA claims: the platform and realm claims-sets with
// byte strings in standard base64, and report_data and init_data in hex.
func (t *token) claims() verifier.Claims {
	p, r := &t.platform, &t.realm
	var sw []any
	for _, c := range p.SWComponents {
		m := map[string]any{"measurement-value": b64(c.Value), "signer-id": b64(c.SignerID)}
		if c.Type != nil {
			m["measurement-type"] = *c.Type
		}
		if c.Version != nil {
			m["version"] = *c.Version
		}
		if c.Desc != nil {
			m["measurement-description"] = *c.Desc
		}
		sw = append(sw, m)
	}
	platform := map[string]any{
		"cca-platform-profile":           *p.Profile,
		"cca-platform-challenge":         b64(p.Challenge),
		"cca-platform-implementation-id": b64(p.ImplID),
		"cca-platform-instance-id":       b64(p.InstID),
		"cca-platform-config":            b64(p.Config),
		"cca-platform-lifecycle":         *p.Lifecycle,
		"cca-platform-sw-components":     sw,
		"cca-platform-hash-algo-id":      *p.HashAlgID,
	}
	if p.VSI != nil {
		platform["cca-platform-service-indicator"] = *p.VSI
	}
	var rem []any
	for _, m := range r.REM {
		rem = append(rem, b64(m))
	}
	realm := map[string]any{
		"cca-realm-challenge":               b64(r.Challenge),
		"cca-realm-personalization-value":   b64(r.Perso),
		"cca-realm-initial-measurement":     b64(r.RIM),
		"cca-realm-extensible-measurements": rem,
		"cca-realm-hash-algo-id":            *r.HashAlgID,
		"cca-realm-public-key":              b64(r.PubKey),
		"cca-realm-public-key-hash-algo-id": *r.PubKeyHashAlgID,
	}
	if r.Profile != nil {
		realm["cca-realm-profile"] = *r.Profile
	}
	return verifier.Claims{
		"platform":    platform,
		"realm":       realm,
		"report_data": hex.EncodeToString(r.Challenge),
		"init_data":   hex.EncodeToString(r.Perso),
	}
}
