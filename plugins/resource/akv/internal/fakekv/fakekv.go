// Package fakekv is a local stand-in for Azure Key Vault's secrets REST API
// and the Microsoft Entra token endpoint, for tests: no Key Vault can be
// reached from where this project is built.
//
// It follows the documented behaviour the akv backend relies on: TLS only;
// every secrets call must carry a Bearer token, and a call without one gets
// 401 with the challenge header
//
//	WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>", resource="https://vault.azure.net"
//
// from which the SDK learns the tenant and scope; tokens come from
// POST /<tenant>/oauth2/v2.0/token (client secret, or a client assertion
// as workload identity sends); an api-version query parameter is required;
// names are 1-127 letters, digits and dashes, case-insensitive; values are
// strings with an optional contentType; delete is soft (the name stays
// reserved until recovered or purged, and a PUT to it is 409
// ObjectIsDeletedButRecoverable); lists are paged through nextLink.
package fakekv

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure the fake. Empty fields take the defaults shown.
type Options struct {
	TenantID string // "00000000-0000-0000-0000-00000000cafe"
	ClientID string // "11111111-1111-1111-1111-111111111111"
	// ClientSecret is the secret a client-credentials request must present.
	ClientSecret string
	// FederatedToken is the client assertion a workload identity request
	// must present (the projected service account token).
	FederatedToken string
	// Resource is the challenge's resource: "https://vault.azure.net".
	Resource string
	// PageSize bounds a list page: 25, Key Vault's maximum.
	PageSize int
}

// Default identities.
const (
	DefaultTenantID = "00000000-0000-0000-0000-00000000cafe"
	DefaultClientID = "11111111-1111-1111-1111-111111111111"
)

// apiVersions the fake accepts: those of the current SDKs.
var apiVersions = []string{"7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"}

var nameRE = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)

// Server is a running fake. URL serves both the vault and the authority.
type Server struct {
	URL string

	opts Options
	srv  *httptest.Server

	mu      sync.Mutex
	secrets map[string]*secret // by lower-case name
	deleted map[string]*secret
	tokens  map[string]time.Time
	counts  map[string]int
}

type secret struct {
	name, value, contentType string
	version                  string
	created, updated         time.Time
	deletedAt                time.Time
}

// Start serves a fake on a TLS listener on 127.0.0.1.
func Start(opts Options) *Server {
	if opts.TenantID == "" {
		opts.TenantID = DefaultTenantID
	}
	if opts.ClientID == "" {
		opts.ClientID = DefaultClientID
	}
	if opts.Resource == "" {
		opts.Resource = "https://vault.azure.net"
	}
	if opts.PageSize <= 0 || opts.PageSize > 25 {
		opts.PageSize = 25
	}
	s := &Server{
		opts:    opts,
		secrets: map[string]*secret{},
		deleted: map[string]*secret{},
		tokens:  map[string]time.Time{},
		counts:  map[string]int{},
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	// Clients that do not trust the certificate are a tested case, not news.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.StartTLS()
	s.URL = s.srv.URL
	return s
}

// CAPEM is the certificate clients must trust to reach the server.
func (s *Server) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// Close stops the server; later requests fail to connect.
func (s *Server) Close() { s.srv.Close() }

// Count returns how many requests of a kind were served: "token",
// "challenge", "get", "set", "delete", "list", "recover".
func (s *Server) Count(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[kind]
}

// SetSecret stores a secret directly, as an operator would with the
// portal or `az keyvault secret set`.
func (s *Server) SetSecret(name, value, contentType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.store(name, value, contentType)
}

// Secret returns a stored secret's value and content type.
func (s *Server) Secret(name string) (value, contentType string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, ok := s.secrets[strings.ToLower(name)]
	if !ok {
		return "", "", false
	}
	return sec.value, sec.contentType, true
}

// Names returns the names of the live secrets, as created.
func (s *Server) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, sec := range s.secrets {
		out = append(out, sec.name)
	}
	slices.Sort(out)
	return out
}

func (s *Server) store(name, value, contentType string) *secret {
	now := time.Now().UTC().Truncate(time.Second)
	key := strings.ToLower(name)
	sec := s.secrets[key]
	if sec == nil {
		sec = &secret{name: name, created: now}
		s.secrets[key] = sec
	}
	sec.value, sec.contentType, sec.updated = value, contentType, now
	sec.version = randHex(16)
	return sec
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := r.URL.Path
	tenant := "/" + s.opts.TenantID
	switch {
	case p == "/common/discovery/instance" || p == tenant+"/discovery/instance":
		s.instanceDiscovery(w, r)
	case p == tenant+"/v2.0/.well-known/openid-configuration":
		s.openIDConfig(w)
	case p == tenant+"/oauth2/v2.0/token" && r.Method == http.MethodPost:
		s.token(w, r)
	case p == "/secrets" || strings.HasPrefix(p, "/secrets/") || strings.HasPrefix(p, "/deletedsecrets/"):
		s.vault(w, r)
	default:
		aadError(w, http.StatusNotFound, "invalid_request", "AADSTS90002: no such endpoint "+p)
	}
}

func (s *Server) instanceDiscovery(w http.ResponseWriter, r *http.Request) {
	host := strings.TrimPrefix(s.URL, "https://")
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": s.URL + "/" + s.opts.TenantID + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata": []map[string]any{{
			"preferred_network": host, "preferred_cache": host, "aliases": []string{host},
		}},
	})
}

func (s *Server) openIDConfig(w http.ResponseWriter) {
	base := s.URL + "/" + s.opts.TenantID
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"issuer":                                base + "/v2.0",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
	})
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.counts["token"]++
	if err := r.ParseForm(); err != nil {
		aadError(w, http.StatusBadRequest, "invalid_request", "AADSTS900144: malformed body")
		return
	}
	f := r.PostForm
	switch {
	case f.Get("grant_type") != "client_credentials":
		aadError(w, http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003: grant type not supported")
		return
	case f.Get("client_id") != s.opts.ClientID:
		aadError(w, http.StatusBadRequest, "unauthorized_client", "AADSTS700016: application not found in the directory")
		return
	case !slices.Contains(strings.Fields(f.Get("scope")), s.opts.Resource+"/.default"):
		aadError(w, http.StatusBadRequest, "invalid_scope", "AADSTS70011: the provided scope is not valid")
		return
	}
	ok := false
	if a := f.Get("client_assertion"); a != "" {
		ok = f.Get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" &&
			s.opts.FederatedToken != "" && equal(a, s.opts.FederatedToken)
	} else if sec := f.Get("client_secret"); sec != "" {
		ok = s.opts.ClientSecret != "" && equal(sec, s.opts.ClientSecret)
	}
	if !ok {
		aadError(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		return
	}
	tok := randHex(32)
	s.tokens[tok] = time.Now().Add(time.Hour)
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok,
	})
}

func aadError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]any{"error": code, "error_description": desc, "error_codes": []int{status}})
}

func kvError(w http.ResponseWriter, status int, code, msg, inner string) {
	e := map[string]any{"code": code, "message": msg}
	if inner != "" {
		e["innererror"] = map[string]any{"code": inner}
	}
	writeJSON(w, status, map[string]any{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	for t, exp := range s.tokens {
		if equal(t, tok) && time.Now().Before(exp) {
			return true
		}
	}
	return false
}

func (s *Server) vault(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.counts["challenge"]++
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="https://login.microsoftonline.com/%s", resource="%s"`,
			s.opts.TenantID, s.opts.Resource))
		kvError(w, http.StatusUnauthorized, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", "")
		return
	}
	if v := r.URL.Query().Get("api-version"); !slices.Contains(apiVersions, v) {
		kvError(w, http.StatusBadRequest, "BadParameter",
			fmt.Sprintf("The specified version (%s) is not recognized. Consider using the latest supported version (7.6).", v), "")
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "secrets" && r.Method == http.MethodGet:
		s.list(w, r)
	case parts[0] == "secrets" && len(parts) >= 2 && len(parts) <= 3:
		if !nameRE.MatchString(parts[1]) {
			kvError(w, http.StatusBadRequest, "BadParameter", "The request URI contains an invalid name: "+parts[1], "")
			return
		}
		switch {
		case r.Method == http.MethodGet && len(parts) == 3:
			s.get(w, parts[1], parts[2])
		case r.Method == http.MethodPut && len(parts) == 2:
			s.set(w, r, parts[1])
		case r.Method == http.MethodDelete && len(parts) == 2:
			s.delete(w, parts[1])
		default:
			kvError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed", "")
		}
	case parts[0] == "deletedsecrets" && len(parts) == 3 && parts[2] == "recover" && r.Method == http.MethodPost:
		s.recover(w, parts[1])
	case parts[0] == "deletedsecrets" && len(parts) == 2 && r.Method == http.MethodDelete:
		s.purge(w, parts[1])
	default:
		kvError(w, http.StatusNotFound, "NotFound", "no such operation", "")
	}
}

func (s *Server) attributes(sec *secret) map[string]any {
	return map[string]any{
		"enabled": true, "created": sec.created.Unix(), "updated": sec.updated.Unix(),
		"recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90,
	}
}

func (s *Server) bundle(sec *secret) map[string]any {
	b := map[string]any{
		"value": sec.value, "id": s.URL + "/secrets/" + sec.name + "/" + sec.version,
		"attributes": s.attributes(sec), "tags": map[string]string{},
	}
	if sec.contentType != "" {
		b["contentType"] = sec.contentType
	}
	return b
}

func notFound(w http.ResponseWriter, name string) {
	kvError(w, http.StatusNotFound, "SecretNotFound",
		fmt.Sprintf("A secret with (name/id) %s was not found in this key vault.", name), "")
}

func (s *Server) get(w http.ResponseWriter, name, version string) {
	s.counts["get"]++
	sec := s.secrets[strings.ToLower(name)]
	if sec == nil || (version != "" && version != sec.version) {
		notFound(w, name)
		return
	}
	writeJSON(w, http.StatusOK, s.bundle(sec))
}

func (s *Server) set(w http.ResponseWriter, r *http.Request, name string) {
	s.counts["set"]++
	var body struct {
		Value       *string `json:"value"`
		ContentType string  `json:"contentType"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Value == nil {
		kvError(w, http.StatusBadRequest, "BadParameter", "Property value is required.", "")
		return
	}
	if _, gone := s.deleted[strings.ToLower(name)]; gone {
		kvError(w, http.StatusConflict, "Conflict",
			fmt.Sprintf("Secret %s is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.", name),
			"ObjectIsDeletedButRecoverable")
		return
	}
	writeJSON(w, http.StatusOK, s.bundle(s.store(name, *body.Value, body.ContentType)))
}

func (s *Server) delete(w http.ResponseWriter, name string) {
	s.counts["delete"]++
	key := strings.ToLower(name)
	sec := s.secrets[key]
	if sec == nil {
		notFound(w, name)
		return
	}
	delete(s.secrets, key)
	sec.deletedAt = time.Now().UTC()
	s.deleted[key] = sec
	b := s.bundle(sec)
	delete(b, "value")
	b["recoveryId"] = s.URL + "/deletedsecrets/" + sec.name
	b["deletedDate"] = sec.deletedAt.Unix()
	b["scheduledPurgeDate"] = sec.deletedAt.Add(90 * 24 * time.Hour).Unix()
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) recover(w http.ResponseWriter, name string) {
	s.counts["recover"]++
	key := strings.ToLower(name)
	sec := s.deleted[key]
	if sec == nil {
		kvError(w, http.StatusNotFound, "SecretNotFound", fmt.Sprintf("Deleted Secret not found: %s", name), "")
		return
	}
	delete(s.deleted, key)
	s.secrets[key] = sec
	writeJSON(w, http.StatusOK, s.bundle(sec))
}

func (s *Server) purge(w http.ResponseWriter, name string) {
	key := strings.ToLower(name)
	if s.deleted[key] == nil {
		kvError(w, http.StatusNotFound, "SecretNotFound", fmt.Sprintf("Deleted Secret not found: %s", name), "")
		return
	}
	delete(s.deleted, key)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	s.counts["list"]++
	q := r.URL.Query()
	size := s.opts.PageSize
	if m, err := strconv.Atoi(q.Get("maxresults")); err == nil && m > 0 && m < size {
		size = m
	}
	skip, _ := strconv.Atoi(q.Get("$skiptoken"))
	var names []string
	for k := range s.secrets {
		names = append(names, k)
	}
	slices.Sort(names)
	items := []map[string]any{}
	for i := skip; i < len(names) && i < skip+size; i++ {
		sec := s.secrets[names[i]]
		item := map[string]any{"id": s.URL + "/secrets/" + sec.name, "attributes": s.attributes(sec), "tags": map[string]string{}}
		if sec.contentType != "" {
			item["contentType"] = sec.contentType
		}
		items = append(items, item)
	}
	var next any
	if skip+size < len(names) {
		next = fmt.Sprintf("%s/secrets?api-version=%s&$skiptoken=%d&maxresults=%d", s.URL, q.Get("api-version"), skip+size, size)
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": items, "nextLink": next})
}
