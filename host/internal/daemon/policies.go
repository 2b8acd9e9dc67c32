package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/gokbs/kbs/host/internal/config"
	"github.com/gokbs/kbs/host/internal/policy"
	"github.com/gokbs/kbs/host/internal/protocol"
	"github.com/gokbs/kbs/host/internal/refvalues"
	"github.com/gokbs/kbs/host/internal/store"
)

// policies is the decision-making part of the broker: durable state, the
// attestation and resource policies, reference values.
type policies struct {
	store     store.Store
	refvalues *refvalues.Registry
	engine    *policy.Engine
	appraiser protocol.Appraiser
	resources protocol.ResourcePolicy
}

func newPolicies(ctx context.Context, cfg *config.Config, log hclog.Logger) (*policies, error) {
	if err := ensureDir(cfg.Storage.Dir); err != nil {
		return nil, fmt.Errorf("storage.dir: %w", err)
	}
	st, err := store.OpenBolt(filepath.Join(cfg.Storage.Dir, "kbs.db"))
	if err != nil {
		return nil, fmt.Errorf("opening the state store: %w", err)
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
	return &policies{store: st, refvalues: rv, engine: eng, appraiser: eng, resources: resourcePolicy{eng}}, nil
}

func (p *policies) Close() { _ = p.store.Close() }

// resourcePolicy adapts the engine's decision to the protocol's.
type resourcePolicy struct{ e *policy.Engine }

func (r resourcePolicy) Allow(ctx context.Context, claims map[string]any, plugin string, path []string, query map[string]string) (protocol.Decision, error) {
	d, err := r.e.Allow(ctx, claims, plugin, path, query)
	if err != nil {
		return protocol.Decision{}, err
	}
	return protocol.Decision{Allowed: d.Allowed, PolicyID: d.PolicyID()}, nil
}
