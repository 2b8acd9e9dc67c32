package policy

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gokbs/kbs/host/internal/store"
	"github.com/gokbs/kbs/sdk"
)

// earClaims builds the claims of an EAR token as the issuer signs them,
// with one submodule per (class, status, tee) triple.
func earClaims(submods ...[3]string) map[string]any {
	sm := map[string]any{}
	count := map[string]int{}
	for _, s := range submods {
		class, status, tee := s[0], s[1], s[2]
		name := class + string(rune('0'+count[class]))
		count[class]++
		sm[name] = map[string]any{
			"ear.status":                 status,
			"ear.trustworthiness-vector": map[string]any{"executables": 3, "hardware": 2, "configuration": 2},
			"ear.appraisal-policy-id":    "default_" + class,
			"ear.veraison.annotated-evidence": map[string]any{
				tee:                   map[string]any{"measurement": "a1f3", "svn": "1"},
				"report_data":         "00",
				"runtime_data_claims": map[string]any{"nonce": "n"},
			},
		}
	}
	return map[string]any{
		"eat_profile":     "tag:github.com,2024:confidential-containers/Trustee",
		"iat":             1760426134,
		"exp":             1760426434,
		"iss":             "gokbs",
		"ear.verifier-id": map[string]any{"developer": "https://github.com/gokbs", "build": "kbs-host"},
		"submods":         sm,
	}
}

var resPath = []string{"default", "key", "k1"}

func TestDefaultResourcePolicy(t *testing.T) {
	tests := map[string]struct {
		claims map[string]any
		plugin string
		want   bool
	}{
		"affirming snp":           {earClaims([3]string{"cpu", "affirming", "snp"}), "resource", true},
		"affirming snp and gpu":   {earClaims([3]string{"cpu", "affirming", "snp"}, [3]string{"gpu", "affirming", "nvidia"}), "resource", true},
		"affirming sample":        {earClaims([3]string{"cpu", "affirming", "sample"}), "resource", false},
		"affirming sample device": {earClaims([3]string{"cpu", "affirming", "tdx"}, [3]string{"gpu", "affirming", "sample"}), "resource", false},
		"warning":                 {earClaims([3]string{"cpu", "warning", "snp"}), "resource", false},
		"contraindicated":         {earClaims([3]string{"cpu", "contraindicated", "tdx"}), "resource", false},
		"one gpu not affirming":   {earClaims([3]string{"cpu", "affirming", "snp"}, [3]string{"gpu", "warning", "nvidia"}), "resource", false},
		"no submodules":           {earClaims(), "resource", false},
		"no submods claim":        {map[string]any{"iss": "x"}, "resource", false},
		"another plugin":          {earClaims([3]string{"cpu", "affirming", "snp"}), "nebula-ca", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			d, err := f.e.Allow(context.Background(), tc.claims, tc.plugin, resPath, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tc.want || d.Scope != "" || d.PolicyID() != "resource-policy" {
				t.Fatalf("decision %+v (%s), want allowed=%v by the global policy", d, d.PolicyID(), tc.want)
			}
		})
	}
}

func TestResourcePolicies(t *testing.T) {
	affirming := earClaims([3]string{"cpu", "affirming", "snp"})
	sample := earClaims([3]string{"cpu", "affirming", "sample"})
	tests := map[string]struct {
		policy string
		claims map[string]any
		plugin string
		path   []string
		query  map[string]string
		want   bool
	}{
		"allow all":                 {AllowAllResourcePolicy, sample, "resource", resPath, nil, true},
		"allow all, other plugin":   {AllowAllResourcePolicy, sample, "sample", []string{"x"}, nil, false},
		"deny all":                  {DenyAllResourcePolicy, affirming, "resource", resPath, nil, false},
		"deny by path, other path":  {denyByPath, affirming, "resource", resPath, nil, true},
		"deny by path, denied repo": {denyByPath, affirming, "resource", []string{"secrets", "key", "k1"}, nil, false},
		"deny by path, denied tag":  {denyByPath, affirming, "resource", []string{"default", "key", "root"}, nil, false},
		"by query, match":           {byQuery, affirming, "nebula-ca", []string{"credential"}, map[string]string{"name": "node1", "ip": "10.0.0.1/24"}, true},
		"by query, no match":        {byQuery, affirming, "nebula-ca", []string{"credential"}, map[string]string{"name": "node2"}, false},
		"by query, no query":        {byQuery, affirming, "nebula-ca", []string{"credential"}, nil, false},
		"by claim value": {
			"package policy\nallow if input.submods.cpu0[\"ear.veraison.annotated-evidence\"].snp.measurement == \"a1f3\"\n",
			affirming, "resource", resPath, nil, true,
		},
		"non-boolean allow": {"package policy\nallow := \"yes\"\n", affirming, "resource", resPath, nil, false},
		"allow undefined":   {"package policy\nallow if input.nothing\n", affirming, "resource", resPath, nil, false},
		"no allow rule":     {"package policy\nother := true\n", affirming, "resource", resPath, nil, false},
		"trustee v0 sample policy (gc test)": {
			"package policy\n\ndefault allow = false\n\nallow {\n\tinput[\"submods\"][\"cpu0\"][\"ear.veraison.annotated-evidence\"][\"sample\"]\n}\n",
			sample, "resource", resPath, nil, true,
		},
		"trustee e2e-style policy with path segments": {
			"package policy\nimport rego.v1\ndefault allow := false\nallow if {\n\tcount(data[\"resource-path\"]) == 3\n\tdata[\"resource-path\"][0] == \"default\"\n\tinput.submods.cpu0[\"ear.veraison.annotated-evidence\"].snp\n}\n",
			affirming, "resource", resPath, nil, true,
		},
		"affirming sample policy": {
			"package policy\nimport rego.v1\ndefault allow := false\nallow if {\n\tcount(input.submods) > 0\n\tevery s in input.submods { s[\"ear.status\"] == \"affirming\" }\n}\n",
			sample, "resource", resPath, nil, true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			if err := f.e.SetResourcePolicy(ctx, "", tc.policy); err != nil {
				t.Fatal(err)
			}
			d, err := f.e.Allow(ctx, tc.claims, tc.plugin, tc.path, tc.query)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tc.want {
				t.Fatalf("allowed=%v, want %v", d.Allowed, tc.want)
			}
		})
	}
}

const denyByPath = `package policy

default allow := false

allow if {
	data.plugin == "resource"
	not denied
}

denied if data["resource-path"][0] == "secrets"

denied if data["resource-path"][2] == "root"
`

const byQuery = `package policy

allow if {
	data.plugin == "nebula-ca"
	data["resource-path"] == ["credential"]
	data.query.name == "node1"
	startswith(data.query.ip, "10.")
}
`

func TestScopedResourcePolicies(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	claims := earClaims([3]string{"cpu", "affirming", "snp"})
	for scope, src := range map[string]string{
		"":             DenyAllResourcePolicy,
		"team-a":       AllowAllResourcePolicy,
		"team-a/key":   DenyAllResourcePolicy,
		"team-a/key/x": AllowAllResourcePolicy,
		"team-b/cert":  AllowAllResourcePolicy,
	} {
		if err := f.e.SetResourcePolicy(ctx, scope, src); err != nil {
			t.Fatalf("scope %q: %v", scope, err)
		}
	}
	if got, want := strings.Join(f.e.ListResourcePolicies(), ","), ",team-a,team-a/key,team-a/key/x,team-b/cert"; got != want {
		t.Fatalf("List = %q, want %q", got, want)
	}
	tests := map[string]struct {
		plugin    string
		path      []string
		wantScope string
		want      bool
	}{
		"repo scope":               {"resource", []string{"team-a", "cert", "c1"}, "team-a", true},
		"type scope beats repo":    {"resource", []string{"team-a", "key", "k1"}, "team-a/key", false},
		"tag scope beats type":     {"resource", []string{"team-a", "key", "x"}, "team-a/key/x", true},
		"type scope only":          {"resource", []string{"team-b", "cert", "c1"}, "team-b/cert", true},
		"sibling type falls back":  {"resource", []string{"team-b", "key", "k1"}, "", false},
		"unscoped repo":            {"resource", []string{"default", "key", "k1"}, "", false},
		"prefix is by segment":     {"resource", []string{"team-aa", "key", "k1"}, "", false},
		"other plugins use global": {"nebula-ca", []string{"team-a"}, "", false},
		"short path":               {"resource", []string{"team-a"}, "team-a", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d, err := f.e.Allow(ctx, claims, tc.plugin, tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tc.want || d.Scope != tc.wantScope {
				t.Fatalf("decision %+v, want allowed=%v by scope %q", d, tc.want, tc.wantScope)
			}
		})
	}

	t.Run("delete falls back to the parent scope", func(t *testing.T) {
		if err := f.e.DeleteResourcePolicy(ctx, "team-a/key"); err != nil {
			t.Fatal(err)
		}
		d, err := f.e.Allow(ctx, claims, "resource", []string{"team-a", "key", "k1"}, nil)
		if err != nil || !d.Allowed || d.Scope != "team-a" || d.PolicyID() != "resource-policy:team-a" {
			t.Fatalf("decision %+v %v, want allowed by team-a", d, err)
		}
		if _, err := f.e.GetResourcePolicy("team-a/key"); !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("Get after delete: %v", err)
		}
		if _, err := f.st.Get(ctx, store.NamespaceResourcePolicy, "team-a/key"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("still stored: %v", err)
		}
	})
}

func TestSetResourcePolicyErrors(t *testing.T) {
	tests := map[string]struct {
		scope, src string
		wantErr    string
		wantLine   int
		wantCol    int
	}{
		"parse error": {
			src: "package policy\n\nallow if {\n\tdata.plugin = = \"resource\"\n}\n", wantErr: "rego_parse_error", wantLine: 4, wantCol: 16,
		},
		"unknown function": {
			src: "package policy\n\nallow if {\n\tfoo(input)\n}\n", wantErr: "undefined function foo", wantLine: 4, wantCol: 2,
		},
		"wrong package":    {src: "package kbs\nallow := true\n", wantErr: `the package must be "policy"`, wantLine: 1},
		"scope too deep":   {scope: "a/b/c/d", src: AllowAllResourcePolicy, wantErr: "at most repo/type/tag"},
		"scope with ..":    {scope: "a/..", src: AllowAllResourcePolicy, wantErr: "scope"},
		"scope with space": {scope: "a b", src: AllowAllResourcePolicy, wantErr: "scope"},
		"empty segment":    {scope: "a//b", src: AllowAllResourcePolicy, wantErr: "scope"},
		"star scope":       {scope: "*", src: AllowAllResourcePolicy, wantErr: "scope"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			before, _ := f.e.GetResourcePolicy(tc.scope)
			err := f.e.SetResourcePolicy(context.Background(), tc.scope, tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("error %v, want an invalid-argument error containing %q", err, tc.wantErr)
			}
			if tc.wantLine > 0 {
				var ce *CompileError
				if !errors.As(err, &ce) {
					t.Fatalf("no CompileError in %v", err)
				}
				p := ce.Problems[0]
				if p.Line != tc.wantLine || (tc.wantCol > 0 && p.Column != tc.wantCol) {
					t.Fatalf("problem at %d:%d (%s), want %d:%d", p.Line, p.Column, p.Message, tc.wantLine, tc.wantCol)
				}
			}
			if after, _ := f.e.GetResourcePolicy(tc.scope); after != before {
				t.Fatal("a refused policy replaced the one in use")
			}
		})
	}
	t.Run("delete global", func(t *testing.T) {
		f := newFixture(t)
		if err := f.e.DeleteResourcePolicy(context.Background(), ""); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("delete missing scope", func(t *testing.T) {
		f := newFixture(t)
		if err := f.e.DeleteResourcePolicy(context.Background(), "nope"); !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("error %v", err)
		}
	})
}

func TestPoliciesSurviveRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kbs.db")
	claims := earClaims([3]string{"cpu", "affirming", "sample"})
	customCPU := "package policy\ntrust_claims := {\"hardware\": 2}\n"

	open := func(opts Options) (*fixture, func()) {
		st, err := store.OpenBolt(path)
		if err != nil {
			t.Fatal(err)
		}
		return newFixtureOn(t, st, opts), func() { st.Close() }
	}

	// First start in dev mode: the permissive policy is only the first one.
	f, closeStore := open(Options{InitialResourcePolicy: AllowAllResourcePolicy})
	if d, _ := f.e.Allow(ctx, claims, "resource", resPath, nil); !d.Allowed {
		t.Fatal("dev-mode initial policy does not allow")
	}
	if err := f.e.SetResourcePolicy(ctx, "default/key", DenyAllResourcePolicy); err != nil {
		t.Fatal(err)
	}
	if err := f.e.SetAttestationPolicy(ctx, "default_cpu", customCPU); err != nil {
		t.Fatal(err)
	}
	f.register(t, map[string]any{"svn": []any{"1"}})
	closeStore()

	f, closeStore = open(Options{InitialResourcePolicy: DenyAllResourcePolicy})
	defer closeStore()
	if src, _ := f.e.GetResourcePolicy(""); src != AllowAllResourcePolicy {
		t.Fatal("the stored global policy was overwritten at start-up")
	}
	if d, _ := f.e.Allow(ctx, claims, "resource", resPath, nil); d.Allowed || d.Scope != "default/key" {
		t.Fatalf("scoped policy lost: %+v", d)
	}
	if src, _ := f.e.GetAttestationPolicy("default_cpu"); src != customCPU {
		t.Fatal("attestation policy lost")
	}
	if src, _ := f.e.GetAttestationPolicy("default_gpu"); src != DefaultGPUPolicy {
		t.Fatal("default GPU policy missing")
	}
	if _, ok := f.rv.Snapshot().Lookup("svn", t0); !ok {
		t.Fatal("reference value lost")
	}
}

func TestReplicasConverge(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	a := newFixtureOn(t, st, Options{})
	b := newFixtureOn(t, st, Options{})
	claims := earClaims([3]string{"cpu", "affirming", "sample"})

	before := (*b.e.res.Load())[globalScopeKey]
	if err := b.e.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if (*b.e.res.Load())[globalScopeKey] != before {
		t.Fatal("Refresh without a change recompiled")
	}

	if err := a.e.SetResourcePolicy(ctx, "", AllowAllResourcePolicy); err != nil {
		t.Fatal(err)
	}
	if err := a.e.SetResourcePolicy(ctx, "default", DenyAllResourcePolicy); err != nil {
		t.Fatal(err)
	}
	if d, _ := b.e.Allow(ctx, claims, "resource", []string{"other", "key", "k"}, nil); d.Allowed {
		t.Fatal("replica changed before refreshing")
	}
	if err := b.e.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := b.e.Allow(ctx, claims, "resource", []string{"other", "key", "k"}, nil); !d.Allowed {
		t.Fatal("replica did not pick up the new global policy")
	}
	if d, _ := b.e.Allow(ctx, claims, "resource", resPath, nil); d.Allowed || d.Scope != "default" {
		t.Fatalf("replica did not pick up the scoped policy: %+v", d)
	}

	if err := a.e.DeleteResourcePolicy(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if err := b.e.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := b.e.Allow(ctx, claims, "resource", resPath, nil); !d.Allowed || d.Scope != "" {
		t.Fatalf("replica kept a deleted scope: %+v", d)
	}
}

func TestBrokenStoredPolicy(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	f := newFixtureOn(t, st, Options{})
	if err := st.Put(ctx, store.NamespaceResourcePolicy, globalScopeKey, []byte("package policy\nallow if {")); err != nil {
		t.Fatal(err)
	}
	if err := f.e.Reload(ctx); err == nil || !strings.Contains(err.Error(), "rego_parse_error") {
		t.Fatalf("Reload error %v, want the parse error", err)
	}
	if src, _ := f.e.GetResourcePolicy(""); src != DefaultResourcePolicy {
		t.Fatal("a broken stored policy replaced the working one")
	}
	if _, err := New(ctx, st, nil, Options{}); err == nil {
		t.Fatal("New started with a broken stored policy")
	}
}

func TestConcurrentAllowAndSet(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	claims := earClaims([3]string{"cpu", "affirming", "snp"})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				if _, err := f.e.Allow(ctx, claims, "resource", resPath, nil); err != nil {
					t.Error(err)
					return
				}
				if _, err := f.e.Appraise(ctx, "cpu", claimsSample); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 10 {
			src := AllowAllResourcePolicy
			if i%2 == 0 {
				src = DenyAllResourcePolicy
			}
			if err := f.e.SetResourcePolicy(ctx, "default", src); err != nil {
				t.Error(err)
			}
			msg := []byte(`{"version":"0.1.0","type":"sample","payload":"eyJzdm4iOlsiMSJdfQ=="}`)
			if _, err := f.rv.Register(ctx, msg); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
}

var claimsSample = map[string]any{"sample": map[string]any{"svn": "1", "launch_digest": "abcde", "debug": false}}
