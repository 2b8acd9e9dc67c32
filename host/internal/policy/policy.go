// Package policy holds the broker's two kinds of Rego policy and evaluates
// them with OPA:
//
//   - attestation policies turn a verifier's claims into an EAR appraisal
//     (AR4SI trust vector, status, extensions), one policy per TEE class
//     ("default_cpu", "default_gpu", ...);
//   - resource policies decide whether a token may fetch a resource, with an
//     optional policy per path prefix (most specific wins).
//
// Policies are compiled once, when set or loaded, into prepared queries;
// evaluation does no parsing or compiling. The compiled set is an
// immutable map swapped atomically, so evaluation takes no lock. Sources are
// kept in the durable store; Refresh picks up changes made by other
// replicas.
//
// Policies are written in Rego v1; a policy that only parses as Rego v0
// (trustee's older sample policies) is accepted as v0. Both kinds use
// package "policy". Builtins that reach the network or the host (http.send,
// net.lookup_ip_addr, opa.runtime) are not available; the builtin
// query_reference_value(name) returns a registered reference value, or null.
package policy

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/gokbs/kbs/host/internal/refvalues"
	"github.com/gokbs/kbs/host/internal/store"
	"github.com/gokbs/kbs/sdk"
)

//go:embed rego/*.rego
var builtinPolicies embed.FS

func mustRead(name string) string {
	b, err := builtinPolicies.ReadFile("rego/" + name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Built-in policies, exported so that the host can seed or reset them (dev
// mode starts with AllowAllResourcePolicy).
var (
	DefaultCPUPolicy       = mustRead("default_cpu.rego")
	DefaultGPUPolicy       = mustRead("default_gpu.rego")
	DefaultResourcePolicy  = mustRead("resource_default.rego")
	AllowAllResourcePolicy = mustRead("resource_allow_all.rego")
	DenyAllResourcePolicy  = mustRead("resource_deny_all.rego")
)

// DefaultAttestationPolicies are written at start-up unless a policy of the
// same ID is stored already.
func DefaultAttestationPolicies() map[string]string {
	return map[string]string{"default_cpu": DefaultCPUPolicy, "default_gpu": DefaultGPUPolicy}
}

// Options tune an Engine; the zero value is the default.
type Options struct {
	// InitialResourcePolicy is written as the global resource policy when
	// none is stored yet (default: DefaultResourcePolicy). Once stored, it is
	// never overwritten at start-up.
	InitialResourcePolicy string
}

// Engine compiles, stores and evaluates policies. It is safe for
// concurrent use.
type Engine struct {
	st   store.Store
	rv   *refvalues.Registry
	caps *ast.Capabilities

	att atomic.Pointer[map[string]*compiled] // policy ID -> policy
	res atomic.Pointer[map[string]*compiled] // scope key -> policy

	// mu serialises changes (Set*, Delete*, Reload) so that a reload never
	// publishes an older set over a newer one.
	mu     sync.Mutex
	attRev uint64
	resRev uint64

	rvc atomic.Pointer[rvCache]
}

type compiled struct {
	id  string // policy ID or resource scope
	src string
	pq  rego.PreparedEvalQuery
}

// New loads and compiles the stored policies, first writing the built-in
// defaults where nothing is stored. A stored policy that no longer compiles
// is an error: better not to start than to decide with the wrong policy.
// rv may be nil, in which case query_reference_value always returns null.
func New(ctx context.Context, st store.Store, rv *refvalues.Registry, opts Options) (*Engine, error) {
	e := &Engine{st: st, rv: rv, caps: capabilities()}
	empty := map[string]*compiled{}
	e.att.Store(&empty)
	e.res.Store(&empty)

	defaults := DefaultAttestationPolicies()
	for _, id := range slices.Sorted(maps.Keys(defaults)) {
		if _, err := st.PutIfAbsent(ctx, store.NamespaceAttestationPolicy, id, []byte(defaults[id])); err != nil {
			return nil, fmt.Errorf("seeding attestation policy %s: %w", id, err)
		}
	}
	initial := opts.InitialResourcePolicy
	if initial == "" {
		initial = DefaultResourcePolicy
	}
	if _, err := e.compileResource(ctx, "", initial); err != nil {
		return nil, fmt.Errorf("initial resource policy: %w", err)
	}
	if _, err := st.PutIfAbsent(ctx, store.NamespaceResourcePolicy, globalScopeKey, []byte(initial)); err != nil {
		return nil, fmt.Errorf("seeding resource policy: %w", err)
	}
	if err := e.Reload(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload recompiles whatever changed in the store since the last load
// (policies whose source is unchanged keep their compiled form). On error
// the policies that did compile are published and the error lists the
// others, which keep their previous version.
func (e *Engine) Reload(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	if rev, err := e.reloadNamespace(ctx, store.NamespaceAttestationPolicy, &e.att, e.compileAttestationFromKey); err != nil {
		errs = append(errs, err)
	} else {
		e.attRev = rev
	}
	if rev, err := e.reloadNamespace(ctx, store.NamespaceResourcePolicy, &e.res, e.compileResourceFromKey); err != nil {
		errs = append(errs, err)
	} else {
		e.resRev = rev
	}
	return errors.Join(errs...)
}

// Refresh reloads only when the store's revision moved: cheap enough for a
// short timer on every replica.
func (e *Engine) Refresh(ctx context.Context) error {
	ar, err := e.st.Revision(ctx, store.NamespaceAttestationPolicy)
	if err != nil {
		return fmt.Errorf("policy refresh: %w", err)
	}
	rr, err := e.st.Revision(ctx, store.NamespaceResourcePolicy)
	if err != nil {
		return fmt.Errorf("policy refresh: %w", err)
	}
	e.mu.Lock()
	same := ar == e.attRev && rr == e.resRev
	e.mu.Unlock()
	if same {
		return nil
	}
	return e.Reload(ctx)
}

func (e *Engine) reloadNamespace(ctx context.Context, ns string, dst *atomic.Pointer[map[string]*compiled],
	compile func(ctx context.Context, key, src string) (*compiled, error)) (uint64, error) {
	rev, err := e.st.Revision(ctx, ns)
	if err != nil {
		return 0, fmt.Errorf("loading %s: %w", ns, err)
	}
	keys, err := e.st.List(ctx, ns)
	if err != nil {
		return 0, fmt.Errorf("loading %s: %w", ns, err)
	}
	old := *dst.Load()
	next := make(map[string]*compiled, len(keys))
	var errs []error
	for _, key := range keys {
		raw, err := e.st.Get(ctx, ns, key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("loading %s %q: %w", ns, key, err)
		}
		if p, ok := old[key]; ok && p.src == string(raw) {
			next[key] = p
			continue
		}
		p, err := compile(ctx, key, string(raw))
		if err != nil {
			errs = append(errs, fmt.Errorf("stored %s %q: %w", ns, key, err))
			if p, ok := old[key]; ok {
				next[key] = p
			}
			continue
		}
		next[key] = p
	}
	dst.Store(&next)
	return rev, errors.Join(errs...)
}

// publish replaces one entry of a compiled set (nil deletes it).
func publish(dst *atomic.Pointer[map[string]*compiled], key string, p *compiled) {
	old := *dst.Load()
	next := make(map[string]*compiled, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	if p == nil {
		delete(next, key)
	} else {
		next[key] = p
	}
	dst.Store(&next)
}

// CompileError is a policy that does not parse or compile. Errors returned
// by Set* wrap it in an sdk.InvalidArgument error (HTTP 400); get it back
// with errors.As to report each problem's position.
type CompileError struct {
	Problems []Problem
}

// Problem is one compiler message with its 1-based position in the policy
// text (0 when the compiler gave none).
type Problem struct {
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

func (e *CompileError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		var b strings.Builder
		if p.Line > 0 {
			fmt.Fprintf(&b, "line %d, column %d: ", p.Line, p.Column)
		}
		if p.Code != "" {
			b.WriteString(p.Code + ": ")
		}
		b.WriteString(p.Message)
		parts[i] = b.String()
	}
	return strings.Join(parts, "; ")
}

func invalidPolicy(problems ...Problem) error {
	return sdk.InvalidArgument("invalid policy: %w", &CompileError{Problems: problems})
}

// compileErr converts OPA's errors (ast.Errors, possibly wrapped) into a
// CompileError.
func compileErr(err error) error {
	var aerrs ast.Errors
	if !errors.As(err, &aerrs) {
		var aerr *ast.Error
		if !errors.As(err, &aerr) {
			return invalidPolicy(Problem{Message: err.Error()})
		}
		aerrs = ast.Errors{aerr}
	}
	problems := make([]Problem, 0, len(aerrs))
	for _, a := range aerrs {
		p := Problem{Code: a.Code, Message: a.Message}
		if a.Location != nil {
			p.Line, p.Column = a.Location.Row, a.Location.Col
		}
		problems = append(problems, p)
	}
	return invalidPolicy(problems...)
}

var policyPackage = ast.MustParseRef("data.policy")

// parseModule parses Rego v1, falling back to v0 for policies written for
// regorus or older OPA. When both fail, the error shown is v1's unless v1
// only objected to v0 syntax, in which case v0's (the real mistake) is.
func parseModule(filename, src string) (*ast.Module, error) {
	mod, err1 := ast.ParseModuleWithOpts(filename, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err1 == nil {
		return checkPackage(mod)
	}
	mod, err0 := ast.ParseModuleWithOpts(filename, src, ast.ParserOptions{RegoVersion: ast.RegoV0})
	if err0 == nil {
		return checkPackage(mod)
	}
	msg := err1.Error()
	if strings.Contains(msg, "keyword is required") || strings.Contains(msg, "rego.v1") {
		return nil, compileErr(err0)
	}
	return nil, compileErr(err1)
}

func checkPackage(mod *ast.Module) (*ast.Module, error) {
	if mod == nil {
		return nil, invalidPolicy(Problem{Message: "empty policy"})
	}
	if !mod.Package.Path.Equal(policyPackage) {
		p := Problem{Code: "rego_policy_error", Message: fmt.Sprintf("the package must be \"policy\", not %q", strings.TrimPrefix(mod.Package.Path.String(), "data."))}
		if loc := mod.Package.Location; loc != nil {
			p.Line, p.Column = loc.Row, loc.Col
		}
		return nil, invalidPolicy(p)
	}
	return mod, nil
}

// hasRule reports whether the module defines rule name (any arity, any
// head form) at the package level.
func hasRule(mod *ast.Module, name string) bool {
	for _, r := range mod.Rules {
		if ref := r.Head.Ref(); len(ref) > 0 && ref[0].Value.Compare(ast.Var(name)) == 0 {
			return true
		}
	}
	return false
}

func (e *Engine) prepare(ctx context.Context, mod *ast.Module, query ast.Body) (rego.PreparedEvalQuery, error) {
	pq, err := rego.New(
		rego.ParsedQuery(query),
		rego.ParsedModule(mod),
		rego.Capabilities(e.caps),
		rego.Function1(queryRVDecl, e.queryReferenceValue),
	).PrepareForEval(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return pq, ctx.Err()
		}
		return pq, compileErr(err)
	}
	return pq, nil
}

// forbiddenBuiltins reach the network or reveal the host: a policy only
// looks at its input and at reference values.
var forbiddenBuiltins = map[string]bool{
	"http.send":          true,
	"net.lookup_ip_addr": true,
	"opa.runtime":        true,
}

func capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	kept := caps.Builtins[:0:0]
	for _, b := range caps.Builtins {
		if !forbiddenBuiltins[b.Name] {
			kept = append(kept, b)
		}
	}
	caps.Builtins = kept
	return caps
}

var queryRVDecl = &rego.Function{
	Name:        "query_reference_value",
	Description: "Returns the reference value registered under the name, or null.",
	Decl:        types.NewFunction(types.Args(types.Named("name", types.S)), types.A),
	// Policies call it several times with the same name per evaluation.
	Memoize: true,
}

// rvCache memoises the AST form of reference values for one snapshot, so
// that repeated evaluations do not convert the same JSON again.
type rvCache struct {
	snap *refvalues.Snapshot
	vals sync.Map // name -> ast.Value
}

func (e *Engine) queryReferenceValue(_ rego.BuiltinContext, name *ast.Term) (*ast.Term, error) {
	s, ok := name.Value.(ast.String)
	if !ok {
		return nil, fmt.Errorf("query_reference_value: the name must be a string, got %s", ast.ValueName(name.Value))
	}
	if e.rv == nil {
		return ast.NullTerm(), nil
	}
	snap := e.rv.Snapshot()
	v, ok := snap.Lookup(string(s), e.rv.Now())
	if !ok {
		return ast.NullTerm(), nil
	}
	c := e.rvc.Load()
	if c == nil || c.snap != snap {
		c = &rvCache{snap: snap}
		e.rvc.Store(c)
	}
	if av, ok := c.vals.Load(string(s)); ok {
		return ast.NewTerm(av.(ast.Value)), nil
	}
	av, err := ast.InterfaceToValue(v)
	if err != nil {
		return nil, fmt.Errorf("query_reference_value %q: %w", s, err)
	}
	c.vals.Store(string(s), av)
	return ast.NewTerm(av), nil
}

func sortedKeys(m map[string]*compiled) []string {
	return slices.Sorted(maps.Keys(m))
}
