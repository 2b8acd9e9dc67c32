package redisconn

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestClassification(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := map[string]struct {
		err    error
		down   bool
		reason string
	}{
		"no value":      {redis.Nil, false, ""},
		"refused":       {fmt.Errorf("dial: %w", refused), true, "connection refused"},
		"deadline":      {context.DeadlineExceeded, true, "timed out"},
		"read timeout":  {&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, true, "timed out"},
		"pool timeout":  {redis.ErrPoolTimeout, true, "unreachable"},
		"wrong type":    {proto("WRONGTYPE Operation against a key holding the wrong kind of value"), false, ""},
		"still loading": {proto("LOADING Redis is loading the dataset in memory"), true, "redis is loading its data"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := IsDown(tc.err); got != tc.down {
				t.Errorf("IsDown = %v, want %v", got, tc.down)
			}
			if tc.reason != "" {
				if got := Reason(tc.err); got != tc.reason {
					t.Errorf("Reason = %q, want %q", got, tc.reason)
				}
			}
		})
	}
}

// proto is a server error reply.
type proto string

func (p proto) Error() string { return string(p) }
func (proto) RedisError()     {}

func TestOpenHidesPassword(t *testing.T) {
	_, err := Open("redis://:s3cret@[bad", time.Second)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v must exist and not show the password", err)
	}
	if got := Redacted("redis://:s3cret@127.0.0.1:6379/0"); strings.Contains(got, "s3cret") {
		t.Fatalf("Redacted = %q", got)
	}
}

// TestDeadlineBoundsCalls: a server that accepts and never answers (a hung
// Redis) costs a caller at most about the timeout.
func TestDeadlineBoundsCalls(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	c, err := Open("redis://"+l.Addr().String(), 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	err = c.Get(context.Background(), "k").Err()
	if took := time.Since(start); took > time.Second {
		t.Fatalf("a call to a hung server took %v", took)
	}
	if !IsDown(err) || Reason(err) != "timed out" {
		t.Fatalf("error %v (reason %q), want a timeout", err, Reason(err))
	}
}
