// Package ita verifies Intel SGX and TDX quotes remotely, with Intel Trust
// Authority: it sends the quote to the appraisal API, verifies the
// returned token against the Trust Authority's signing keys, checks that
// the token's report data is bound to the runtime data, and maps the
// token's claims to trustee's.
package ita

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TEE types this verifier handles.
const (
	TEETDX = "tdx"
	TEESGX = "sgx"
)

// Defaults of the settings.
const (
	DefaultBaseURL = "https://api.trustauthority.intel.com"
	DefaultJWKSURL = "https://portal.trustauthority.intel.com/certs"
	DefaultTimeout = 30 * time.Second

	attestPath = "/appraisal/v1/attest"
	userAgent  = "kbs-plugin-verifier-ita/0.1.0"
	// leeway allows for clock skew between us and the Trust Authority.
	leeway    = time.Minute
	maxQuote  = 1 << 20
	maxAnswer = 4 << 20
)

// signingAlgs are the algorithms the Trust Authority signs tokens with
// (PS384 by default, RS256 on request).
var signingAlgs = []jose.SignatureAlgorithm{jose.PS384, jose.RS256}

// Config is the plugin's section of the host configuration.
type Config struct {
	// BaseURL is the Trust Authority's API. Default
	// https://api.trustauthority.intel.com.
	BaseURL string `json:"base_url"`
	// APIKeyFile holds the attestation API key. Required.
	APIKeyFile string `json:"api_key_file"`
	// JWKSURL serves the token signing keys. Default
	// https://portal.trustauthority.intel.com/certs.
	JWKSURL string `json:"jwks_url"`
	// JWKSFile pins the token signing keys instead of fetching them.
	JWKSFile string `json:"jwks_file"`
	// Timeout bounds one call to the Trust Authority. Default 30s.
	Timeout string `json:"timeout"`
	// PolicyIDs are Trust Authority policies to appraise the quote with.
	PolicyIDs []string `json:"policy_ids"`
	// AllowUnmatchedPolicy accepts a token whose policies did not all
	// match (trustee's allow_unmatched_policy).
	AllowUnmatchedPolicy bool `json:"allow_unmatched_policy"`
	// Issuer, when set, must equal the token's iss claim.
	Issuer string `json:"issuer"`
}

// settings are the applied configuration.
type settings struct {
	attestURL      string
	apiKey         string
	client         *http.Client
	keys           *keySet
	policyIDs      []string
	allowUnmatched bool
	issuer         string
}

// Verifier asks the Trust Authority to appraise quotes.
type Verifier struct {
	s atomic.Pointer[settings]
}

var (
	_ verifier.Verifier = (*Verifier)(nil)
	_ sdk.Configurer    = (*Verifier)(nil)
)

// New returns a verifier that must be configured before it verifies.
func New() *Verifier { return &Verifier{} }

// Configure applies the settings; it reads the API key (and the pinned
// keys) but contacts nothing.
func (v *Verifier) Configure(_ context.Context, raw []byte) error {
	var cfg Config
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return err
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.JWKSURL == "" {
		cfg.JWKSURL = DefaultJWKSURL
	}
	base, err := httpURL(cfg.BaseURL)
	if err != nil {
		return sdk.InvalidArgument("ita settings: base_url: %v", err)
	}
	timeout := DefaultTimeout
	if cfg.Timeout != "" {
		if timeout, err = time.ParseDuration(cfg.Timeout); err != nil || timeout <= 0 {
			return sdk.InvalidArgument("ita settings: timeout %q is not a positive duration", cfg.Timeout)
		}
	}
	if cfg.APIKeyFile == "" {
		return sdk.InvalidArgument("ita settings: api_key_file is required")
	}
	key, err := os.ReadFile(cfg.APIKeyFile)
	if err != nil {
		return sdk.InvalidArgument("ita settings: api_key_file: %v", err)
	}
	apiKey := strings.TrimSpace(string(key))
	if apiKey == "" || strings.ContainsAny(apiKey, "\r\n") {
		return sdk.InvalidArgument("ita settings: api_key_file %s does not hold one API key", cfg.APIKeyFile)
	}
	client := &http.Client{Timeout: timeout}
	keys := &keySet{client: client}
	if cfg.JWKSFile != "" {
		b, err := os.ReadFile(cfg.JWKSFile)
		if err != nil {
			return sdk.InvalidArgument("ita settings: jwks_file: %v", err)
		}
		if keys.keys, err = parseJWKS(b); err != nil {
			return sdk.InvalidArgument("ita settings: jwks_file %s: %v", cfg.JWKSFile, err)
		}
	} else {
		u, err := httpURL(cfg.JWKSURL)
		if err != nil {
			return sdk.InvalidArgument("ita settings: jwks_url: %v", err)
		}
		keys.url = u.String()
	}
	v.s.Store(&settings{
		attestURL:      strings.TrimRight(base.String(), "/") + attestPath,
		apiKey:         apiKey,
		client:         client,
		keys:           keys,
		policyIDs:      cfg.PolicyIDs,
		allowUnmatched: cfg.AllowUnmatchedPolicy,
		issuer:         cfg.Issuer,
	})
	return nil
}

func httpURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http(s) URL", s)
	}
	return u, nil
}

// quote extracts the quote from trustee's TDX/SGX evidence,
// {"quote":"<std base64>", ...}; the rest (the event log) stays here. The
// header is checked here so that garbage costs no remote call.
func quote(tee string, raw []byte) (string, error) {
	var ev struct {
		Quote *string `json:"quote"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		return "", err
	}
	if ev.Quote == nil {
		return "", errors.New("quote is missing")
	}
	if len(*ev.Quote) > maxQuote*4/3+4 {
		return "", errors.New("quote is too large")
	}
	b, err := base64.StdEncoding.Strict().DecodeString(*ev.Quote)
	if err != nil {
		return "", fmt.Errorf("quote is not standard base64: %v", err)
	}
	if len(b) < 48 {
		return "", fmt.Errorf("quote of %d bytes is shorter than its header", len(b))
	}
	version, teeType := binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint32(b[4:])
	switch {
	case tee == TEETDX && (version == 4 || version == 5) && teeType == 0x81:
	case tee == TEESGX && (version == 3 || version == 4) && teeType == 0:
	default:
		return "", fmt.Errorf("not a %s quote (version %d, TEE type %#x)", tee, version, teeType)
	}
	return *ev.Quote, nil
}

// Verify has the Trust Authority appraise the quote and returns the
// token's claims, mapped to trustee's names, with the token under "ita".
func (v *Verifier) Verify(ctx context.Context, req *verifier.Request) (verifier.Claims, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.TEE != TEETDX && req.TEE != TEESGX {
		return nil, sdk.Unsupported("ita verifier: TEE %q is not tdx or sgx", req.TEE)
	}
	if len(req.ReportData) == 0 {
		return nil, sdk.InvalidArgument("ita verifier: no expected report data")
	}
	q, err := quote(req.TEE, req.Evidence)
	if err != nil {
		return nil, sdk.BadEvidence("%s evidence: %v", req.TEE, err)
	}
	s := v.s.Load()
	if s == nil {
		return nil, sdk.Unavailable("ita verifier: not configured")
	}
	token, err := s.appraise(ctx, q)
	if err != nil {
		return nil, err
	}
	claims, err := s.verifyToken(ctx, token)
	if err != nil {
		return nil, err
	}
	return mapClaims(req, claims, s.allowUnmatched)
}

// appraise posts the quote to the appraisal API and returns the token.
// The runtime data is not sent: the Trust Authority would hash it its own
// way, while the quote carries the host's digest of it, which is checked
// against the token's report data instead.
func (s *settings) appraise(ctx context.Context, quote string) (string, error) {
	body, err := json.Marshal(struct {
		Quote           string   `json:"quote"`
		PolicyIDs       []string `json:"policy_ids,omitempty"`
		PolicyMustMatch bool     `json:"policy_must_match,omitempty"`
	}{quote, s.policyIDs, len(s.policyIDs) > 0 && !s.allowUnmatched})
	if err != nil {
		return "", sdk.Internal("ita: request: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.attestURL, bytes.NewReader(body))
	if err != nil {
		return "", sdk.Internal("ita: request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("x-api-key", s.apiKey)
	resp, err := s.client.Do(req)
	if err != nil {
		return "", sdk.Unavailable("ita: appraisal request: %v", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return "", sdk.Unavailable("ita: appraisal answer: %v", err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity:
		// The Trust Authority looked at the quote and refused it.
		return "", sdk.BadEvidence("ita: appraisal failed: %s", remoteError(answer, resp.Status))
	default:
		// Our key, our URL, their load or their outage: not the guest's
		// doing, and worth another try.
		return "", sdk.Unavailable("ita: appraisal: %s", remoteError(answer, resp.Status))
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(answer, &tok); err != nil || tok.Token == "" {
		return "", sdk.Unavailable("ita: the appraisal answer has no token")
	}
	return tok.Token, nil
}

// remoteError is the Trust Authority's {"error": ...}, kept short and
// printable, or the HTTP status.
func remoteError(body []byte, status string) string {
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(body, &e)
	msg := e.Error
	if msg == "" {
		msg = e.Message
	}
	if msg == "" {
		return status
	}
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return status + ": " + msg
}

// verifyToken checks the token's signature with the Trust Authority's key
// and its validity period, and returns its claims.
func (s *settings) verifyToken(ctx context.Context, token string) (map[string]any, error) {
	tok, err := jwt.ParseSigned(token, signingAlgs)
	if err != nil {
		return nil, sdk.Unavailable("ita: the Trust Authority's token does not parse: %v", err)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return nil, sdk.Unavailable("ita: the Trust Authority's token names no key")
	}
	key, err := s.keys.key(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return nil, err
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(key.Key, &std, &all); err != nil {
		return nil, sdk.Unavailable("ita: the Trust Authority's token does not verify: %v", err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Time: time.Now()}, leeway); err != nil {
		return nil, sdk.Unavailable("ita: the Trust Authority's token is not valid now: %v", err)
	}
	if std.Expiry == nil {
		return nil, sdk.Unavailable("ita: the Trust Authority's token has no expiry")
	}
	if s.issuer != "" && std.Issuer != s.issuer {
		return nil, sdk.Unavailable("ita: the token's issuer %q is not %q", std.Issuer, s.issuer)
	}
	return all, nil
}

// mapClaims checks the token's TEE claims against the request and maps
// them to trustee's claims for the TEE.
func mapClaims(req *verifier.Request, all map[string]any, allowUnmatched bool) (verifier.Claims, error) {
	if unmatched, _ := all["policy_ids_unmatched"].([]any); len(unmatched) > 0 && !allowUnmatched {
		return nil, sdk.BadEvidence("ita: the quote does not match Trust Authority policies %v", unmatched)
	}
	// Version 2 tokens nest the TEE's claims under its name.
	tee := all
	if nested, ok := all[req.TEE].(map[string]any); ok {
		tee = nested
	}
	at, _ := tee["attester_type"].(string)
	if at == "" {
		at, _ = all["attester_type"].(string)
	}
	if !strings.EqualFold(at, req.TEE) {
		return nil, sdk.BadEvidence("ita: the token attests %q, not %s", at, req.TEE)
	}
	m := &mapper{tee: tee, prefix: req.TEE + "_"}
	reportData := m.bytes("report_data", 64)
	if m.err != nil {
		return nil, m.err
	}
	if subtle.ConstantTimeCompare(fit(req.ReportData, 64), reportData) != 1 {
		return nil, sdk.BadEvidence("ita: the quote's report data does not match the expected runtime-data digest")
	}
	var claims verifier.Claims
	if req.TEE == TEETDX {
		claims = m.tdx()
	} else {
		claims = m.sgx()
	}
	if m.err != nil {
		return nil, m.err
	}
	for _, k := range []string{"attester_tcb_status", "attester_tcb_date", "attester_advisory_ids"} {
		if v, ok := tee[k]; ok {
			claims[strings.TrimPrefix(k, "attester_")] = v
		} else if v, ok := all[k]; ok {
			claims[strings.TrimPrefix(k, "attester_")] = v
		}
	}
	claims["report_data"] = hex.EncodeToString(reportData)
	// The init-data field, reported always (as trustee's TDX and SGX
	// verifiers do) and checked when the guest sent init-data.
	field, size := "mrconfigid", 48
	if req.TEE == TEESGX {
		field, size = "config_id", 64
	}
	if _, ok := tee[m.prefix+field]; ok || len(req.InitDataDigest) > 0 {
		got := m.bytes(field, size)
		if m.err != nil {
			return nil, m.err
		}
		if len(req.InitDataDigest) > 0 && subtle.ConstantTimeCompare(fit(req.InitDataDigest, size), got) != 1 {
			return nil, sdk.BadEvidence("ita: %s%s does not match the init-data digest", m.prefix, field)
		}
		claims["init_data"] = hex.EncodeToString(got)
	}
	claims["ita"] = all
	return claims, nil
}

// mapper reads the token's TEE claims, collecting the first error.
type mapper struct {
	tee    map[string]any
	prefix string
	err    error
}

// hex returns a hex claim, lower-cased, checking its size when size > 0.
func (m *mapper) hex(name string, size int) string {
	b := m.bytes(name, size)
	return hex.EncodeToString(b)
}

func (m *mapper) bytes(name string, size int) []byte {
	if m.err != nil {
		return nil
	}
	s, ok := m.tee[m.prefix+name].(string)
	if !ok {
		m.err = sdk.BadEvidence("ita: the token has no %s%s", m.prefix, name)
		return nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || (size > 0 && len(b) != size) {
		m.err = sdk.BadEvidence("ita: %s%s is not %d bytes of hex", m.prefix, name, size)
		return nil
	}
	return b
}

// optional copies a claim when the token has it.
func (m *mapper) optional(dst map[string]any, key, name string) {
	if v, ok := m.tee[m.prefix+name]; ok {
		dst[key] = v
	}
}

// tdx maps ITA's TDX claims to trustee's quote.body.* names (hex).
func (m *mapper) tdx() verifier.Claims {
	body := map[string]any{
		"mr_td":           m.hex("mrtd", 48),
		"rtmr_0":          m.hex("rtmr0", 48),
		"rtmr_1":          m.hex("rtmr1", 48),
		"rtmr_2":          m.hex("rtmr2", 48),
		"rtmr_3":          m.hex("rtmr3", 48),
		"mr_seam":         m.hex("mrseam", 48),
		"mrsigner_seam":   m.hex("mrsignerseam", 48),
		"mr_config_id":    m.hex("mrconfigid", 48),
		"mr_owner":        m.hex("mrowner", 48),
		"mr_owner_config": m.hex("mrownerconfig", 48),
		"seam_attributes": m.hex("seam_attributes", 8),
		"td_attributes":   m.hex("td_attributes", 8),
		"xfam":            m.hex("xfam", 8),
		"report_data":     m.hex("report_data", 64),
	}
	if _, ok := m.tee[m.prefix+"tee_tcb_svn"]; ok {
		body["tcb_svn"] = m.hex("tee_tcb_svn", 16)
	}
	attrs := map[string]any{}
	m.optional(attrs, "debug", "td_attributes_debug")
	m.optional(attrs, "key_locker", "td_attributes_key_locker")
	m.optional(attrs, "perfmon", "td_attributes_perfmon")
	m.optional(attrs, "protection_keys", "td_attributes_protection_keys")
	m.optional(attrs, "septve_disable", "td_attributes_septve_disable")
	if _, ok := attrs["debug"]; !ok {
		m.optional(attrs, "debug", "is_debuggable")
	}
	return verifier.Claims{"quote": map[string]any{"body": body}, "td_attributes": attrs}
}

// sgx maps ITA's SGX claims to trustee's body.* names (hex; the numbers
// as trustee renders them, little-endian).
func (m *mapper) sgx() verifier.Claims {
	body := map[string]any{
		"mr_enclave":  m.hex("mrenclave", 32),
		"mr_signer":   m.hex("mrsigner", 32),
		"report_data": m.hex("report_data", 64),
	}
	for key, name := range map[string]string{"isv_prod_id": "isvprodid", "isv_svn": "isvsvn"} {
		if n, ok := m.tee[m.prefix+name].(float64); ok && n >= 0 && n <= 0xffff && n == float64(uint16(n)) {
			body[key] = hex.EncodeToString([]byte{byte(uint16(n)), byte(uint16(n) >> 8)})
		}
	}
	if _, ok := m.tee[m.prefix+"config_id"]; ok {
		body["config_id"] = m.hex("config_id", 64)
	}
	claims := verifier.Claims{"body": body}
	m.optional(claims, "debug", "is_debuggable")
	return claims
}

// fit right-pads b with zeros, or truncates it, to n bytes.
func fit(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}
