package policy

import (
	"context"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/resolver"

	"github.com/gokbs/kbs/host/internal/store"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
)

// ResourcePlugin is the plugin name of resource requests, the only
// requests scoped policies apply to.
const ResourcePlugin = "resource"

// globalScopeKey stores the global policy; "*" cannot be a scope because
// it is not a valid path segment.
const globalScopeKey = "*"

var resourceQuery = ast.MustParseBody(`data.policy.allow`)

// The request is exposed where trustee puts it: data.plugin,
// data["resource-path"], data.query.
var (
	refPlugin = ast.MustParseRef(`data.plugin`)
	refPath   = ast.MustParseRef(`data["resource-path"]`)
	refQuery  = ast.MustParseRef(`data.query`)
)

// Decision is the outcome of a resource policy.
type Decision struct {
	Allowed bool
	// Scope is the scope of the policy that decided: "" for the global
	// policy, else a path prefix such as "repo" or "repo/type".
	Scope string
}

// PolicyID names the deciding policy for audit logs: "resource-policy" or
// "resource-policy:<scope>".
func (d Decision) PolicyID() string {
	if d.Scope == "" {
		return "resource-policy"
	}
	return "resource-policy:" + d.Scope
}

// ValidateScope checks a resource policy scope: "" (global) or one to three
// valid resource path segments joined by "/" ("repo", "repo/type",
// "repo/type/tag").
func ValidateScope(scope string) error {
	if scope == "" {
		return nil
	}
	segs := strings.Split(scope, "/")
	if len(segs) > 3 {
		return sdk.InvalidArgument("resource policy scope %q: at most repo/type/tag", scope)
	}
	for _, s := range segs {
		if err := resource.ValidateSegment(s); err != nil {
			return sdk.InvalidArgument("resource policy scope %q: %v", scope, err)
		}
	}
	return nil
}

func scopeKey(scope string) string {
	if scope == "" {
		return globalScopeKey
	}
	return scope
}

func keyScope(key string) string {
	if key == globalScopeKey {
		return ""
	}
	return key
}

// SetResourcePolicy compiles a resource policy and, if it compiles, stores
// it for scope ("" for the global policy) and starts using it. Refusals are
// sdk.InvalidArgument errors; a compile failure wraps a *CompileError.
func (e *Engine) SetResourcePolicy(ctx context.Context, scope, src string) error {
	if err := ValidateScope(scope); err != nil {
		return err
	}
	p, err := e.compileResource(ctx, scope, src)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.st.Put(ctx, store.NamespaceResourcePolicy, scopeKey(scope), []byte(src)); err != nil {
		return fmt.Errorf("storing resource policy: %w", err)
	}
	publish(&e.res, scopeKey(scope), p)
	return nil
}

// DeleteResourcePolicy removes a scoped policy; requests under it fall back
// to the next less specific one. The global policy cannot be deleted (set
// DenyAllResourcePolicy instead). A missing scope is an sdk.NotFound error.
func (e *Engine) DeleteResourcePolicy(ctx context.Context, scope string) error {
	if scope == "" {
		return sdk.InvalidArgument("the global resource policy cannot be deleted; set a deny-all policy instead")
	}
	if err := ValidateScope(scope); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.st.Delete(ctx, store.NamespaceResourcePolicy, scope); err != nil {
		return fmt.Errorf("deleting resource policy %q: %w", scope, err)
	}
	publish(&e.res, scope, nil)
	return nil
}

// GetResourcePolicy returns the source of the policy of scope, or an
// sdk.NotFound error.
func (e *Engine) GetResourcePolicy(scope string) (string, error) {
	p, ok := (*e.res.Load())[scopeKey(scope)]
	if !ok {
		return "", sdk.NotFound("no resource policy for scope %q", scope)
	}
	return p.src, nil
}

// ListResourcePolicies returns the scopes that have a policy, sorted; the
// global policy is "".
func (e *Engine) ListResourcePolicies() []string {
	m := *e.res.Load()
	out := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, keyScope(k))
	}
	// "*" sorts before letters and digits, so the global scope comes first.
	return out
}

func (e *Engine) compileResourceFromKey(ctx context.Context, key, src string) (*compiled, error) {
	return e.compileResource(ctx, keyScope(key), src)
}

func (e *Engine) compileResource(ctx context.Context, scope, src string) (*compiled, error) {
	name := "resource-policy.rego"
	if scope != "" {
		name = "resource-policy:" + scope + ".rego"
	}
	mod, err := parseModule(name, src)
	if err != nil {
		return nil, err
	}
	pq, err := e.prepare(ctx, mod, resourceQuery)
	if err != nil {
		return nil, err
	}
	return &compiled{id: scope, src: src, pq: pq}, nil
}

// Allow evaluates the resource policy that applies to a request: for the
// resource plugin, the policy of the longest scope that prefixes path, else
// the global one. input is the token's claims; the request is data.plugin,
// data["resource-path"] and data.query. Only a boolean true allows: an
// undefined or non-boolean allow denies. An evaluation error denies and is
// returned.
func (e *Engine) Allow(ctx context.Context, claims map[string]any, plugin string, path []string, query map[string]string) (Decision, error) {
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	scope, p := e.lookupResource(plugin, path)
	d := Decision{Scope: scope}
	if p == nil {
		return d, sdk.Internal("no global resource policy")
	}

	pathTerms := make([]*ast.Term, len(path))
	for i, s := range path {
		pathTerms[i] = ast.StringTerm(s)
	}
	queryObj := ast.NewObject()
	for k, v := range query {
		queryObj.Insert(ast.StringTerm(k), ast.StringTerm(v))
	}
	// Resolvers hand the request to this evaluation only. The alternative,
	// writing it into the store in a transaction per request, serialises
	// every request on the store's write lock.
	// The claims are a verified token's, decoded from JSON, so every value
	// converts; converting lazily turns into policy terms only what the
	// policy reads (an allow-all policy reads nothing), which was most of
	// the cost of a decision.
	in := ast.LazyObject(claims)
	rs, err := p.pq.Eval(ctx,
		rego.EvalParsedInput(in),
		rego.EvalResolver(refPlugin, valueResolver{ast.String(plugin)}),
		rego.EvalResolver(refPath, valueResolver{ast.NewArray(pathTerms...)}),
		rego.EvalResolver(refQuery, valueResolver{queryObj}),
	)
	if err != nil {
		return d, fmt.Errorf("resource policy %s: %w", d.PolicyID(), err)
	}
	d.Allowed = rs.Allowed()
	return d, nil
}

// lookupResource picks the most specific policy for a request.
func (e *Engine) lookupResource(plugin string, path []string) (string, *compiled) {
	m := *e.res.Load()
	if plugin == ResourcePlugin && len(m) > 1 {
		for n := min(len(path), 3); n > 0; n-- {
			scope := strings.Join(path[:n], "/")
			if p, ok := m[scope]; ok {
				return scope, p
			}
		}
	}
	return "", m[globalScopeKey]
}

type valueResolver struct{ v ast.Value }

func (r valueResolver) Eval(context.Context, resolver.Input) (resolver.Result, error) {
	return resolver.Result{Value: r.v}, nil
}
