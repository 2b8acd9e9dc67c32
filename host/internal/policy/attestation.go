package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/gokbs/kbs/host/internal/store"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/token"
)

// AR4SI trustworthiness claims (draft-ietf-rats-ar4si), the only keys an
// attestation policy's trust_claims may set.
var TrustClaims = []string{
	"instance-identity", "configuration", "executables", "file-system",
	"hardware", "runtime-opaque", "storage-opaque", "sourced-data",
}

var trustClaimSet = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range TrustClaims {
		m[c] = true
	}
	return m
}()

// EAR statuses, from the best to the worst.
const (
	StatusNone            = "none"
	StatusAffirming       = "affirming"
	StatusWarning         = "warning"
	StatusContraindicated = "contraindicated"
)

// Status is the EAR status of a trust vector: the worst tier over its
// claims, where -1..1 is none, |v| < 32 affirming, |v| < 96 warning and
// anything else contraindicated. An empty vector is none.
func Status(tv map[string]int) string {
	worst := 0
	for _, v := range tv {
		if t := tier(v); t > worst {
			worst = t
		}
	}
	return [...]string{StatusNone, StatusAffirming, StatusWarning, StatusContraindicated}[worst]
}

func tier(v int) int {
	if v < 0 {
		v = -v
	}
	switch {
	case v <= 1:
		return 0
	case v < 32:
		return 1
	case v < 96:
		return 2
	default:
		return 3
	}
}

var policyIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// The query binds both results in one evaluation; extensions is optional,
// hence the comprehension (0 or 1 element) instead of a plain reference.
var attestationQuery = ast.MustParseBody(`trust_claims := data.policy.trust_claims; extensions := [x | x := data.policy.extensions]`)

// reservedClaims are submodule claims an extension may not overwrite.
var reservedClaims = map[string]bool{
	"ear.status": true, "ear.trustworthiness-vector": true,
	"ear.appraisal-policy-id": true, "ear.veraison.annotated-evidence": true,
}

// SetAttestationPolicy compiles a policy and, if it compiles, stores it
// under id and starts using it. A policy that does not compile, is not in
// package "policy" or defines no trust_claims is refused with an
// sdk.InvalidArgument error wrapping a *CompileError.
func (e *Engine) SetAttestationPolicy(ctx context.Context, id, src string) error {
	if !policyIDPattern.MatchString(id) {
		return sdk.InvalidArgument("attestation policy ID %q: want 1 to 64 of A-Z a-z 0-9 . _ -", id)
	}
	p, err := e.compileAttestation(ctx, id, src)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.st.Put(ctx, store.NamespaceAttestationPolicy, id, []byte(src)); err != nil {
		return fmt.Errorf("storing attestation policy %s: %w", id, err)
	}
	publish(&e.att, id, p)
	return nil
}

// GetAttestationPolicy returns the source of a policy in use, or an
// sdk.NotFound error.
func (e *Engine) GetAttestationPolicy(id string) (string, error) {
	p, ok := (*e.att.Load())[id]
	if !ok {
		return "", sdk.NotFound("attestation policy %q not found", id)
	}
	return p.src, nil
}

// ListAttestationPolicies returns the IDs of the policies in use, sorted.
func (e *Engine) ListAttestationPolicies() []string { return sortedKeys(*e.att.Load()) }

func (e *Engine) compileAttestationFromKey(ctx context.Context, key, src string) (*compiled, error) {
	return e.compileAttestation(ctx, key, src)
}

func (e *Engine) compileAttestation(ctx context.Context, id, src string) (*compiled, error) {
	mod, err := parseModule(id+".rego", src)
	if err != nil {
		return nil, err
	}
	if !hasRule(mod, "trust_claims") {
		return nil, invalidPolicy(Problem{Code: "rego_policy_error", Message: "an attestation policy must define trust_claims"})
	}
	pq, err := e.prepare(ctx, mod, attestationQuery)
	if err != nil {
		return nil, err
	}
	return &compiled{id: id, src: src, pq: pq}, nil
}

// Appraise evaluates the attestation policy of a TEE class ("cpu", "gpu",
// ...; policy "default_<class>") over one piece of evidence. input is the
// annotated evidence: {"<tee>": claims, "report_data", "runtime_data_claims",
// "init_data", "init_data_claims"} (the last four when present). The
// returned appraisal carries input as its annotated evidence, ready for the
// token issuer.
//
// A class without a policy is an sdk.NotFound error; a policy that sets no
// trust claim, an unknown claim or a value outside -128..127 is an
// sdk.Internal error (the policy is wrong, not the evidence).
func (e *Engine) Appraise(ctx context.Context, class string, input map[string]any) (token.Appraisal, error) {
	if err := ctx.Err(); err != nil {
		return token.Appraisal{}, err
	}
	id := "default_" + class
	p, ok := (*e.att.Load())[id]
	if !ok {
		return token.Appraisal{}, sdk.NotFound("no attestation policy %q for TEE class %q", id, class)
	}
	// Converting directly skips the JSON round trip that EvalInput makes.
	in, err := ast.InterfaceToValue(input)
	if err != nil {
		return token.Appraisal{}, sdk.Internal("claims are not JSON: %v", err)
	}
	rs, err := p.pq.Eval(ctx, rego.EvalParsedInput(in))
	if err != nil {
		return token.Appraisal{}, fmt.Errorf("attestation policy %s: %w", id, err)
	}
	if len(rs) == 0 {
		return token.Appraisal{}, sdk.Internal("attestation policy %s: trust_claims is undefined", id)
	}
	tv, err := trustVector(rs[0].Bindings["trust_claims"])
	if err != nil {
		return token.Appraisal{}, sdk.Internal("attestation policy %s: %v", id, err)
	}
	ext, err := extensions(rs[0].Bindings["extensions"])
	if err != nil {
		return token.Appraisal{}, sdk.Internal("attestation policy %s: %v", id, err)
	}
	return token.Appraisal{
		Status:            Status(tv),
		TrustVector:       tv,
		PolicyID:          id,
		AnnotatedEvidence: input,
		Extensions:        ext,
	}, nil
}

func trustVector(v any) (map[string]int, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("trust_claims must be an object, got %T", v)
	}
	if len(obj) == 0 {
		return nil, errors.New("trust_claims sets no claim; at least one is required")
	}
	tv := make(map[string]int, len(obj))
	for k, raw := range obj {
		if !trustClaimSet[k] {
			return nil, fmt.Errorf("trust_claims: unknown claim %q", k)
		}
		n, ok := raw.(json.Number)
		if !ok {
			return nil, fmt.Errorf("trust_claims: %q must be an integer, got %v", k, raw)
		}
		i, err := n.Int64()
		if err != nil || i < -128 || i > 127 {
			return nil, fmt.Errorf("trust_claims: %q must be an integer in -128..127, got %s", k, n)
		}
		tv[k] = int(i)
	}
	return tv, nil
}

// extensions accepts trustee's list of {"name", "key", "value"} (the key is
// the EAR CBOR key, unused in the JWT form) or an object of name to value.
func extensions(v any) (map[string]any, error) {
	wrapped, _ := v.([]any)
	if len(wrapped) == 0 {
		return nil, nil
	}
	out := map[string]any{}
	add := func(name string, val any) error {
		if name == "" || reservedClaims[name] {
			return fmt.Errorf("extensions: invalid name %q", name)
		}
		out[name] = val
		return nil
	}
	switch x := wrapped[0].(type) {
	case []any:
		for _, item := range x {
			m, ok := item.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("extensions: want {name, key, value} objects, got %T", item)
			}
			name, _ := m["name"].(string)
			if err := add(name, m["value"]); err != nil {
				return nil, err
			}
		}
	case map[string]any:
		for name, val := range x {
			if err := add(name, val); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("extensions must be a list or an object, got %T", x)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
