package protocol

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gokbs/kbs/host/internal/jwe"
	"github.com/gokbs/kbs/host/internal/kbserr"
	"github.com/gokbs/kbs/host/internal/session"
	"github.com/gokbs/kbs/host/internal/tokenverify"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
)

// Credentials are what a resource request presents: a session cookie, a
// Bearer token, or both (the cookie wins when its session is attested, as
// in trustee).
type Credentials struct {
	SessionID string
	Bearer    string
}

// ParseResourcePath checks the escaped path after /kbs/v0/resource/. It
// works on the escaped form on purpose: a valid segment never needs
// percent-encoding, so any '%' (an encoded dot, slash or NUL) is refused
// before anything is decoded.
func ParseResourcePath(escaped string) (resource.Path, error) {
	if strings.Contains(escaped, "%") {
		return resource.Path{}, kbserr.New(kbserr.Malformed, kbserr.InvalidRequestPath,
			"invalid resource path: percent-encoded characters are not allowed")
	}
	p, err := resource.ParsePath(escaped)
	if err != nil {
		return resource.Path{}, kbserr.New(kbserr.Malformed, kbserr.InvalidRequestPath, "invalid resource path: %v", err)
	}
	return p, nil
}

// token returns the attestation token a request presents.
func (s *Service) token(ctx context.Context, cred Credentials) (string, error) {
	if cred.SessionID != "" && session.ValidID(cred.SessionID) {
		sess, err := s.Sessions.Get(ctx, cred.SessionID)
		switch {
		case err == nil && sess.State == session.Attested:
			return sess.Token, nil
		case err != nil && !errors.Is(err, session.ErrNotFound):
			return "", kbserr.New(kbserr.Unavailable, kbserr.TokenNotFound, "session store: %w", err)
		}
	}
	if cred.Bearer != "" {
		return cred.Bearer, nil
	}
	return "", kbserr.New(kbserr.Unauthenticated, kbserr.TokenNotFound,
		"no attestation token: attest first (session cookie) or send Authorization: Bearer <token>")
}

// Claims verifies the presented token and returns its claims.
func (s *Service) Claims(ctx context.Context, cred Credentials) (map[string]any, error) {
	tok, err := s.token(ctx, cred)
	if err != nil {
		return nil, err
	}
	claims, err := s.Tokens.Verify(ctx, tok)
	if err != nil {
		return nil, tokenError(err)
	}
	return claims, nil
}

// GetResource releases a resource, encrypted to the TEE key in the token.
func (s *Service) GetResource(ctx context.Context, cred Credentials, p resource.Path, query map[string]string) (*jwe.Response, error) {
	claims, err := s.Claims(ctx, cred)
	if err != nil {
		return nil, err
	}
	d, err := s.ResourcePolicy.Allow(ctx, claims, "resource", []string{p.Repo, p.Type, p.Tag}, query)
	if err != nil {
		if sdk.ClassOf(err) == sdk.ClassUnavailable {
			// The shared store is down and the policy may be stale.
			return nil, kbserr.New(kbserr.Unavailable, kbserr.PolicyEngineError, "resource policy: %v", err)
		}
		return nil, kbserr.New(kbserr.Internal, kbserr.PolicyDeny, "resource policy: %v", err)
	}
	if !d.Allowed {
		if s.Observe != nil {
			s.Observe.Resource(false)
		}
		s.audit(ctx, "resource denied", "path", p.String(), "policy", d.PolicyID, "subject", subject(claims))
		return nil, kbserr.New(kbserr.Forbidden, kbserr.PolicyDeny, "resource policy denies %s", p)
	}
	keyJSON, err := s.Tokens.TEEPubKey(claims)
	if err != nil {
		return nil, kbserr.New(kbserr.Unauthenticated, kbserr.TokenVerifierError, "token carries no usable TEE public key: %v", err)
	}
	key, err := jwe.ParseTEEPubKey(keyJSON)
	if err != nil {
		return nil, kbserr.New(kbserr.Unauthenticated, kbserr.JweError, "TEE public key in the token: %v", err)
	}
	data, err := s.resourceValue(ctx, p)
	if err != nil {
		return nil, err
	}
	resp, err := jwe.Seal(key, data)
	clear(data)
	if err != nil {
		return nil, kbserr.New(kbserr.Unauthenticated, kbserr.JweError, "encrypting to the TEE key: %v", err)
	}
	if s.Observe != nil {
		s.Observe.Resource(true)
	}
	s.audit(ctx, "resource released", "path", p.String(), "policy", d.PolicyID, "subject", subject(claims))
	return resp, nil
}

// resourceValue reads p from the cache or its backend. The value is the
// caller's to clear.
func (s *Service) resourceValue(ctx context.Context, p resource.Path) ([]byte, error) {
	if s.Cache != nil {
		data, hit := s.Cache.Get(p)
		if s.Observe != nil {
			s.Observe.ResourceCache(hit)
		}
		if hit {
			return data, nil
		}
	}
	backend, err := s.Plugins.Resource(p)
	if err != nil {
		return nil, kbserr.From(err, kbserr.ResourceNotFound)
	}
	var data []byte
	if s.Cache != nil {
		data, err = s.Cache.Fetch(ctx, p, func(ctx context.Context) ([]byte, error) { return backend.Get(ctx, p) })
	} else {
		data, err = backend.Get(ctx, p)
	}
	if err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			return nil, kbserr.New(kbserr.NotFound, kbserr.ResourceNotFound, "resource %s not found", p)
		}
		return nil, kbserr.From(fmt.Errorf("resource backend: %w", err), kbserr.PluginInternalError)
	}
	return data, nil
}

// writeError classifies a backend's failure to write: a read-only backend
// (unsupported) is 405, not an authentication failure.
func writeError(err error) error {
	if errors.Is(err, sdk.ErrUnsupported) {
		return kbserr.New(kbserr.MethodNotAllowed, kbserr.MethodNotAllowedError, "resource backend: %v", err)
	}
	return kbserr.From(fmt.Errorf("resource backend: %w", err), kbserr.PluginInternalError)
}

// ListResources lists resources (admin; the caller has authorised it).
func (s *Service) ListResources(ctx context.Context, repo string) ([]string, error) {
	if repo != "" {
		if err := resource.ValidateSegment(repo); err != nil {
			return nil, kbserr.New(kbserr.Malformed, kbserr.InvalidRequestPath, "repo: %v", err)
		}
	}
	paths, err := s.Plugins.ListResources(ctx, repo)
	if err != nil {
		return nil, kbserr.From(fmt.Errorf("resource backend: %w", err), kbserr.PluginInternalError)
	}
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = p.String()
	}
	return out, nil
}

// PutResource stores a resource (admin; the caller has authorised it).
func (s *Service) PutResource(ctx context.Context, p resource.Path, data []byte) error {
	defer s.invalidate(p)()
	backend, err := s.Plugins.Resource(p)
	if err != nil {
		return kbserr.From(err, kbserr.ResourceNotFound)
	}
	if err := backend.Put(ctx, p, data); err != nil {
		return writeError(err)
	}
	return nil
}

// DeleteResource removes a resource (admin; the caller has authorised it).
func (s *Service) DeleteResource(ctx context.Context, p resource.Path) error {
	defer s.invalidate(p)()
	backend, err := s.Plugins.Resource(p)
	if err != nil {
		return kbserr.From(err, kbserr.ResourceNotFound)
	}
	if err := backend.Delete(ctx, p); err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			return kbserr.New(kbserr.NotFound, kbserr.ResourceNotFound, "resource %s not found", p)
		}
		return writeError(err)
	}
	return nil
}

// invalidate drops p's cached value now and again when the returned func
// runs, after the write: a read that began before the write may have
// fetched the old value, and must not keep it. The write may have landed
// even when the backend reports a failure (a timeout), so both happen
// whatever its outcome.
func (s *Service) invalidate(p resource.Path) func() {
	if s.Cache == nil {
		return func() {}
	}
	s.Cache.Invalidate(p)
	return func() { s.Cache.Invalidate(p) }
}

func (s *Service) audit(ctx context.Context, msg string, kv ...any) {
	if s.Audit != nil {
		if id := sdk.RequestID(ctx); id != "" {
			kv = append(kv, "request_id", id)
		}
		s.Audit.Info(msg, kv...)
	}
}

// subject names the guest in the audit log without logging the token:
// the TEE types it attested as.
func subject(claims map[string]any) string {
	submods, _ := claims["submods"].(map[string]any)
	var tees []string
	for _, name := range sortedKeys(submods) {
		sm, _ := submods[name].(map[string]any)
		ae, _ := sm["ear.veraison.annotated-evidence"].(map[string]any)
		for k := range ae {
			if _, ok := teeClass[k]; ok {
				tees = append(tees, name+":"+k)
			}
		}
	}
	return strings.Join(tees, ",")
}

// tokenError classifies a token verification failure: the token's fault
// (401) or a key source that is down (503).
func tokenError(err error) error {
	if errors.Is(err, tokenverify.ErrUnavailable) || errors.Is(err, sdk.ErrUnavailable) {
		return kbserr.New(kbserr.Unavailable, kbserr.TokenVerifierError, "cannot verify the token now: %v", err)
	}
	return kbserr.New(kbserr.Unauthenticated, kbserr.TokenVerifierError, "attestation token rejected: %v", err)
}
