// Package session holds the RCAR handshake sessions between auth, attest
// and the cookie-authorised resource requests that follow.
//
// The Store interface is what a shared store (Redis) implements for many
// replicas; Memory is the single-process default.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"
)

// State is where a session stands in the handshake.
type State int

const (
	// Authed: a challenge was issued; its nonce may be used once.
	Authed State = iota
	// Attested: evidence was accepted and Token issued.
	Attested
)

// Session is one guest's handshake.
type Session struct {
	ID string
	// Request facts from auth.
	TEE         string
	Nonce       string
	HashAlg     string
	ExtraParams string
	ExpiresAt   time.Time

	State State
	// Token is the attestation token, once Attested.
	Token string
}

var (
	// ErrNotFound: no such session, or it expired.
	ErrNotFound = errors.New("session not found or expired")
	// ErrNonceUsed: the session's nonce was already consumed by an attest.
	ErrNonceUsed = errors.New("the session's nonce was already used")
	// ErrFull: the store holds its maximum of live sessions.
	ErrFull = errors.New("too many open sessions")
)

// Store keeps sessions. Implementations must make ConsumeNonce atomic: of
// two concurrent calls on the same session, exactly one succeeds.
type Store interface {
	// Create stores a new session.
	Create(ctx context.Context, s *Session) error
	// Get returns a live session.
	Get(ctx context.Context, id string) (*Session, error)
	// ConsumeNonce moves an Authed session out of reach of a second
	// attest and returns it as it was. The caller then either Attest()s
	// it or leaves it consumed (a failed attest does not give the nonce
	// back: the guest must start again with auth).
	ConsumeNonce(ctx context.Context, id string) (*Session, error)
	// Attest records the issued token on a consumed session.
	Attest(ctx context.Context, id, token string) error
	// Delete removes a session.
	Delete(ctx context.Context, id string) error
}

// NewID returns a session ID in trustee's form: 32 lowercase hex digits
// (a UUIDv4 in "simple" form), from the system's CSPRNG.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("session: reading random bytes: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return hex.EncodeToString(b[:])
}

// ValidID reports whether id looks like one of ours, so that garbage
// cookies never reach a store.
func ValidID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
