// Package redisconn opens the Redis (or Valkey) client shared by the
// session store and the state store of replicas, with every call bounded
// in time: when Redis is down or hung, a request must fail fast with a
// clear error rather than wait for a load balancer's timeout.
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultTimeout bounds one Redis call when the caller sets none.
const DefaultTimeout = 2 * time.Second

// Open returns a client for rawURL (redis://[:password@]host:port[/db] or
// rediss:// for TLS; go-redis's query options such as dial_timeout are
// honoured). Each call, retries included, is bounded by timeout. Open does
// not connect: the first call does, so a broker can start while Redis is
// still coming up and report itself not ready meanwhile.
func Open(rawURL string, timeout time.Duration) (*redis.Client, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		// The URL may hold a password: name the problem, not the URL.
		return nil, fmt.Errorf("redis url: %w", stripURL(err))
	}
	if opt.DialTimeout == 0 {
		opt.DialTimeout = timeout
	}
	if opt.ReadTimeout == 0 {
		opt.ReadTimeout = timeout
	}
	if opt.WriteTimeout == 0 {
		opt.WriteTimeout = timeout
	}
	if opt.PoolTimeout == 0 {
		opt.PoolTimeout = timeout
	}
	// A refused dial is retried by the pool; two attempts are enough on a
	// network where Redis is close.
	opt.DialerRetries = 2
	opt.ContextTimeoutEnabled = true
	c := redis.NewClient(opt)
	c.AddHook(deadline(timeout))
	return c, nil
}

// Redacted returns rawURL without its password, for logs.
func Redacted(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparseable redis url)"
	}
	return u.Redacted()
}

func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// deadline is a hook that puts a deadline on every command and pipeline
// (go-redis retries inside it), so that the bound holds whatever the
// retry and backoff settings are.
type deadline time.Duration

func (d deadline) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

func (d deadline) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		ctx, cancel := context.WithTimeout(ctx, time.Duration(d))
		defer cancel()
		return next(ctx, cmd)
	}
}

func (d deadline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		ctx, cancel := context.WithTimeout(ctx, time.Duration(d))
		defer cancel()
		return next(ctx, cmds)
	}
}

// IsDown reports whether err means that Redis could not be reached or did
// not answer in time (as opposed to a reply such as redis.Nil).
func IsDown(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	var re redis.Error
	// A server reply (WRONGTYPE, NOSCRIPT, OOM ...) is not an outage,
	// except LOADING: Redis restarting and still reading its data.
	if errors.As(err, &re) && !isLoading(re) {
		return false
	}
	return true
}

// Reason says in a few words why Redis could not be used, without the
// address or the server's text: error details reach clients.
func Reason(err error) string {
	var re redis.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &re) && isLoading(re):
		return "redis is loading its data"
	case errors.Is(err, context.Canceled):
		return "request cancelled"
	}
	return "unreachable"
}

func isLoading(re redis.Error) bool {
	return strings.HasPrefix(re.Error(), "LOADING")
}
