// Package fakevault is a local stand-in for a HashiCorp Vault server's KV
// secrets engines (versions 1 and 2) and AppRole login, for tests: no Vault
// server can be installed where this project is built.
//
// It follows the documented HTTP API the vault backend relies on:
// requests carry X-Vault-Token (a missing, unknown or expired token is 403
// "permission denied"); POST /v1/auth/<approle>/login exchanges a role_id
// and secret_id for a token with a TTL; KV v1 reads, writes, deletes and
// lists at /v1/<mount>/<path> (LIST, or GET with list=true); KV v2 keeps
// versions under /v1/<mount>/data/<path> with {"data":{...},"metadata":{...}},
// soft-deletes with DELETE on data/, removes every version with DELETE on
// metadata/, and lists at metadata/; a read on a v2 mount without data/
// is 404 with Vault's "Invalid path for a versioned K/V secrets engine"
// warning; a missing entry is 404 {"errors":[]}; deletes are idempotent.
package fakevault

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
	"slices"
	"strings"
	"sync"
	"time"
)

// Options configure the fake.
type Options struct {
	// Token is a root token accepted until the server stops.
	Token string
	// RoleID and SecretID are the AppRole credentials accepted at
	// auth/approle/login; TokenTTL is the life of a token it issues
	// (default 1h).
	RoleID, SecretID string
	TokenTTL         time.Duration
	// Mounts maps KV mount paths to their version (1 or 2). Default
	// {"secret": 1, "kv2": 2}.
	Mounts map[string]int
	// TLS serves https with a test certificate (see CAPEM).
	TLS bool
}

// Server is a running fake.
type Server struct {
	URL string

	opts Options
	srv  *httptest.Server

	mu     sync.Mutex
	tokens map[string]time.Time // token -> expiry (zero: never)
	v1     map[string]map[string]any
	v2     map[string]*versioned
	counts map[string]int
}

type versioned struct {
	versions []map[string]any // index i is version i+1; nil once deleted
	deleted  []time.Time
}

// Start serves a fake on 127.0.0.1.
func Start(opts Options) *Server {
	if opts.Mounts == nil {
		opts.Mounts = map[string]int{"secret": 1, "kv2": 2}
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	s := &Server{opts: opts, tokens: map[string]time.Time{}, v1: map[string]map[string]any{},
		v2: map[string]*versioned{}, counts: map[string]int{}}
	if opts.Token != "" {
		s.tokens[opts.Token] = time.Time{}
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	// Clients that do not trust the certificate are a tested case, not news.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if opts.TLS {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	s.URL = s.srv.URL
	return s
}

// CAPEM is the certificate clients must trust (TLS only).
func (s *Server) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Count returns how many requests of a kind were served: "login",
// "denied", "read", "write", "delete", "list".
func (s *Server) Count(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[kind]
}

// ExpireTokens makes every token issued by AppRole login invalid, as their
// TTL running out would.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, exp := range s.tokens {
		if !exp.IsZero() {
			delete(s.tokens, t)
		}
	}
}

// Write stores data at a logical path ("secret/a/b/c" or, for v2,
// "kv2/a/b/c" without data/), as `vault kv put` would.
func (s *Server) Write(path string, data map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mount, rest := s.mount(path)
	if s.opts.Mounts[mount] == 2 {
		s.writeV2(mount+"/"+rest, data)
	} else {
		s.v1[path] = data
	}
}

// Read returns what is stored at a logical path (latest version for v2).
func (s *Server) Read(path string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mount, rest := s.mount(path)
	if s.opts.Mounts[mount] == 2 {
		v := s.v2[mount+"/"+rest]
		if v == nil || v.versions[len(v.versions)-1] == nil {
			return nil, false
		}
		return v.versions[len(v.versions)-1], true
	}
	d, ok := s.v1[path]
	return d, ok
}

// mount splits a logical path at its mount. Like Vault's router it takes
// the mount's own path with or without the trailing slash (clients clean
// it away).
func (s *Server) mount(path string) (mount, rest string) {
	for m := range s.opts.Mounts {
		if r, ok := strings.CutPrefix(path+"/", m+"/"); ok && len(m) > len(mount) {
			r, _ = strings.CutSuffix(r, "/")
			mount, rest = m, r
		}
	}
	return mount, rest
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func vaultErr(w http.ResponseWriter, status int, msgs ...string) {
	if msgs == nil {
		msgs = []string{}
	}
	writeJSON(w, status, map[string]any{"errors": msgs})
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func envelope(data any) map[string]any {
	return map[string]any{"request_id": randHex(8), "lease_id": "", "renewable": false,
		"lease_duration": 0, "data": data, "wrap_info": nil, "warnings": nil, "auth": nil}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		vaultErr(w, http.StatusNotFound)
		return
	}
	if path == "auth/approle/login" && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
		s.login(w, r)
		return
	}
	if !s.authorized(r.Header.Get("X-Vault-Token")) {
		s.counts["denied"]++
		vaultErr(w, http.StatusForbidden, "permission denied")
		return
	}
	method := r.Method
	if method == http.MethodGet && r.URL.Query().Get("list") == "true" {
		method = "LIST"
	}
	mount, rest := s.mount(path)
	switch {
	case mount == "":
		vaultErr(w, http.StatusNotFound, fmt.Sprintf("no handler for route %q. route entry not found.", path))
	case s.opts.Mounts[mount] == 2:
		s.kv2(w, r, method, mount, rest)
	default:
		s.kv1(w, r, method, path)
	}
}

func (s *Server) authorized(tok string) bool {
	for t, exp := range s.tokens {
		if subtle.ConstantTimeCompare([]byte(t), []byte(tok)) == 1 && (exp.IsZero() || time.Now().Before(exp)) {
			return true
		}
	}
	return false
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	s.counts["login"]++
	var body struct {
		RoleID   string `json:"role_id"`
		SecretID string `json:"secret_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.RoleID == "" {
		vaultErr(w, http.StatusBadRequest, "missing role_id")
		return
	}
	eq := func(a, b string) bool { return b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
	if !eq(body.RoleID, s.opts.RoleID) {
		vaultErr(w, http.StatusBadRequest, "invalid role ID")
		return
	}
	if !eq(body.SecretID, s.opts.SecretID) {
		vaultErr(w, http.StatusBadRequest, "invalid secret id")
		return
	}
	tok := "hvs." + randHex(16)
	s.tokens[tok] = time.Now().Add(s.opts.TokenTTL)
	resp := envelope(nil)
	resp["auth"] = map[string]any{
		"client_token": tok, "accessor": randHex(8), "policies": []string{"default", "kbs"},
		"token_policies": []string{"default", "kbs"}, "lease_duration": int(s.opts.TokenTTL.Seconds()),
		"renewable": true, "token_type": "service", "orphan": true,
	}
	writeJSON(w, http.StatusOK, resp)
}

func decodeObject(r *http.Request) (map[string]any, error) {
	var m map[string]any
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// list answers the keys directly under prefix ("a/" for sub-paths).
func list(w http.ResponseWriter, paths []string, prefix string) {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	var keys []string
	for _, p := range paths {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok || rest == "" {
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i+1]
		}
		if !slices.Contains(keys, rest) {
			keys = append(keys, rest)
		}
	}
	if len(keys) == 0 {
		vaultErr(w, http.StatusNotFound)
		return
	}
	slices.Sort(keys)
	writeJSON(w, http.StatusOK, envelope(map[string]any{"keys": keys}))
}

func (s *Server) kv1(w http.ResponseWriter, r *http.Request, method, path string) {
	switch method {
	case http.MethodGet:
		s.counts["read"]++
		d, ok := s.v1[path]
		if !ok {
			vaultErr(w, http.StatusNotFound)
			return
		}
		resp := envelope(d)
		resp["lease_duration"] = 2764800
		writeJSON(w, http.StatusOK, resp)
	case http.MethodPost, http.MethodPut:
		s.counts["write"]++
		m, err := decodeObject(r)
		if err != nil || len(m) == 0 {
			vaultErr(w, http.StatusBadRequest, "missing data fields")
			return
		}
		s.v1[path] = m
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		s.counts["delete"]++
		delete(s.v1, path)
		w.WriteHeader(http.StatusNoContent)
	case "LIST":
		s.counts["list"]++
		var paths []string
		for p := range s.v1 {
			paths = append(paths, p)
		}
		list(w, paths, path)
	default:
		vaultErr(w, http.StatusMethodNotAllowed, "unsupported operation")
	}
}

func (s *Server) writeV2(key string, data map[string]any) int {
	v := s.v2[key]
	if v == nil {
		v = &versioned{}
		s.v2[key] = v
	}
	v.versions = append(v.versions, data)
	v.deleted = append(v.deleted, time.Time{})
	return len(v.versions)
}

func metadata(v *versioned) map[string]any {
	n := len(v.versions)
	del := ""
	if !v.deleted[n-1].IsZero() {
		del = v.deleted[n-1].UTC().Format(time.RFC3339Nano)
	}
	return map[string]any{"created_time": time.Now().UTC().Format(time.RFC3339Nano), "custom_metadata": nil,
		"deletion_time": del, "destroyed": false, "version": n}
}

func (s *Server) kv2(w http.ResponseWriter, r *http.Request, method, mount, rest string) {
	kind, sub, _ := strings.Cut(rest, "/")
	key := mount + "/" + sub
	switch {
	case kind == "data" && method == http.MethodGet:
		s.counts["read"]++
		v := s.v2[key]
		if v == nil {
			vaultErr(w, http.StatusNotFound)
			return
		}
		latest := v.versions[len(v.versions)-1]
		status := http.StatusOK
		if latest == nil {
			status = http.StatusNotFound // soft-deleted: Vault still shows the metadata
		}
		writeJSON(w, status, envelope(map[string]any{"data": latest, "metadata": metadata(v)}))
	case kind == "data" && (method == http.MethodPost || method == http.MethodPut):
		s.counts["write"]++
		m, err := decodeObject(r)
		data, ok := m["data"].(map[string]any)
		if err != nil || !ok {
			vaultErr(w, http.StatusBadRequest, "no data provided")
			return
		}
		s.writeV2(key, data)
		writeJSON(w, http.StatusOK, envelope(metadata(s.v2[key])))
	case kind == "data" && method == http.MethodDelete:
		s.counts["delete"]++
		if v := s.v2[key]; v != nil {
			n := len(v.versions) - 1
			v.versions[n], v.deleted[n] = nil, time.Now()
		}
		w.WriteHeader(http.StatusNoContent)
	case kind == "metadata" && method == http.MethodGet:
		s.counts["read"]++
		v := s.v2[key]
		if v == nil {
			vaultErr(w, http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, envelope(map[string]any{"current_version": len(v.versions), "versions": map[string]any{}}))
	case kind == "metadata" && method == http.MethodDelete:
		s.counts["delete"]++
		delete(s.v2, key)
		w.WriteHeader(http.StatusNoContent)
	case kind == "metadata" && method == "LIST":
		s.counts["list"]++
		var paths []string
		for p := range s.v2 {
			if q, ok := strings.CutPrefix(p, mount+"/"); ok {
				paths = append(paths, q)
			}
		}
		list(w, paths, sub)
	default:
		resp := map[string]any{"errors": []string{}, "warnings": []string{
			"Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation.",
		}}
		writeJSON(w, http.StatusNotFound, resp)
	}
}
