package ita

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// fakeITA is a local Trust Authority that follows the documented API:
// POST /appraisal/v1/attest with {"quote", "policy_ids", "policy_must_match"}
// and the x-api-key header, answering {"token": <JWT>} or {"error": ...};
// GET /certs serving the token signing keys as a JWKS. It "verifies" a
// quote by finding a marker after the report body, reads the report body at
// the offsets of the TDX v4/v5 and SGX v3 formats, and signs PS384 tokens
// with a test key.
type fakeITA struct {
	srv    *httptest.Server
	apiKey string

	mu        sync.Mutex
	key       *rsa.PrivateKey
	kid       string
	signWith  *rsa.PrivateKey // another key under the same kid (bad signature)
	alg       jose.SignatureAlgorithm
	v2        bool          // nest the TEE claims (version 2 tokens)
	expiresIn time.Duration // token lifetime; negative for an expired token
	delay     time.Duration
	status    int // answer this status instead
	mutate    func(claims, tee map[string]any)
	lastBody  map[string]any

	attests, jwksHits atomic.Int32
}

// quoteMarker stands for a valid quote signature.
var quoteMarker = []byte("SIGNED-BY-A-GENUINE-QE")

var rsaKeys = struct {
	once sync.Once
	a, b *rsa.PrivateKey
}{}

// testKeys are made once: RSA key generation is slow.
func testKeys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	rsaKeys.once.Do(func() {
		var err error
		if rsaKeys.a, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
		if rsaKeys.b, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
	})
	return rsaKeys.a, rsaKeys.b
}

func newFakeITA(t testing.TB) *fakeITA {
	t.Helper()
	a, _ := testKeys(t)
	f := &fakeITA{apiKey: "test-api-key", key: a, kid: "kid-1", alg: jose.PS384, expiresIn: 5 * time.Minute}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /appraisal/v1/attest", f.attest)
	mux.HandleFunc("GET /certs", f.certs)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeITA) set(fn func(f *fakeITA)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeITA) certs(w http.ResponseWriter, _ *http.Request) {
	f.jwksHits.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: f.kid, Algorithm: string(f.alg), Use: "sig"}}})
}

func (f *fakeITA) attest(w http.ResponseWriter, r *http.Request) {
	f.attests.Add(1)
	f.mu.Lock()
	delay, status := f.delay, f.status
	f.mu.Unlock()
	// The body is read first: only then does the server notice a client
	// that gave up.
	var body map[string]any
	bodyErr := json.NewDecoder(r.Body).Decode(&body)
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if r.Header.Get("x-api-key") != f.apiKey {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Unauthorized"})
		return
	}
	if status != 0 {
		writeJSON(w, status, map[string]string{"error": "service unavailable"})
		return
	}
	if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Accept") != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "json only"})
		return
	}
	if bodyErr != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Invalid request body"})
		return
	}
	f.mu.Lock()
	f.lastBody = body
	f.mu.Unlock()
	qs, _ := body["quote"].(string)
	q, err := base64.StdEncoding.DecodeString(qs)
	if err != nil || len(q) < 48 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Invalid quote"})
		return
	}
	tee, teeClaims := parseQuote(q)
	if tee == "" || !bytes.Contains(q, quoteMarker) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Quote verification failed: invalid quote signature"})
		return
	}
	var unmatched []any
	if ids, _ := body["policy_ids"].([]any); len(ids) > 0 {
		unmatched = ids // the fake's policies never match
		if must, _ := body["policy_must_match"].(bool); must {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Policy must match: policies unmatched"})
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	claims := map[string]any{
		"iss": "Intel Trust Authority", "jti": "c0ffee", "ver": "1.0.0",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(f.expiresIn).Unix(),
		"eat_profile":           "https://portal.trustauthority.intel.com/eat_profile.html",
		"verifier_instance_ids": []string{"4b5bd2d0-1f5c-4a4c-8c7e-0a3a0a0a0a0a"},
	}
	for k, v := range map[string]any{
		"attester_type": map[string]string{"tdx": "TDX", "sgx": "SGX"}[tee], "attester_tcb_status": "UpToDate",
		"attester_tcb_date": "2024-03-13T00:00:00Z", "attester_advisory_ids": []string{"INTEL-SA-00960"},
	} {
		teeClaims[k] = v
	}
	if unmatched != nil {
		claims["policy_ids_unmatched"] = unmatched
	}
	if f.mutate != nil {
		f.mutate(claims, teeClaims)
	}
	if f.v2 {
		claims[tee] = teeClaims
	} else {
		for k, v := range teeClaims {
			claims[k] = v
		}
	}
	signer := f.key
	if f.signWith != nil {
		signer = f.signWith
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: f.alg, Key: signer},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", f.kid).WithHeader("jku", f.srv.URL+"/certs"))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

// parseQuote reads a quote's report body into ITA's claims.
func parseQuote(q []byte) (string, map[string]any) {
	le := binary.LittleEndian
	version, teeType := le.Uint16(q), le.Uint32(q[4:])
	h := func(b []byte) string { return hex.EncodeToString(b) }
	switch {
	case (version == 4 || version == 5) && teeType == 0x81 && len(q) >= 48+584:
		b := q[48:]
		if version == 5 {
			b = q[48+6:] // v5 adds a type and a size before the body
		}
		attrs := le.Uint64(b[120:])
		return "tdx", map[string]any{
			"tdx_tee_tcb_svn": h(b[0:16]), "tdx_mrseam": h(b[16:64]), "tdx_mrsignerseam": h(b[64:112]),
			"tdx_seam_attributes": h(b[112:120]), "tdx_td_attributes": h(b[120:128]), "tdx_xfam": h(b[128:136]),
			"tdx_mrtd": h(b[136:184]), "tdx_mrconfigid": h(b[184:232]), "tdx_mrowner": h(b[232:280]),
			"tdx_mrownerconfig": h(b[280:328]), "tdx_rtmr0": h(b[328:376]), "tdx_rtmr1": h(b[376:424]),
			"tdx_rtmr2": h(b[424:472]), "tdx_rtmr3": h(b[472:520]), "tdx_report_data": h(b[520:584]),
			"tdx_td_attributes_debug": attrs&1 != 0, "tdx_td_attributes_septve_disable": attrs&(1<<28) != 0,
			"tdx_td_attributes_protection_keys": attrs&(1<<30) != 0, "tdx_td_attributes_key_locker": attrs&(1<<31) != 0,
			"tdx_td_attributes_perfmon": attrs&(1<<63) != 0, "tdx_is_debuggable": attrs&1 != 0,
		}
	case version == 3 && teeType == 0 && len(q) >= 48+384:
		b := q[48:]
		return "sgx", map[string]any{
			"sgx_mrenclave": h(b[64:96]), "sgx_mrsigner": h(b[128:160]), "sgx_config_id": h(b[192:256]),
			"sgx_isvprodid": le.Uint16(b[256:]), "sgx_isvsvn": le.Uint16(b[258:]), "sgx_report_data": h(b[320:384]),
			"sgx_is_debuggable": b[48]&2 != 0,
		}
	}
	return "", nil
}

// tdxQuote builds a TDX v4 quote: header, report body, and (unless the
// quote should fail appraisal) the marker that stands for its signature.
func tdxQuote(reportData, mrConfigID []byte, signed bool) []byte {
	q := make([]byte, 48+584)
	le := binary.LittleEndian
	le.PutUint16(q, 4)
	le.PutUint16(q[2:], 2)
	le.PutUint32(q[4:], 0x81)
	b := q[48:]
	for i := range 48 {
		b[136+i] = byte(0xD0 + i%16) // mr_td
		b[16+i] = byte(0x5E)         // mr_seam
	}
	copy(b[184:232], mrConfigID)
	le.PutUint64(b[120:], 1<<28) // septve_disable
	copy(b[520:584], reportData)
	if signed {
		q = append(q, quoteMarker...)
	}
	return q
}

// sgxQuote builds an SGX v3 quote.
func sgxQuote(reportData, configID []byte, signed bool) []byte {
	q := make([]byte, 48+384)
	le := binary.LittleEndian
	le.PutUint16(q, 3)
	le.PutUint16(q[2:], 2)
	b := q[48:]
	for i := range 32 {
		b[64+i] = byte(0xE0 + i%16) // mr_enclave
		b[128+i] = 0x51             // mr_signer
	}
	copy(b[192:256], configID)
	le.PutUint16(b[256:], 7) // isv_prod_id
	le.PutUint16(b[258:], 2) // isv_svn
	copy(b[320:384], reportData)
	if signed {
		q = append(q, quoteMarker...)
	}
	return q
}

func quoteEvidence(q []byte) []byte {
	b, _ := json.Marshal(map[string]any{"quote": base64.StdEncoding.EncodeToString(q), "cc_eventlog": nil})
	return b
}

// settingsFor are the plugin settings for the fake, with overrides.
func (f *fakeITA) settingsFor(t testing.TB, over map[string]any) []byte {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(keyFile, []byte(f.apiKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{"base_url": f.srv.URL, "api_key_file": keyFile, "jwks_url": f.srv.URL + "/certs", "timeout": "5s"}
	for k, v := range over {
		if v == nil {
			delete(cfg, k)
		} else {
			cfg[k] = v
		}
	}
	b, _ := json.Marshal(cfg)
	return b
}
