package sdk

import (
	"context"

	"github.com/hashicorp/go-hclog"
)

type requestIDKey struct{}

// MaxRequestIDLen bounds a request ID. Longer or unusual IDs from a client
// are replaced by the host, so a plugin may log the ID as it is.
const MaxRequestIDLen = 64

// WithRequestID returns ctx carrying the ID of the broker request it serves.
// The host sets it; the SDK carries it across the process boundary.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the ID of the broker request that a plugin call serves
// (the X-Request-Id the guest or admin sent, or one the host made), or ""
// for calls that serve no request (configure, start-up). Put it in log
// lines so that a plugin's logs can be matched with the host's.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// ValidRequestID reports whether id is safe to carry and log: 1 to
// MaxRequestIDLen characters of A-Z a-z 0-9 and "-_.:".
func ValidRequestID(id string) bool {
	if len(id) == 0 || len(id) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// ContextLogger is Logger with the request ID of ctx, when it has one, on
// every line.
func ContextLogger(ctx context.Context) hclog.Logger {
	if id := RequestID(ctx); id != "" {
		return Logger().With("request_id", id)
	}
	return Logger()
}
