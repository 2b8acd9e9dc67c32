package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gokbs/kbs/host/internal/redisconn"
	"github.com/gokbs/kbs/sdk"
)

// Redis is a Store in Redis or Valkey, shared by the replicas of a broker
// so that auth, attest and resource requests may land on different ones.
// A session is one hash, <prefix>session:<id>, that Redis expires at the
// session's end; its memory is bounded by Redis's maxmemory (a refusal for
// lack of memory is ErrFull), not by session.max_sessions.
type Redis struct {
	c      redis.UniversalClient
	prefix string
	now    func() time.Time
}

var _ Store = (*Redis)(nil)

// NewRedis returns a store over c with keys under prefix. The client is
// the caller's to close.
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	return &Redis{c: c, prefix: prefix, now: time.Now}
}

// Hash fields.
const (
	fTEE     = "tee"
	fNonce   = "nonce"
	fHashAlg = "hash_alg"
	fExtra   = "extra"
	fExpires = "expires" // Unix milliseconds
	fState   = "state"
	fToken   = "token"
	// "consumed" is set by consumeScript only.
)

var (
	// Create: the hash and its expiry (ARGV[1], Unix ms) in one step, so
	// that no session outlives its end.
	createScript = redis.NewScript(`redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1`)
	// ConsumeNonce: nil when the session is gone, 0 when its nonce was
	// used (or it is attested), else the whole hash. HSETNX makes the
	// consumption happen once; the script makes check and set one step.
	consumeScript = redis.NewScript(`if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if redis.call('HGET', KEYS[1], 'state') ~= '0' then return 0 end
if redis.call('HSETNX', KEYS[1], 'consumed', '1') == 0 then return 0 end
return redis.call('HGETALL', KEYS[1])`)
	// Attest: 0 when the session is gone. HSET keeps the key's expiry.
	attestScript = redis.NewScript(`if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', '1', 'token', ARGV[1])
return 1`)
)

func (r *Redis) key(id string) string { return r.prefix + "session:" + id }

func (r *Redis) Create(ctx context.Context, s *Session) error {
	exp := strconv.FormatInt(s.ExpiresAt.UnixMilli(), 10)
	err := createScript.Run(ctx, r.c, []string{r.key(s.ID)}, exp,
		fTEE, s.TEE, fNonce, s.Nonce, fHashAlg, s.HashAlg, fExtra, s.ExtraParams,
		fExpires, exp, fState, strconv.Itoa(int(s.State)), fToken, s.Token).Err()
	if err != nil {
		// Redis at maxmemory with noeviction refuses writes with OOM.
		if strings.HasPrefix(err.Error(), "OOM ") {
			return ErrFull
		}
		return storeErr("create", err)
	}
	return nil
}

func (r *Redis) Get(ctx context.Context, id string) (*Session, error) {
	m, err := r.c.HGetAll(ctx, r.key(id)).Result()
	if err != nil {
		return nil, storeErr("get", err)
	}
	return r.decode(id, m)
}

func (r *Redis) ConsumeNonce(ctx context.Context, id string) (*Session, error) {
	res, err := consumeScript.Run(ctx, r.c, []string{r.key(id)}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, storeErr("consume nonce", err)
	}
	var m map[string]string
	switch v := res.(type) {
	case int64:
		return nil, ErrNonceUsed
	case []any: // RESP2: flat field, value list
		m = make(map[string]string, len(v)/2)
		for i := 0; i+1 < len(v); i += 2 {
			k, _ := v[i].(string)
			m[k], _ = v[i+1].(string)
		}
	case map[any]any: // RESP3
		m = make(map[string]string, len(v))
		for k, val := range v {
			ks, _ := k.(string)
			m[ks], _ = val.(string)
		}
	default:
		return nil, sdk.Internal("session store (redis): consume nonce: unexpected reply %T", res)
	}
	s, err := r.decode(id, m)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (r *Redis) Attest(ctx context.Context, id, token string) error {
	n, err := attestScript.Run(ctx, r.c, []string{r.key(id)}, token).Int()
	if err != nil {
		return storeErr("attest", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func (r *Redis) Delete(ctx context.Context, id string) error {
	return storeErr("delete", r.c.Del(ctx, r.key(id)).Err())
}

// Ping checks that Redis answers, for readiness.
func (r *Redis) Ping(ctx context.Context) error {
	return storeErr("ping", r.c.Ping(ctx).Err())
}

// decode turns a hash into a session; an empty or expired one is
// ErrNotFound (Redis expires keys lazily to the millisecond, the clock
// check makes the end exact).
func (r *Redis) decode(id string, m map[string]string) (*Session, error) {
	if len(m) == 0 {
		return nil, ErrNotFound
	}
	ms, err := strconv.ParseInt(m[fExpires], 10, 64)
	if err != nil {
		return nil, sdk.Internal("session store (redis): session %s has no valid expiry", id)
	}
	exp := time.UnixMilli(ms)
	if !r.now().Before(exp) {
		return nil, ErrNotFound
	}
	st, err := strconv.Atoi(m[fState])
	if err != nil || (State(st) != Authed && State(st) != Attested) {
		return nil, sdk.Internal("session store (redis): session %s has no valid state", id)
	}
	return &Session{
		ID: id, TEE: m[fTEE], Nonce: m[fNonce], HashAlg: m[fHashAlg], ExtraParams: m[fExtra],
		ExpiresAt: exp, State: State(st), Token: m[fToken],
	}, nil
}

func storeErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if redisconn.IsDown(err) {
		return sdk.Unavailable("session store (redis) unavailable: %s: %s", op, redisconn.Reason(err))
	}
	return fmt.Errorf("session store (redis): %s: %w", op, err)
}
