package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gokbs/kbs/host/internal/adminauth"
	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbsclient"
	"github.com/gokbs/kbs/host/internal/redistest"
)

const (
	allowAllPolicy = "package policy\nimport rego.v1\nallow if data.plugin == \"resource\"\n"
	denyAllPolicy  = "package policy\ndefault allow := false\n"
	// refreshInterval is configs/replicas/replica.toml's; storeTimeout is
	// set lower here so that the outage part runs faster.
	refreshInterval = time.Second
	storeTimeout    = 500 * time.Millisecond
	// staleAfter is when a replica that cannot reach Redis stops deciding
	// on possibly stale policies (3 intervals plus the timeout).
	staleAfter = 3*refreshInterval + storeTimeout
)

// replicaSet is three kbs-host replicas of configs/replicas/replica.toml
// sharing one redis-server and one repository directory.
type replicaSet struct {
	redis *redistest.Server
	urls  []string
	admin *kbsclient.Client
	base  string
}

func startReplicas(t *testing.T) *replicaSet {
	t.Helper()
	rs := &replicaSet{redis: redistest.Start(t, redistest.Options{AppendOnly: true}), base: t.TempDir()}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writeECKey(t, filepath.Join(rs.base, "token.key"), key)
	priv, pub, err := adminauth.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rs.base, "admin.pub"), pub)
	env := []string{
		"KBS_STORAGE__REDIS_URL=" + rs.redis.URL,
		"KBS_STORAGE__TIMEOUT=" + storeTimeout.String(),
	}
	for range 3 {
		addr := freeAddr(t)
		b := startConfig(t, exampleConfig(t, "replicas/replica.toml", rs.base, addr), "http://"+addr, env)
		rs.urls = append(rs.urls, b.URL)
	}
	tok, err := adminauth.MintToken(priv, adminauth.TokenClaims{Issuer: "kbs-replicas", Subject: "test", Role: "admin"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rs.admin = kbsclient.New(rs.urls[0])
	rs.admin.AdminToken = tok
	return rs
}

// on returns the admin client pointed at replica i.
func (rs *replicaSet) on(i int) *kbsclient.Client {
	c := *rs.admin
	c.URL = rs.urls[i]
	return &c
}

// rotatingGuest runs auth on replica a, attest on replica b and fetches
// path with the session cookie alone from replica c, as a load balancer
// without sticky sessions would spread the requests.
func (rs *replicaSet) rotatingGuest(t *testing.T, a, b, c int, path string) (string, string, error) {
	t.Helper()
	ctx := context.Background()
	k, _ := guest.NewKey(guest.KindECP256)
	cl := kbsclient.New(rs.urls[a])
	ch, err := cl.Auth(ctx, "sample")
	if err != nil {
		return "", "", err
	}
	jwk, _ := k.PublicJWKJSON()
	// The cookie jar keys cookies by host, not port: the session cookie
	// from replica a goes to replicas b and c.
	cl.URL = rs.urls[b]
	tok, err := cl.Attest(ctx, ch, jwk, func(d []byte) (json.RawMessage, error) { return guest.NewSampleEvidence(d).JSON(), nil })
	if err != nil {
		return "", "", err
	}
	cl.URL = rs.urls[c]
	body, err := cl.GetResource(ctx, path, "")
	if err != nil {
		return "", tok, err
	}
	plain, err := k.DecryptJSON(body)
	if err != nil {
		t.Fatal(err)
	}
	return string(plain), tok, nil
}

// untilStatus polls fetch until it answers want, and returns how long
// that took, failing after limit.
func untilStatus(t *testing.T, limit time.Duration, want int, what string, fetch func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := fetch()
		st := 200
		if err != nil {
			st = kbsclient.StatusOf(err)
		}
		if st == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: still %d (%v) after %v, want %d", what, st, err, limit, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readyz(url string) (int, string) {
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReplicas: three replicas behind no load balancer at all, a guest
// whose every request goes to another one, admin changes made through one
// replica enforced by the others within the refresh interval, and Redis
// going away (503s, not ready) and coming back (recovery, nothing lost).
func TestReplicas(t *testing.T) {
	rs := startReplicas(t)
	ctx := context.Background()
	const path = "default/key/replicated"

	if err := rs.on(0).SetResource(ctx, path, []byte("shared secret")); err != nil {
		t.Fatal(err)
	}
	// Out of the box the resource policy refuses sample evidence.
	if _, _, err := rs.rotatingGuest(t, 0, 1, 2, path); kbsclient.StatusOf(err) != 403 {
		t.Fatalf("before any admin change: %v, want 403", err)
	}
	if err := rs.on(0).SetResourcePolicy(ctx, []byte(allowAllPolicy), ""); err != nil {
		t.Fatal(err)
	}
	k, _ := guest.NewKey(guest.KindECP256)
	_, bearer := handshake(t, rs.urls[0], k)
	bearerOn := func(i int) func() error {
		return func() error {
			_, err := kbsclient.New(rs.urls[i]).GetResource(ctx, path, bearer)
			return err
		}
	}
	for i := 1; i < 3; i++ {
		d := untilStatus(t, refreshInterval+time.Second, 200, "allow policy on replica", bearerOn(i))
		t.Logf("allow policy set on replica 0 in force on replica %d after %v", i, d.Round(time.Millisecond))
	}

	t.Run("guest rotating across replicas", func(t *testing.T) {
		for _, order := range [][3]int{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}} {
			got, tok, err := rs.rotatingGuest(t, order[0], order[1], order[2], path)
			if err != nil || got != "shared secret" {
				t.Fatalf("auth on %d, attest on %d, fetch on %d: %q %v", order[0], order[1], order[2], got, err)
			}
			// The token of one replica is good as Bearer on every other.
			for i := range rs.urls {
				if _, err := kbsclient.New(rs.urls[i]).GetResource(ctx, path, tok); err != nil {
					t.Fatalf("token issued by replica %d refused by replica %d: %v", order[1], i, err)
				}
			}
		}
	})

	t.Run("nonce is good once across replicas", func(t *testing.T) {
		k, _ := guest.NewKey(guest.KindECP256)
		jwk, _ := k.PublicJWKJSON()
		cl := kbsclient.New(rs.urls[0])
		ch, err := cl.Auth(ctx, "sample")
		if err != nil {
			t.Fatal(err)
		}
		ev := func(d []byte) (json.RawMessage, error) { return guest.NewSampleEvidence(d).JSON(), nil }
		var wins, used int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range 9 {
			wg.Go(func() {
				c := *cl
				c.URL = rs.urls[i%3]
				_, err := c.Attest(ctx, ch, jwk, ev)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case kbsclient.StatusOf(err) == 401 && strings.Contains(err.Error(), "already used"):
					used++
				default:
					t.Errorf("attest: %v", err)
				}
			})
		}
		wg.Wait()
		if wins != 1 || used != 8 {
			t.Fatalf("%d attests won and %d were told the nonce was used, want 1 and 8", wins, used)
		}
	})

	t.Run("admin change on one replica enforced by the others", func(t *testing.T) {
		if err := rs.on(1).SetResourcePolicy(ctx, []byte(denyAllPolicy), ""); err != nil {
			t.Fatal(err)
		}
		if err := bearerOn(1)(); kbsclient.StatusOf(err) != 403 {
			t.Fatalf("replica 1, where the policy was set: %v, want 403 at once", err)
		}
		var wg sync.WaitGroup
		for _, i := range []int{0, 2} {
			wg.Go(func() {
				d := untilStatus(t, refreshInterval+time.Second, 403, "deny policy on replica", bearerOn(i))
				t.Logf("deny policy set on replica 1 in force on replica %d after %v (refresh_interval %v)", i, d.Round(time.Millisecond), refreshInterval)
			})
		}
		wg.Wait()
		if err := rs.on(2).SetReferenceValue(ctx, "launch_digest", json.RawMessage(`["abc"]`)); err != nil {
			t.Fatal(err)
		}
		if v, err := rs.on(0).GetReferenceValue(ctx, "launch_digest"); err != nil || string(v) != `["abc"]` {
			t.Fatalf("reference value set on replica 2, read on replica 0: %s %v", v, err)
		}
	})

	t.Run("redis down and back", func(t *testing.T) {
		_, _, err := rs.rotatingGuest(t, 0, 1, 2, path) // a cookie session to use while Redis is down
		if kbsclient.StatusOf(err) != 403 {
			t.Fatalf("deny-all before the outage: %v", err)
		}
		cookieClient := kbsclient.New(rs.urls[0])
		if _, err := cookieClient.Auth(ctx, "sample"); err != nil {
			t.Fatal(err)
		}
		rs.redis.Kill()
		down := time.Now()

		for i, u := range rs.urls {
			untilStatus(t, 2*time.Second, 503, "readyz", func() error {
				if st, body := readyz(u); st != 200 {
					if !strings.Contains(body, `"type":"https://github.com/confidential-containers/kbs/errors/`) {
						t.Errorf("replica %d readyz body %q is not KBS error JSON", i, body)
					}
					return &kbsclient.Error{Status: st}
				}
				return nil
			})
		}
		checks := []struct {
			name    string
			do      func() error
			variant string
		}{
			{"auth", func() error { _, err := kbsclient.New(rs.urls[1]).Auth(ctx, "sample"); return err }, "AttestationError"},
			{"cookie resource request", func() error {
				c := *cookieClient
				c.URL = rs.urls[2]
				_, err := c.GetResource(ctx, path, "")
				return err
			}, "TokenNotFound"},
			{"admin policy change", func() error { return rs.on(0).SetResourcePolicy(ctx, []byte(allowAllPolicy), "") }, "PolicyEngineError"},
			{"admin reference value", func() error {
				return rs.on(1).SetReferenceValue(ctx, "x", json.RawMessage(`[1]`))
			}, "RvpsError"},
		}
		for _, c := range checks {
			start := time.Now()
			err := c.do()
			took := time.Since(start)
			var ke *kbsclient.Error
			if !errors.As(err, &ke) || ke.Status != 503 || !strings.HasSuffix(ke.Type, "/"+c.variant) {
				t.Errorf("%s with Redis down: %v, want 503 %s", c.name, err, c.variant)
			}
			if took > 2*storeTimeout+time.Second {
				t.Errorf("%s with Redis down took %v", c.name, took)
			}
			t.Logf("%s with Redis down: %v in %v", c.name, err, took.Round(time.Millisecond))
		}
		// A Bearer request needs no store, but its policy may be stale:
		// refused once the replica could not check for staleAfter.
		for i := range rs.urls {
			untilStatus(t, staleAfter+time.Second-time.Since(down), 503, "bearer request", bearerOn(i))
		}
		t.Logf("bearer requests refused on every replica %v after Redis went down (stale after %v)", time.Since(down).Round(time.Millisecond), staleAfter)

		rs.redis.Restart(t)
		back := time.Now()
		for _, u := range rs.urls {
			untilStatus(t, 5*time.Second, 200, "readyz after Redis is back", func() error {
				if st, _ := readyz(u); st != 200 {
					return &kbsclient.Error{Status: st}
				}
				return nil
			})
		}
		t.Logf("every replica ready %v after Redis came back", time.Since(back).Round(time.Millisecond))

		// Nothing acknowledged is lost: the deny-all policy, the reference
		// value, and (in the shared repository) the resource.
		if rego, err := rs.on(2).GetResourcePolicy(ctx, ""); err != nil || string(rego) != denyAllPolicy {
			t.Fatalf("resource policy after the outage: %q %v", rego, err)
		}
		if _, _, err := rs.rotatingGuest(t, 2, 0, 1, path); kbsclient.StatusOf(err) != 403 {
			t.Fatalf("deny-all not enforced after the outage: %v", err)
		}
		if v, err := rs.on(1).GetReferenceValue(ctx, "launch_digest"); err != nil || string(v) != `["abc"]` {
			t.Fatalf("reference value after the outage: %s %v", v, err)
		}
		if err := rs.on(0).SetResourcePolicy(ctx, []byte(allowAllPolicy), ""); err != nil {
			t.Fatal(err)
		}
		untilStatus(t, refreshInterval+time.Second, 200, "allow after the outage", bearerOn(2))
		if got, _, err := rs.rotatingGuest(t, 1, 2, 0, path); err != nil || got != "shared secret" {
			t.Fatalf("rotating guest after the outage: %q %v", got, err)
		}
	})
}
