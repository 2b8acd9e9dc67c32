package store

import (
	"context"
	"errors"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/gokbs/kbs/host/internal/redisconn"
	"github.com/gokbs/kbs/sdk"
)

// Redis is a Store in Redis or Valkey, shared by every replica of a
// broker. A namespace is one hash, <prefix>ns:<namespace>; its revision is
// the counter <prefix>rev:<namespace>. Every write changes the hash and
// increments the counter in one Lua script, which Redis runs atomically, so
// a replica that sees a new revision also sees the write behind it.
//
// Durability is Redis's: a write is acknowledged once Redis applied it;
// that it survives a crash of Redis needs appendonly yes with
// appendfsync always (or replicas), as configs/kbs.toml explains.
type Redis struct {
	c      redis.UniversalClient
	prefix string
}

var _ Store = (*Redis)(nil)

// NewRedis returns a store over c with keys under prefix. The client is
// the caller's: Close does not close it, as the session store may share
// it.
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	return &Redis{c: c, prefix: prefix}
}

var (
	// KEYS: hash, revision; ARGV: field, value.
	putScript = redis.NewScript(`redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1`)
	putIfAbsentScript = redis.NewScript(`if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('INCR', KEYS[2])
  return 1
end
return 0`)
	// KEYS: hash, revision; ARGV: field.
	deleteScript = redis.NewScript(`if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('INCR', KEYS[2])
  return 1
end
return 0`)
)

func (s *Redis) hash(ns string) string { return s.prefix + "ns:" + ns }
func (s *Redis) rev(ns string) string  { return s.prefix + "rev:" + ns }

func (s *Redis) Get(ctx context.Context, ns, key string) ([]byte, error) {
	if err := ValidateKey(ns, key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, err := s.c.HGet(ctx, s.hash(ns), key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, notFound(ns, key)
	}
	if err != nil {
		return nil, redisErr("get", err)
	}
	return v, nil
}

func (s *Redis) Put(ctx context.Context, ns, key string, value []byte) error {
	_, err := s.put(ctx, putScript, ns, key, value)
	return err
}

func (s *Redis) PutIfAbsent(ctx context.Context, ns, key string, value []byte) (bool, error) {
	return s.put(ctx, putIfAbsentScript, ns, key, value)
}

func (s *Redis) put(ctx context.Context, script *redis.Script, ns, key string, value []byte) (bool, error) {
	if err := ValidateKey(ns, key); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if value == nil {
		value = []byte{}
	}
	n, err := script.Run(ctx, s.c, []string{s.hash(ns), s.rev(ns)}, key, value).Int()
	if err != nil {
		return false, redisErr("put", err)
	}
	return n == 1, nil
}

func (s *Redis) Delete(ctx context.Context, ns, key string) error {
	if err := ValidateKey(ns, key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n, err := deleteScript.Run(ctx, s.c, []string{s.hash(ns), s.rev(ns)}, key).Int()
	if err != nil {
		return redisErr("delete", err)
	}
	if n == 0 {
		return notFound(ns, key)
	}
	return nil
}

func (s *Redis) List(ctx context.Context, ns string) ([]string, error) {
	if err := validateNamespace(ns); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	keys, err := s.c.HKeys(ctx, s.hash(ns)).Result()
	if err != nil {
		return nil, redisErr("list", err)
	}
	if keys == nil {
		keys = []string{}
	}
	slices.Sort(keys)
	return keys, nil
}

func (s *Redis) Revision(ctx context.Context, ns string) (uint64, error) {
	if err := validateNamespace(ns); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	v, err := s.c.Get(ctx, s.rev(ns)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, redisErr("revision", err)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, sdk.Internal("store: revision of %s is not a counter: %q", ns, v)
	}
	return n, nil
}

// Ping checks that Redis answers, for readiness.
func (s *Redis) Ping(ctx context.Context) error {
	return redisErr("ping", s.c.Ping(ctx).Err())
}

// Close does nothing: the client belongs to the caller.
func (s *Redis) Close() error { return nil }

// redisErr classifies a Redis failure: unreachable or too slow is
// Unavailable (HTTP 503, try again), anything else Internal.
func redisErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if redisconn.IsDown(err) {
		return sdk.Unavailable("state store (redis) unavailable: %s: %s", op, redisconn.Reason(err))
	}
	return sdk.Internal("state store (redis): %s: %w", op, err)
}
