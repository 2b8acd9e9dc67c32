package sdk

import (
	"context"
	"errors"
	"fmt"
)

// Class says what went wrong, coarsely enough for the host to choose an HTTP
// status and a retry policy. It travels across the process boundary.
type Class string

const (
	// ClassBadEvidence: the evidence is malformed, forged, or does not match
	// what was expected. The guest's fault; never retried.
	ClassBadEvidence Class = "bad_evidence"
	// ClassUnsupported: the plugin cannot handle this request (unknown TEE
	// type, evidence version, key type, operation).
	ClassUnsupported Class = "unsupported"
	// ClassNotFound: the addressed thing does not exist.
	ClassNotFound Class = "not_found"
	// ClassInvalidArgument: the request is malformed (bad path, bad settings).
	ClassInvalidArgument Class = "invalid_argument"
	// ClassUnavailable: a dependency is down or the plugin itself is gone;
	// the same request may succeed later.
	ClassUnavailable Class = "unavailable"
	// ClassInternal: a bug or an unexpected state in the plugin.
	ClassInternal Class = "internal"
)

// Sentinels for errors.Is. Every *Error of the same class matches its
// sentinel, on either side of the process boundary.
var (
	ErrBadEvidence     = &Error{Class: ClassBadEvidence}
	ErrUnsupported     = &Error{Class: ClassUnsupported}
	ErrNotFound        = &Error{Class: ClassNotFound}
	ErrInvalidArgument = &Error{Class: ClassInvalidArgument}
	ErrUnavailable     = &Error{Class: ClassUnavailable}
	ErrInternal        = &Error{Class: ClassInternal}
)

// Error is a classified error. Msg is safe to show to the guest or admin:
// never put secrets or key material in it.
type Error struct {
	Class Class
	Msg   string
	// cause is kept on the side that created the error; only Class and Msg
	// cross the process boundary.
	cause error
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return string(e.Class)
	}
	return e.Msg
}

// Is makes errors.Is(err, sdk.ErrNotFound) true for every not-found error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Class == e.Class && (t.Msg == "" || t.Msg == e.Msg)
}

func (e *Error) Unwrap() error { return e.cause }

func newf(c Class, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Class: c, Msg: err.Error(), cause: errors.Unwrap(err)}
}

// BadEvidence returns a ClassBadEvidence error; %w is honoured.
func BadEvidence(format string, args ...any) error { return newf(ClassBadEvidence, format, args...) }

// Unsupported returns a ClassUnsupported error; %w is honoured.
func Unsupported(format string, args ...any) error { return newf(ClassUnsupported, format, args...) }

// NotFound returns a ClassNotFound error; %w is honoured.
func NotFound(format string, args ...any) error { return newf(ClassNotFound, format, args...) }

// InvalidArgument returns a ClassInvalidArgument error; %w is honoured.
func InvalidArgument(format string, args ...any) error {
	return newf(ClassInvalidArgument, format, args...)
}

// Unavailable returns a ClassUnavailable error; %w is honoured.
func Unavailable(format string, args ...any) error { return newf(ClassUnavailable, format, args...) }

// Internal returns a ClassInternal error; %w is honoured.
func Internal(format string, args ...any) error { return newf(ClassInternal, format, args...) }

// ClassOf returns the class of err: the class of the first *Error in its
// chain, ClassUnavailable for context cancellation and deadlines, and
// ClassInternal for anything else.
func ClassOf(err error) Class {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return ClassUnavailable
	}
	return ClassInternal
}
