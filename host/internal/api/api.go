// Package api is the broker's HTTP surface: routes, request limits, cookies
// and the KBS error JSON. It parses and writes; internal/protocol decides.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/gokbs/kbs/host/internal/adminauth"
	"github.com/gokbs/kbs/host/internal/kbserr"
	"github.com/gokbs/kbs/host/internal/metrics"
	"github.com/gokbs/kbs/host/internal/protocol"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
)

// ErrorTypePrefix starts the "type" of every error body, as trustee's does.
const ErrorTypePrefix = "https://github.com/confidential-containers/kbs/errors/"

// CookieName is the session cookie of the protocol.
const CookieName = "kbs-session-id"

// RequestIDHeader carries a request's ID: taken from the request when it
// is plain (sdk.ValidRequestID), else made here; echoed in the response,
// logged, and passed into every plugin call the request makes.
const RequestIDHeader = "X-Request-Id"

// Readiness reports whether the broker can serve (plugins and stores up).
type Readiness func() error

// AdminGate authorises admin requests and records what they changed.
type AdminGate interface {
	// Authorize returns who made r, or a *kbserr.Error.
	Authorize(r *http.Request) (adminauth.Principal, error)
	// Record writes the audit line of an admin change.
	Record(p adminauth.Principal, action, target string, err error)
}

// Server holds what the handlers need.
type Server struct {
	Protocol *protocol.Service
	Ready    Readiness
	Admin    AdminGate
	// MaxBody is the request body limit in bytes.
	MaxBody int64
	Log     hclog.Logger
	// Extra registers further routes (admin endpoints of later features).
	Extra func(e *echo.Echo)
	// Metrics, when set, counts requests and errors and serves /metrics.
	Metrics *metrics.Metrics
	// AuthLimit, when set, bounds the rate of /auth (session.auth_rate):
	// beyond it auth answers 429, so that a flood cannot fill the session
	// store faster than sessions expire.
	AuthLimit *rate.Limiter
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.errorHandler
	e.Use(s.observe)

	e.GET("/healthz", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	e.GET("/readyz", s.readyz)
	if s.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(s.Metrics.Handler()))
	}

	g := e.Group("/kbs/v0")
	g.POST("/auth", s.auth)
	g.POST("/attest", s.attest)
	g.GET("/resource/*", s.getResource)
	g.POST("/resource/*", s.putResource)
	g.PUT("/resource/*", s.putResource)
	g.DELETE("/resource/*", s.deleteResource)
	g.GET("/resources", s.listResources)
	if s.Extra != nil {
		s.Extra(e)
	}
	g.Any("/*", func(c echo.Context) error {
		seg := strings.SplitN(strings.TrimPrefix(c.Request().URL.Path, "/kbs/v0/"), "/", 2)[0]
		if protocolEndpoints[seg] {
			// The catch-all hides echo's own 405 for these.
			return kbserr.New(kbserr.MethodNotAllowed, kbserr.MethodNotAllowedError, "%s is not allowed on /kbs/v0/%s", c.Request().Method, seg)
		}
		return kbserr.New(kbserr.NotFound, kbserr.PluginNotFound, "no endpoint or plugin %q under /kbs/v0", seg)
	})
	return e
}

// observe gives the request its ID, and counts and times it. Errors are
// written here, so that the status is known when the request is counted.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		r := c.Request()
		id := r.Header.Get(RequestIDHeader)
		if !sdk.ValidRequestID(id) {
			id = newRequestID()
		}
		c.Response().Header().Set(RequestIDHeader, id)
		c.SetRequest(r.WithContext(sdk.WithRequestID(r.Context(), id)))
		if err := next(c); err != nil {
			c.Error(err)
		}
		elapsed := time.Since(start)
		s.Metrics.Request(c.Path(), r.Method, c.Response().Status, elapsed)
		if s.Log != nil && s.Log.IsDebug() {
			s.Log.Debug("request", "request_id", id, "method", r.Method, "route", c.Path(),
				"status", c.Response().Status, "duration", elapsed)
		}
		return nil
	}
}

// newRequestID returns 16 random bytes in hex.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux
	return hex.EncodeToString(b[:])
}

// protocolEndpoints are the protocol's routes under /kbs/v0: another
// method on them is a 405, not an unknown plugin.
var protocolEndpoints = map[string]bool{"auth": true, "attest": true, "resource": true}

func (s *Server) readyz(c echo.Context) error {
	if s.Ready != nil {
		if err := s.Ready(); err != nil {
			return kbserr.New(kbserr.Unavailable, kbserr.PluginUnavailable, "not ready: %v", err)
		}
	}
	return c.NoContent(http.StatusOK)
}

// readBody reads the request body up to MaxBody. A larger body is a 413
// with the KBS error JSON, not the framework's plain-text answer.
func (s *Server) readBody(c echo.Context) ([]byte, error) { return ReadBody(c, s.MaxBody) }

// ReadBody reads a request body of at most max bytes; a larger one is a
// 413 with the KBS error JSON. The admin endpoints use it too.
func ReadBody(c echo.Context, max int64) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > max {
		return nil, tooLarge(max)
	}
	body, err := readAll(http.MaxBytesReader(c.Response(), r.Body, max), r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(max)
		}
		return nil, kbserr.New(kbserr.Malformed, kbserr.SerdeError, "reading the request body: %v", err)
	}
	return body, nil
}

// preallocMax bounds the buffer made up front from a request's declared
// Content-Length: larger bodies grow as their bytes arrive, so that a
// client cannot make the broker hold memory for bytes it never sends.
const preallocMax = 64 << 10

// readAll is io.ReadAll with one allocation for the usual small body of
// a known length.
func readAll(r io.Reader, declared int64) ([]byte, error) {
	if declared <= 0 || declared > preallocMax {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, declared+1) // +1: room to see EOF without growing
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

func tooLarge(limit int64) error {
	return kbserr.New(kbserr.TooLarge, kbserr.PayloadTooLarge,
		"request body larger than the limit of %d bytes (http_server.payload_request_size)", limit)
}

func (s *Server) auth(c echo.Context) error {
	if s.AuthLimit != nil && !s.AuthLimit.Allow() {
		s.Metrics.RateLimited()
		c.Response().Header().Set("Retry-After", "1")
		return kbserr.New(kbserr.RateLimited, kbserr.TooManyRequests,
			"too many handshakes are starting (session.auth_rate); retry in a moment")
	}
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	ch, sess, err := s.Protocol.Auth(c.Request().Context(), body)
	if err != nil {
		return err
	}
	setSessionCookie(c, sess.ID, sess.ExpiresAt)
	return c.JSON(http.StatusOK, ch)
}

func (s *Server) attest(c echo.Context) error {
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	id := sessionID(c)
	tok, err := s.Protocol.Attest(c.Request().Context(), id, body)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, protocol.AttestationResponse{Token: tok})
}

func (s *Server) resourcePath(c echo.Context) (resource.Path, error) {
	escaped := c.Request().URL.EscapedPath()
	const prefix = "/kbs/v0/resource/"
	if !strings.HasPrefix(escaped, prefix) {
		return resource.Path{}, kbserr.New(kbserr.Malformed, kbserr.InvalidRequestPath, "invalid resource path")
	}
	return protocol.ParseResourcePath(strings.TrimPrefix(escaped, prefix))
}

func (s *Server) getResource(c echo.Context) error {
	p, err := s.resourcePath(c)
	if err != nil {
		return err
	}
	var query map[string]string
	if c.Request().URL.RawQuery != "" {
		query = map[string]string{}
		for k, v := range c.QueryParams() {
			if len(v) > 0 {
				query[k] = v[0]
			}
		}
	}
	resp, err := s.Protocol.GetResource(c.Request().Context(), credentials(c), p, query)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}

func (s *Server) putResource(c echo.Context) error {
	who, err := s.authorizeAdmin(c)
	if err != nil {
		return err
	}
	p, err := s.resourcePath(c)
	if err != nil {
		return err
	}
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	err = s.Protocol.PutResource(c.Request().Context(), p, body)
	clear(body)
	s.Admin.Record(who, "set resource", p.String(), err)
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusOK)
}

func (s *Server) deleteResource(c echo.Context) error {
	who, err := s.authorizeAdmin(c)
	if err != nil {
		return err
	}
	p, err := s.resourcePath(c)
	if err != nil {
		return err
	}
	err = s.Protocol.DeleteResource(c.Request().Context(), p)
	s.Admin.Record(who, "delete resource", p.String(), err)
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusOK)
}

// listResources answers GET /kbs/v0/resources[?repo=R] (admin; an
// extension of the protocol) with a JSON array of "repo/type/tag".
func (s *Server) listResources(c echo.Context) error {
	if _, err := s.authorizeAdmin(c); err != nil {
		return err
	}
	paths, err := s.Protocol.ListResources(c.Request().Context(), c.QueryParam("repo"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, paths)
}

func (s *Server) authorizeAdmin(c echo.Context) (adminauth.Principal, error) {
	if s.Admin == nil {
		return adminauth.Principal{}, kbserr.New(kbserr.Unauthenticated, kbserr.AdminAuthAccess, "admin API is disabled")
	}
	return s.Admin.Authorize(c.Request())
}

func credentials(c echo.Context) protocol.Credentials {
	cred := protocol.Credentials{SessionID: sessionID(c)}
	if h := c.Request().Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		cred.Bearer = strings.TrimSpace(h[7:])
	}
	return cred
}

func sessionID(c echo.Context) string {
	ck, err := c.Cookie(CookieName)
	if err != nil {
		return ""
	}
	return ck.Value
}

// setSessionCookie sets the cookie as trustee does (Expires) plus a Path
// the guest's cookie jar already defaults to, and HttpOnly. Not Secure:
// the broker may run plain HTTP behind a TLS-terminating proxy.
func setSessionCookie(c echo.Context, id string, expires time.Time) {
	c.SetCookie(&http.Cookie{Name: CookieName, Value: id, Path: "/kbs/v0", Expires: expires, HttpOnly: true})
}

// errorBody is the KBS error JSON.
type errorBody struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

var kindStatus = map[kbserr.Kind]int{
	kbserr.Internal:         http.StatusInternalServerError,
	kbserr.Malformed:        http.StatusBadRequest,
	kbserr.Unauthenticated:  http.StatusUnauthorized,
	kbserr.Forbidden:        http.StatusForbidden,
	kbserr.NotFound:         http.StatusNotFound,
	kbserr.TooLarge:         http.StatusRequestEntityTooLarge,
	kbserr.Unavailable:      http.StatusServiceUnavailable,
	kbserr.MethodNotAllowed: http.StatusMethodNotAllowed,
	kbserr.RateLimited:      http.StatusTooManyRequests,
}

// errorHandler writes every error, ours or the framework's, as KBS error
// JSON with an honest status.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var ke *kbserr.Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ke):
	case errors.As(err, &he):
		ke = fromHTTPError(he)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		ke = &kbserr.Error{Kind: kbserr.Unavailable, Variant: kbserr.PluginUnavailable, Detail: "request timed out"}
	default:
		ke = &kbserr.Error{Kind: kbserr.Internal, Variant: kbserr.InternalError, Detail: "internal error"}
	}
	status := kindStatus[ke.Kind]
	s.Metrics.Error(ke.Variant)
	if status >= 500 && s.Log != nil {
		s.Log.Error("request failed", "request_id", c.Response().Header().Get(RequestIDHeader),
			"method", c.Request().Method, "path", c.Request().URL.Path, "status", status, "error", err)
	}
	body, _ := json.Marshal(errorBody{Type: ErrorTypePrefix + ke.Variant, Detail: ke.Detail})
	_ = c.JSONBlob(status, body)
}

func fromHTTPError(he *echo.HTTPError) *kbserr.Error {
	msg, _ := he.Message.(string)
	switch he.Code {
	case http.StatusNotFound:
		return &kbserr.Error{Kind: kbserr.NotFound, Variant: kbserr.InvalidRequestPath, Detail: "no such endpoint"}
	case http.StatusMethodNotAllowed:
		return &kbserr.Error{Kind: kbserr.MethodNotAllowed, Variant: kbserr.MethodNotAllowedError, Detail: "method not allowed"}
	case http.StatusRequestEntityTooLarge:
		return &kbserr.Error{Kind: kbserr.TooLarge, Variant: kbserr.PayloadTooLarge, Detail: "request too large"}
	}
	if he.Code >= 400 && he.Code < 500 {
		return &kbserr.Error{Kind: kbserr.Malformed, Variant: kbserr.SerdeError, Detail: msg}
	}
	return &kbserr.Error{Kind: kbserr.Internal, Variant: kbserr.InternalError, Detail: "internal error"}
}
