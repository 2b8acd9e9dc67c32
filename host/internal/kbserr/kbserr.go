// Package kbserr classifies the broker's errors the way the KBS protocol
// reports them: an error type named after trustee's variants, a detail
// safe to show the client, and a kind from which the HTTP layer picks an
// honest status. The protocol code never sees HTTP; the API never guesses.
package kbserr

import (
	"errors"
	"fmt"

	"github.com/gokbs/kbs/sdk"
)

// Kind selects the HTTP status.
type Kind int

const (
	Internal         Kind = iota // 500
	Malformed                    // 400: the request cannot be parsed or is invalid
	Unauthenticated              // 401: no, bad or expired session, token or evidence
	Forbidden                    // 403: policy or role denies
	NotFound                     // 404: no such resource, path or endpoint
	TooLarge                     // 413
	Unavailable                  // 503: a plugin or store is down
	MethodNotAllowed             // 405
	RateLimited                  // 429: too many requests; retry later
)

// Variants: trustee's names where the meaning matches, so that clients and
// dashboards that match on the type keep working.
const (
	AttestationError      = "AttestationError"
	AdminAuthAccess       = "AdminAuthAccess"
	InvalidRequestPath    = "InvalidRequestPath"
	JweError              = "JweError"
	PluginNotFound        = "PluginNotFound"
	PluginInternalError   = "PluginInternalError"
	PluginUnavailable     = "PluginUnavailable"
	PolicyDeny            = "PolicyDeny"
	ParsePolicyError      = "ParsePolicyError"
	PolicyEngineError     = "PolicyEngineError"
	PolicyNotFound        = "PolicyNotFound"
	ResourceNotFound      = "ResourceNotFound"
	RvpsError             = "RvpsError"
	SerdeError            = "SerdeError"
	TokenNotFound         = "TokenNotFound"
	TokenVerifierError    = "TokenVerifierError"
	PayloadTooLarge       = "PayloadTooLarge"
	MethodNotAllowedError = "MethodNotAllowed"
	TooManyRequests       = "TooManyRequests"
	InternalError         = "InternalError"
)

// Error is a classified error.
type Error struct {
	Kind    Kind
	Variant string
	// Detail is shown to the client: no secrets, no key material.
	Detail string
	Err    error
}

func (e *Error) Error() string { return e.Detail }
func (e *Error) Unwrap() error { return e.Err }

// New returns a classified error; %w in format is honoured for Unwrap.
func New(kind Kind, variant, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: kind, Variant: variant, Detail: err.Error(), Err: errors.Unwrap(err)}
}

// From classifies err: a *Error as it is; a plugin's error by its class,
// with variant as the type for evidence, not-found and argument errors;
// anything else as internal.
func From(err error, variant string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	kind := Internal
	switch sdk.ClassOf(err) {
	case sdk.ClassBadEvidence, sdk.ClassUnsupported:
		kind = Unauthenticated
	case sdk.ClassInvalidArgument:
		kind = Malformed
	case sdk.ClassNotFound:
		kind = NotFound
	case sdk.ClassUnavailable:
		return &Error{Kind: Unavailable, Variant: PluginUnavailable, Detail: err.Error(), Err: err}
	case sdk.ClassInternal:
		return &Error{Kind: Internal, Variant: PluginInternalError, Detail: err.Error(), Err: err}
	}
	return &Error{Kind: kind, Variant: variant, Detail: err.Error(), Err: err}
}
