package daemon

import (
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/gokbs/kbs/host/internal/config"
	"github.com/gokbs/kbs/host/internal/policy"
	"github.com/gokbs/kbs/host/internal/protocol"
	"github.com/gokbs/kbs/host/internal/refvalues"
	"github.com/gokbs/kbs/host/internal/store"
	"github.com/gokbs/kbs/sdk/token"
)

// policies is the decision-making part of the broker: durable state, the
// attestation and resource policies, reference values.
type policies struct {
	store     store.Store
	refvalues *refvalues.Registry
	engine    *policy.Engine
	appraiser protocol.Appraiser
	resources protocol.ResourcePolicy
	// refresher follows a shared (redis) store; nil for bolt.
	refresher *refresher
}

// newPolicies opens the state store (bolt, or redis over rc) and loads
// the policies and reference values.
func newPolicies(ctx context.Context, cfg *config.Config, rc *redis.Client, log hclog.Logger) (*policies, error) {
	st, err := openStateStore(cfg, rc)
	if err != nil {
		return nil, err
	}
	rv, err := refvalues.New(ctx, st, refvalues.Options{})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("reference values: %w", err)
	}
	opts := policy.Options{}
	switch {
	case cfg.Policy.DevAllowAll:
		opts.InitialResourcePolicy = policy.AllowAllResourcePolicy
	case cfg.Policy.ResourcePolicyFile != "":
		b, err := os.ReadFile(cfg.Policy.ResourcePolicyFile)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("policy.resource_policy_file: %w", err)
		}
		opts.InitialResourcePolicy = string(b)
	}
	eng, err := policy.New(ctx, st, rv, opts)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("policies: %w", err)
	}
	p := &policies{store: st, refvalues: rv, engine: eng}
	if cfg.Storage.StorageType == config.StorageRedis {
		// Other replicas change the shared store: follow it, and refuse
		// to decide on policies that may be stale.
		p.refresher = newRefresher(p, cfg.Storage, log)
	}
	p.appraiser = freshAppraiser{eng, p.fresh}
	p.resources = resourcePolicy{eng, p.fresh}
	return p, nil
}

func (p *policies) Close() {
	if p.refresher != nil {
		p.refresher.Close()
	}
	_ = p.store.Close()
}

// fresh is nil unless the policies may be stale (see refresher.Fresh).
func (p *policies) fresh() error {
	if p.refresher == nil {
		return nil
	}
	return p.refresher.Fresh()
}

// freshAppraiser runs the attestation policy only while it is known to
// be current.
type freshAppraiser struct {
	e     *policy.Engine
	fresh func() error
}

func (a freshAppraiser) Appraise(ctx context.Context, class string, input map[string]any) (token.Appraisal, error) {
	if err := a.fresh(); err != nil {
		return token.Appraisal{}, err
	}
	return a.e.Appraise(ctx, class, input)
}

// resourcePolicy adapts the engine's decision to the protocol's.
type resourcePolicy struct {
	e     *policy.Engine
	fresh func() error
}

func (r resourcePolicy) Allow(ctx context.Context, claims map[string]any, plugin string, path []string, query map[string]string) (protocol.Decision, error) {
	if err := r.fresh(); err != nil {
		return protocol.Decision{}, err
	}
	d, err := r.e.Allow(ctx, claims, plugin, path, query)
	if err != nil {
		return protocol.Decision{}, err
	}
	return protocol.Decision{Allowed: d.Allowed, PolicyID: d.PolicyID()}, nil
}
