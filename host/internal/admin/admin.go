// Package admin serves the admin API: policies, reference values and the
// authorisation of every admin request (resource writes included), with
// an audit line per change.
package admin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/labstack/echo/v4"

	"github.com/gokbs/kbs/host/internal/adminauth"
	"github.com/gokbs/kbs/host/internal/api"
	"github.com/gokbs/kbs/host/internal/kbserr"
	"github.com/gokbs/kbs/host/internal/policy"
	"github.com/gokbs/kbs/host/internal/refvalues"
	"github.com/gokbs/kbs/sdk"
)

// Admin holds what the endpoints change.
type Admin struct {
	Auth      *adminauth.Authorizer
	Policies  *policy.Engine
	RefValues *refvalues.Registry
	// Audit gets one line per admin change: who, what, outcome. Never the
	// policy text, a value or a secret.
	Audit   hclog.Logger
	MaxBody int64
}

// Authorize checks an admin request and returns who made it.
func (a *Admin) Authorize(r *http.Request) (adminauth.Principal, error) {
	p, err := a.Auth.Authorize(r.Context(), r.Header.Get("Authorization"), r.Method, r.URL.RequestURI())
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, adminauth.ErrForbidden):
		a.Audit.Warn("admin request denied", "method", r.Method, "path", r.URL.Path, "reason", err.Error())
		return p, kbserr.New(kbserr.Forbidden, kbserr.AdminAuthAccess, "admin request denied: %v", err)
	default:
		a.Audit.Warn("admin request unauthenticated", "method", r.Method, "path", r.URL.Path, "reason", err.Error())
		return p, kbserr.New(kbserr.Unauthenticated, kbserr.AdminAuthAccess, "admin authentication failed: %v", err)
	}
}

// Record writes the audit line of a completed admin change.
func (a *Admin) Record(p adminauth.Principal, action, target string, err error) {
	kv := []any{"subject", p.Subject, "role", p.Role, "action", action, "target", target}
	if err != nil {
		a.Audit.Warn("admin change failed", append(kv, "error", err.Error())...)
		return
	}
	a.Audit.Info("admin change", kv...)
}

// Routes registers the admin endpoints.
func (a *Admin) Routes(e *echo.Echo) {
	g := e.Group("/kbs/v0")
	g.POST("/attestation-policy", a.setAttestationPolicy)
	g.GET("/attestation-policy", a.listAttestationPolicies)
	g.GET("/attestation-policy/:id", a.getAttestationPolicy)
	g.POST("/resource-policy", a.setResourcePolicy)
	g.GET("/resource-policy", a.getResourcePolicy)
	g.DELETE("/resource-policy", a.deleteResourcePolicy)
	g.POST("/reference-value", a.setReferenceValue)
	g.GET("/reference-value/:name", a.getReferenceValue)
}

func (a *Admin) body(c echo.Context) ([]byte, error) { return api.ReadBody(c, a.MaxBody) }

// decodePolicy accepts the policy text as trustee's clients send it
// (base64url without padding) and the other base64 alphabets people use.
func decodePolicy(s string) (string, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return string(b), nil
		}
	}
	return "", errors.New("policy is not base64")
}

// policyError turns a policy engine error into the API's: a policy that
// does not compile is the caller's 400, with the compiler's positions.
func policyError(err error) error {
	var ce *policy.CompileError
	if errors.As(err, &ce) {
		return kbserr.New(kbserr.Malformed, kbserr.ParsePolicyError, "policy does not compile: %v", ce)
	}
	switch sdk.ClassOf(err) {
	case sdk.ClassInvalidArgument:
		return kbserr.New(kbserr.Malformed, kbserr.ParsePolicyError, "%v", err)
	case sdk.ClassNotFound:
		return kbserr.New(kbserr.NotFound, kbserr.PolicyNotFound, "%v", err)
	}
	return kbserr.New(kbserr.Unavailable, kbserr.PolicyEngineError, "policy store: %v", err)
}

type attestationPolicyRequest struct {
	PolicyID string `json:"policy_id"`
	Policy   string `json:"policy"`
	// Type is sent by trustee's client ("rego") and ignored, as trustee does.
	Type string `json:"type,omitempty"`
}

func (a *Admin) setAttestationPolicy(c echo.Context) error {
	p, err := a.Authorize(c.Request())
	if err != nil {
		return err
	}
	b, err := a.body(c)
	if err != nil {
		return err
	}
	var req attestationPolicyRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return kbserr.New(kbserr.Malformed, kbserr.SerdeError, "attestation policy request: %v", err)
	}
	if req.PolicyID == "" {
		req.PolicyID = "default_cpu"
	}
	src, err := decodePolicy(req.Policy)
	if err != nil {
		return kbserr.New(kbserr.Malformed, kbserr.SerdeError, "attestation policy request: %v", err)
	}
	err = a.Policies.SetAttestationPolicy(c.Request().Context(), req.PolicyID, src)
	a.Record(p, "set attestation policy", req.PolicyID, err)
	if err != nil {
		return policyError(err)
	}
	return c.NoContent(http.StatusOK)
}

func (a *Admin) listAttestationPolicies(c echo.Context) error {
	if _, err := a.Authorize(c.Request()); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, a.Policies.ListAttestationPolicies())
}

func (a *Admin) getAttestationPolicy(c echo.Context) error {
	if _, err := a.Authorize(c.Request()); err != nil {
		return err
	}
	src, err := a.Policies.GetAttestationPolicy(c.Param("id"))
	if err != nil {
		return policyError(err)
	}
	return c.JSON(http.StatusOK, map[string]string{"policy_id": c.Param("id"), "policy": base64.RawURLEncoding.EncodeToString([]byte(src))})
}

type resourcePolicyRequest struct {
	Policy string `json:"policy"`
	// Scope (an extension) limits the policy to a "repo" or "repo/type"
	// prefix; the most specific policy decides. "" is the global policy.
	Scope string `json:"scope,omitempty"`
}

func (a *Admin) setResourcePolicy(c echo.Context) error {
	p, err := a.Authorize(c.Request())
	if err != nil {
		return err
	}
	b, err := a.body(c)
	if err != nil {
		return err
	}
	var req resourcePolicyRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return kbserr.New(kbserr.Malformed, kbserr.SerdeError, "resource policy request: %v", err)
	}
	src, err := decodePolicy(req.Policy)
	if err != nil {
		return kbserr.New(kbserr.Malformed, kbserr.SerdeError, "resource policy request: %v", err)
	}
	err = a.Policies.SetResourcePolicy(c.Request().Context(), req.Scope, src)
	a.Record(p, "set resource policy", scopeName(req.Scope), err)
	if err != nil {
		return policyError(err)
	}
	return c.NoContent(http.StatusOK)
}

func scopeName(scope string) string {
	if scope == "" {
		return "global"
	}
	return scope
}

// getResourcePolicy returns {"policy": <base64url>, "scopes": [...]}: the
// policy of ?scope= (global by default) and every scope that has one.
func (a *Admin) getResourcePolicy(c echo.Context) error {
	if _, err := a.Authorize(c.Request()); err != nil {
		return err
	}
	scope := c.QueryParam("scope")
	src, err := a.Policies.GetResourcePolicy(scope)
	if err != nil {
		return policyError(err)
	}
	return c.JSON(http.StatusOK, map[string]any{
		"policy": base64.RawURLEncoding.EncodeToString([]byte(src)),
		"scope":  scope,
		"scopes": a.Policies.ListResourcePolicies(),
	})
}

func (a *Admin) deleteResourcePolicy(c echo.Context) error {
	p, err := a.Authorize(c.Request())
	if err != nil {
		return err
	}
	scope := c.QueryParam("scope")
	if scope == "" {
		return kbserr.New(kbserr.Malformed, kbserr.SerdeError, "the global resource policy cannot be deleted; set a deny-all policy instead")
	}
	err = a.Policies.DeleteResourcePolicy(c.Request().Context(), scope)
	a.Record(p, "delete resource policy", scope, err)
	if err != nil {
		return policyError(err)
	}
	return c.NoContent(http.StatusOK)
}

func (a *Admin) setReferenceValue(c echo.Context) error {
	p, err := a.Authorize(c.Request())
	if err != nil {
		return err
	}
	b, err := a.body(c)
	if err != nil {
		return err
	}
	names, err := a.RefValues.Register(c.Request().Context(), b)
	a.Record(p, "set reference values", strings.Join(names, ","), err)
	if err != nil {
		if sdk.ClassOf(err) == sdk.ClassInvalidArgument {
			return kbserr.New(kbserr.Malformed, kbserr.RvpsError, "%v", err)
		}
		return kbserr.New(kbserr.Unavailable, kbserr.RvpsError, "reference value store: %v", err)
	}
	return c.JSON(http.StatusOK, map[string]any{"registered": names})
}

func (a *Admin) getReferenceValue(c echo.Context) error {
	if _, err := a.Authorize(c.Request()); err != nil {
		return err
	}
	v, ok, err := a.RefValues.Get(c.Request().Context(), c.Param("name"))
	if err != nil {
		return kbserr.New(kbserr.Unavailable, kbserr.RvpsError, "reference value store: %v", err)
	}
	if !ok {
		return kbserr.New(kbserr.NotFound, kbserr.RvpsError, "no reference value %q (or it expired)", c.Param("name"))
	}
	return c.JSON(http.StatusOK, v)
}
