// Package protocol is the KBS handshake (RCAR: request, challenge,
// attestation, response) and the release of resources, independent of
// HTTP: the api package parses requests and writes responses; this package
// decides.
package protocol

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gokbs/kbs/host/internal/kbserr"
	"github.com/gokbs/kbs/host/internal/rescache"
	"github.com/gokbs/kbs/host/internal/session"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/token"
	"github.com/gokbs/kbs/sdk/verifier"
)

// Plugins gives typed access to the running plugins.
type Plugins interface {
	Verifier(tee string) (verifier.Verifier, error)
	Resource(p resource.Path) (resource.Backend, error)
	// ListResources lists what the guests of repo ("" for all) could be
	// served, over every backend.
	ListResources(ctx context.Context, repo string) ([]resource.Path, error)
	TokenIssuer() (token.Issuer, error)
}

// TokenVerifier checks an attestation token and returns its claims.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (map[string]any, error)
	// TEEPubKey finds the guest's TEE public key in verified claims.
	TEEPubKey(claims map[string]any) (json.RawMessage, error)
}

// Appraiser turns one submodule's evidence claims into an EAR appraisal
// (the attestation policy).
type Appraiser interface {
	Appraise(ctx context.Context, class string, input map[string]any) (token.Appraisal, error)
}

// Decision is a resource policy's answer.
type Decision struct {
	Allowed bool
	// PolicyID names the policy that decided, for the audit log.
	PolicyID string
}

// ResourcePolicy decides whether verified claims may have a resource.
type ResourcePolicy interface {
	Allow(ctx context.Context, claims map[string]any, plugin string, path []string, query map[string]string) (Decision, error)
}

// Observer is told the protocol's outcomes (metrics).
type Observer interface {
	// Attestation: one piece of evidence of tee was appraised with an EAR
	// status, or "failed" when it was rejected.
	Attestation(tee, status string)
	// Resource: the resource policy released or denied a resource.
	Resource(released bool)
	// ResourceCache: the resource cache held the value of an allowed
	// request (hit), or the backend was asked (miss).
	ResourceCache(hit bool)
}

// Service runs the protocol.
type Service struct {
	Plugins        Plugins
	Sessions       session.Store
	Tokens         TokenVerifier
	Appraiser      Appraiser
	ResourcePolicy ResourcePolicy
	SessionTimeout time.Duration
	Log            hclog.Logger
	// Audit receives one line per resource release or denial.
	Audit hclog.Logger
	// Observe, when set, is told of appraisals and resource decisions.
	Observe Observer
	// Cache, when set, holds resource values briefly in front of the
	// backends (GetResource); PutResource and DeleteResource invalidate.
	Cache *rescache.Cache[resource.Path]
	now   func() time.Time
}

func (s *Service) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// Auth starts a handshake: it checks the request and returns a challenge
// and the new session.
func (s *Service) Auth(ctx context.Context, body []byte) (*Challenge, *session.Session, error) {
	var req Request
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, kbserr.New(kbserr.Malformed, kbserr.SerdeError, "auth request is not valid JSON: %v", err)
	}
	if err := noDuplicateKeys(body); err != nil {
		return nil, nil, kbserr.New(kbserr.Malformed, kbserr.SerdeError, "auth request: %v", err)
	}
	if req.Version != Version {
		// trustee's wording, which the guest's tests look for, then ours.
		return nil, nil, kbserr.New(kbserr.Unauthenticated, kbserr.AttestationError,
			"KBS Client Protocol Version Mismatch: expect =%s while the request is %s (this broker accepts %v)",
			Version, req.Version, AcceptedVersions)
	}
	tee, ok := CanonicalTEE(req.TEE)
	if !ok {
		return nil, nil, kbserr.New(kbserr.Malformed, kbserr.SerdeError, "unknown TEE %q", req.TEE)
	}
	if _, err := s.Plugins.Verifier(tee); err != nil {
		return nil, nil, kbserr.New(kbserr.Unauthenticated, kbserr.AttestationError,
			"RCAR handshake Auth failed: this broker cannot verify %s evidence: %v", tee, err)
	}
	var nonce [32]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, nil, kbserr.New(kbserr.Internal, kbserr.InternalError, "generating a nonce: %v", err)
	}
	sess := &session.Session{
		ID:        session.NewID(),
		TEE:       tee,
		Nonce:     base64.StdEncoding.EncodeToString(nonce[:]),
		HashAlg:   "sha384",
		ExpiresAt: s.clock().Add(s.SessionTimeout),
	}
	if err := s.Sessions.Create(ctx, sess); err != nil {
		if errors.Is(err, session.ErrFull) {
			return nil, nil, kbserr.New(kbserr.Unavailable, kbserr.AttestationError, "too many handshakes in progress; retry later")
		}
		return nil, nil, kbserr.New(kbserr.Unavailable, kbserr.AttestationError, "session store: %w", err)
	}
	return &Challenge{Nonce: sess.Nonce, ExtraParams: ""}, sess, nil
}

// constantTimeEqual compares two strings without leaking where they differ.
func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
