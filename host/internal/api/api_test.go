package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/gokbs/kbs/host/internal/metrics"
	"github.com/gokbs/kbs/host/internal/protocol"
	"github.com/gokbs/kbs/host/internal/session"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/token"
	"github.com/gokbs/kbs/sdk/verifier"
)

// plugins has a sample verifier and nothing else.
type plugins struct{}

func (plugins) Verifier(tee string) (verifier.Verifier, error) {
	if tee != "sample" {
		return nil, sdk.Unsupported("no verifier for %s", tee)
	}
	return nil, nil
}
func (plugins) Resource(resource.Path) (resource.Backend, error) { return nil, sdk.NotFound("none") }
func (plugins) TokenIssuer() (token.Issuer, error)               { return nil, sdk.Unsupported("none") }
func (plugins) ListResources(context.Context, string) ([]resource.Path, error) {
	return nil, nil
}

// tokens rejects every token and records the request ID it was asked under.
type tokens struct {
	mu  sync.Mutex
	ids []string
}

func (v *tokens) Verify(ctx context.Context, _ string) (map[string]any, error) {
	v.mu.Lock()
	v.ids = append(v.ids, sdk.RequestID(ctx))
	v.mu.Unlock()
	return nil, sdk.BadEvidence("no")
}
func (v *tokens) TEEPubKey(map[string]any) (json.RawMessage, error) { return nil, sdk.NotFound("none") }

func newServer(t *testing.T, limit *rate.Limiter) (*httptest.Server, *tokens) {
	t.Helper()
	sessions := session.NewMemory(100, 0)
	t.Cleanup(sessions.Close)
	tv := &tokens{}
	s := &Server{
		Protocol:  &protocol.Service{Plugins: plugins{}, Sessions: sessions, Tokens: tv, SessionTimeout: time.Minute},
		MaxBody:   1 << 20,
		Metrics:   metrics.New(),
		AuthLimit: limit,
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, tv
}

func do(t *testing.T, method, url, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const authBody = `{"version":"0.4.0","tee":"sample","extra-params":""}`

func TestRequestID(t *testing.T) {
	srv, tv := newServer(t, nil)
	tests := map[string]struct {
		sent     string
		kept     bool
		endpoint string
	}{
		"plain ID is kept":        {sent: "guest-7.req:42_a", kept: true},
		"absent is made":          {},
		"unsafe ID is replaced":   {sent: "a\"b c"},
		"too long is replaced":    {sent: strings.Repeat("a", sdk.MaxRequestIDLen+1)},
		"on errors too":           {sent: "err-1", kept: true, endpoint: "/kbs/v0/nope"},
		"reaches the token check": {sent: "tok-1", kept: true, endpoint: "/kbs/v0/resource/a/b/c"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := map[string]string{}
			if tc.sent != "" {
				h[RequestIDHeader] = tc.sent
			}
			path := tc.endpoint
			if path == "" {
				path = "/healthz"
			}
			if strings.HasPrefix(path, "/kbs/v0/resource/") {
				h["Authorization"] = "Bearer x.y.z"
			}
			resp, _ := do(t, http.MethodGet, srv.URL+path, "", h)
			got := resp.Header.Get(RequestIDHeader)
			switch {
			case tc.kept && got != tc.sent:
				t.Fatalf("response request ID %q, want %q", got, tc.sent)
			case !tc.kept && (len(got) != 32 || got == tc.sent):
				t.Fatalf("response request ID %q, want a new 32-hex ID", got)
			}
			if strings.HasPrefix(path, "/kbs/v0/resource/") {
				tv.mu.Lock()
				defer tv.mu.Unlock()
				if n := len(tv.ids); n == 0 || tv.ids[n-1] != tc.sent {
					t.Fatalf("token check ran under request IDs %q, want %q last", tv.ids, tc.sent)
				}
			}
		})
	}
}

func TestAuthRateLimit(t *testing.T) {
	srv, _ := newServer(t, rate.NewLimiter(rate.Every(time.Hour), 2))
	for i := 0; i < 2; i++ {
		if resp, body := do(t, http.MethodPost, srv.URL+"/kbs/v0/auth", authBody, nil); resp.StatusCode != 200 {
			t.Fatalf("auth %d within the burst: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := do(t, http.MethodPost, srv.URL+"/kbs/v0/auth", authBody, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("auth beyond the burst: %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Type != ErrorTypePrefix+"TooManyRequests" || e.Detail == "" {
		t.Fatalf("429 body %s is not KBS error JSON of type TooManyRequests", body)
	}
	// Other endpoints are not limited.
	if resp, _ := do(t, http.MethodGet, srv.URL+"/healthz", "", nil); resp.StatusCode != 200 {
		t.Fatalf("healthz while auth is limited: %d", resp.StatusCode)
	}
	_, metricsText := do(t, http.MethodGet, srv.URL+"/metrics", "", nil)
	for _, want := range []string{
		"kbs_auth_rate_limited_total 1",
		`kbs_errors_total{type="TooManyRequests"} 1`,
		`kbs_http_requests_total{code="429",endpoint="/kbs/v0/auth",method="POST"} 1`,
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestMetrics(t *testing.T) {
	srv, _ := newServer(t, nil)
	do(t, http.MethodPost, srv.URL+"/kbs/v0/auth", authBody, nil)
	do(t, http.MethodPost, srv.URL+"/kbs/v0/auth", `{"version":"0.4.0","tee":"tdx","extra-params":""}`, nil)
	do(t, http.MethodGet, srv.URL+"/kbs/v0/resource/a/b/c", "", map[string]string{"Authorization": "Bearer x.y.z"})
	do(t, http.MethodGet, srv.URL+"/kbs/v0/resource/d/e/f", "", map[string]string{"Authorization": "Bearer x.y.z"})
	do(t, http.MethodGet, srv.URL+"/no/such/thing", "", nil)
	resp, text := do(t, http.MethodGet, srv.URL+"/metrics", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`kbs_http_requests_total{code="200",endpoint="/kbs/v0/auth",method="POST"} 1`,
		`kbs_http_requests_total{code="401",endpoint="/kbs/v0/auth",method="POST"} 1`,
		// The route, not the path: one series for every resource.
		`kbs_http_requests_total{code="401",endpoint="/kbs/v0/resource/*",method="GET"} 2`,
		`kbs_http_request_duration_seconds_count{endpoint="/kbs/v0/resource/*",method="GET"} 2`,
		`kbs_errors_total{type="TokenVerifierError"} 2`,
		`kbs_errors_total{type="AttestationError"} 1`,
		"go_goroutines",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(text, "/no/such/thing") || strings.Contains(text, "a/b/c") {
		t.Errorf("/metrics has a raw path as a label")
	}
}

func TestMethodNotAllowed(t *testing.T) {
	srv, _ := newServer(t, nil)
	tests := map[string]struct {
		method, path string
		status       int
		typ          string
	}{
		"GET auth":        {http.MethodGet, "/kbs/v0/auth", 405, "MethodNotAllowed"},
		"PUT attest":      {http.MethodPut, "/kbs/v0/attest", 405, "MethodNotAllowed"},
		"PATCH resource":  {http.MethodPatch, "/kbs/v0/resource/a/b/c", 405, "MethodNotAllowed"},
		"unknown plugin":  {http.MethodGet, "/kbs/v0/nebula-ca/credential", 404, "PluginNotFound"},
		"outside /kbs/v0": {http.MethodGet, "/nothing", 404, "InvalidRequestPath"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, body := do(t, tc.method, srv.URL+tc.path, "", nil)
			var e errorBody
			if resp.StatusCode != tc.status || json.Unmarshal([]byte(body), &e) != nil || e.Type != ErrorTypePrefix+tc.typ {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, body, tc.status, tc.typ)
			}
		})
	}
}
