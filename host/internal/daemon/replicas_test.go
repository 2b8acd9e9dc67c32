package daemon

import (
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gokbs/kbs/host/internal/config"
	"github.com/gokbs/kbs/host/internal/policy"
	"github.com/gokbs/kbs/host/internal/redisconn"
	"github.com/gokbs/kbs/host/internal/redistest"
	"github.com/gokbs/kbs/sdk"
)

// twoReplicas builds the policies of two replicas over one Redis, as
// newPolicies does for storage_type = "redis".
func twoReplicas(t *testing.T, srv *redistest.Server) (a, b *policies) {
	t.Helper()
	cfg := config.Default()
	cfg.Storage.StorageType = config.StorageRedis
	cfg.Storage.RedisURL = srv.URL
	cfg.Storage.RefreshInterval = 100 * time.Millisecond
	cfg.Storage.Timeout = 200 * time.Millisecond
	open := func() *policies {
		rc, err := redisconn.Open(cfg.Storage.RedisURL, cfg.Storage.Timeout)
		if err != nil {
			t.Fatal(err)
		}
		p, err := newPolicies(context.Background(), &cfg, rc, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close(); rc.Close() })
		return p
	}
	return open(), open()
}

// eventually polls cond every 10 ms for up to limit and returns how long
// it took to hold.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// TestRefresherFollowsOtherReplicas: attestation policies, resource
// policies and reference values set through replica A reach replica B
// within the refresh interval; with Redis gone, B refuses to decide once
// its view may be stale, and recovers when Redis is back.
func TestRefresherFollowsOtherReplicas(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	a, b := twoReplicas(t, srv)
	ctx := context.Background()
	const interval = 100 * time.Millisecond

	att := "package policy\n\ntrust_claims := {\"executables\": 3}\n"
	if err := a.engine.SetAttestationPolicy(ctx, "custom_cpu", att); err != nil {
		t.Fatal(err)
	}
	if err := a.engine.SetResourcePolicy(ctx, "", policy.DenyAllResourcePolicy); err != nil {
		t.Fatal(err)
	}
	payload := base64.StdEncoding.EncodeToString([]byte(`{"launch_digest":["abc"]}`))
	if _, err := a.refvalues.Register(ctx, []byte(`{"version":"0.1.0","type":"sample","payload":"`+payload+`"}`)); err != nil {
		t.Fatal(err)
	}
	d := eventually(t, 3*interval, "changes reach replica B", func() bool {
		src, err := b.engine.GetAttestationPolicy("custom_cpu")
		rp, _ := b.engine.GetResourcePolicy("")
		_, ok := b.refvalues.Snapshot().Lookup("launch_digest", time.Now())
		return err == nil && src == att && rp == policy.DenyAllResourcePolicy && ok
	})
	t.Logf("replica B caught up after %v (refresh interval %v)", d, interval)
	if err := b.fresh(); err != nil {
		t.Fatalf("fresh with Redis up: %v", err)
	}

	srv.Kill()
	stale := b.refresher.staleAfter
	d = eventually(t, stale+3*interval, "replica B refuses stale decisions", func() bool {
		return sdk.ClassOf(b.fresh()) == sdk.ClassUnavailable
	})
	t.Logf("replica B refused to decide %v after Redis went down (stale after %v)", d, stale)
	if d < stale-interval {
		t.Errorf("refused after %v, before the %v it may be stale", d, stale)
	}
	if _, err := b.resources.Allow(ctx, map[string]any{}, "resource", []string{"a", "b", "c"}, nil); sdk.ClassOf(err) != sdk.ClassUnavailable {
		t.Fatalf("resource decision with a stale view: %v, want unavailable", err)
	}
	if _, err := b.appraiser.Appraise(ctx, "cpu", map[string]any{}); sdk.ClassOf(err) != sdk.ClassUnavailable {
		t.Fatalf("appraisal with a stale view: %v, want unavailable", err)
	}

	srv.Restart(t)
	d = eventually(t, 5*time.Second, "replica B fresh again", func() bool { return b.fresh() == nil })
	t.Logf("replica B fresh again %v after Redis came back", d)
	if src, err := b.engine.GetAttestationPolicy("custom_cpu"); err != nil || src != att {
		t.Fatalf("attestation policy after the outage: %q %v", src, err)
	}
}
