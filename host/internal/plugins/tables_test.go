package plugins

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/verifier"
)

// plugin is a configured plugin that was never started; tee fakes the TEE
// types its metadata would declare.
func plugin(kind, name string, routesOrTEE ...string) *managed {
	m := &Manager{opts: Options{}.withDefaults()}
	s := Spec{Kind: kind, Name: name}
	if kind == sdk.KindResource {
		s.Routes = routesOrTEE
	}
	p := m.newManaged(s)
	if kind == sdk.KindVerifier {
		p.teeTypes = routesOrTEE
	}
	p.setState(StateRestarting, nil)
	return p
}

func TestValidateSpecs(t *testing.T) {
	tests := map[string]struct {
		specs   []Spec
		wantErr string
	}{
		"ok":           {specs: []Spec{{Kind: "verifier", Name: "snp"}, {Kind: "resource", Name: "fs", Routes: []string{"default"}}, {Kind: "token", Name: "ear"}}},
		"none":         {},
		"unknown kind": {specs: []Spec{{Kind: "policy", Name: "opa"}}, wantErr: `kind "policy"`},
		"bad name":     {specs: []Spec{{Kind: "verifier", Name: "../x"}}, wantErr: `name "../x"`},
		"empty name":   {specs: []Spec{{Kind: "verifier", Name: ""}}, wantErr: `name ""`},
		"twice": {specs: []Spec{{Kind: "verifier", Name: "snp"}, {Kind: "verifier", Name: "snp"}},
			wantErr: "plugin verifier/snp is configured twice"},
		"same name, other kind": {specs: []Spec{{Kind: "verifier", Name: "x"}, {Kind: "resource", Name: "x"}}},
		"two token issuers": {specs: []Spec{{Kind: "token", Name: "a"}, {Kind: "token", Name: "b"}},
			wantErr: "at most one token issuer may be configured, got token/a, token/b"},
		"routes on a verifier": {specs: []Spec{{Kind: "verifier", Name: "snp", Routes: []string{"x"}}},
			wantErr: "only resource backends take routes"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := validateSpecs(tc.specs)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestTEEDispatch(t *testing.T) {
	tests := map[string]struct {
		plugins []*managed
		wantErr string
		want    map[string]string // TEE -> plugin id
	}{
		"distinct TEEs": {
			plugins: []*managed{plugin("verifier", "snp", "snp", "az-snp-vtpm"), plugin("verifier", "tdx", "tdx")},
			want:    map[string]string{"snp": "verifier/snp", "az-snp-vtpm": "verifier/snp", "tdx": "verifier/tdx"},
		},
		"two verifiers claim one TEE": {
			plugins: []*managed{plugin("verifier", "a", "sample", "x"), plugin("verifier", "b", "y", "sample")},
			wantErr: `verifiers verifier/a and verifier/b both claim TEE "sample"`,
		},
		"no TEE types": {
			plugins: []*managed{plugin("verifier", "a")},
			wantErr: "verifier verifier/a declares no TEE types",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tab, err := newTables(tc.plugins)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			must(t, err)
			m := &Manager{tables: tab}
			for tee, id := range tc.want {
				v, err := m.Verifier(tee)
				must(t, err)
				if got := v.(verifierProxy).p.id; got != id {
					t.Errorf("Verifier(%q) = %s, want %s", tee, got, id)
				}
			}
			_, err = m.Verifier("nope")
			if !errors.Is(err, sdk.ErrUnsupported) || !strings.Contains(err.Error(), `"nope"`) {
				t.Errorf("Verifier(nope) = %v, want unsupported naming the TEE", err)
			}
		})
	}
}

func TestResourceRoutes(t *testing.T) {
	tab, err := newTables([]*managed{
		plugin("resource", "fs"), // no routes: the default
		plugin("resource", "vault", "default", "team"),
		plugin("resource", "akv", "default/akv"),
		plugin("resource", "certs", "team/cert"),
	})
	must(t, err)
	m := &Manager{tables: tab}
	tests := map[string]string{
		"default/akv/coco_one": "resource/akv",
		"default/key/one":      "resource/vault",
		"team/cert/x":          "resource/certs",
		"team/key/x":           "resource/vault",
		"other/akv/x":          "resource/fs",
		"defaul/akv/x":         "resource/fs",
	}
	for path, want := range tests {
		t.Run(path, func(t *testing.T) {
			p, err := resource.ParsePath(path)
			must(t, err)
			b, err := m.Resource(p)
			must(t, err)
			if got := b.(resourceProxy).p.id; got != want {
				t.Errorf("Resource(%s) = %s, want %s", path, got, want)
			}
		})
	}

	t.Run("no default backend", func(t *testing.T) {
		tab, err := newTables([]*managed{plugin("resource", "akv", "default/akv")})
		must(t, err)
		m := &Manager{tables: tab}
		_, err = m.Resource(resource.Path{Repo: "default", Type: "key", Tag: "one"})
		if !errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), "default/key/one") {
			t.Fatalf("Resource = %v, want not found naming the path", err)
		}
	})
}

func TestRouteConflicts(t *testing.T) {
	tests := map[string]struct {
		plugins []*managed
		wantErr string
	}{
		"two defaults": {
			plugins: []*managed{plugin("resource", "a"), plugin("resource", "b", "*")},
			wantErr: "resource backends resource/a and resource/b are both the default",
		},
		"same repo": {
			plugins: []*managed{plugin("resource", "a", "default"), plugin("resource", "b", "x", "default")},
			wantErr: `resource backends resource/a and resource/b both serve "default"`,
		},
		"same repo/type": {
			plugins: []*managed{plugin("resource", "a", "r/t"), plugin("resource", "b", "r/t")},
			wantErr: `both serve "r/t"`,
		},
		"three segments": {plugins: []*managed{plugin("resource", "a", "r/t/x")}, wantErr: `route "r/t/x": want repo or repo/type`},
		"dot dot":        {plugins: []*managed{plugin("resource", "a", "..")}, wantErr: `route ".."`},
		"empty type":     {plugins: []*managed{plugin("resource", "a", "r/")}, wantErr: `route "r/"`},
		"absolute":       {plugins: []*managed{plugin("resource", "a", "/r")}, wantErr: `route "/r"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := newTables(tc.plugins)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	t.Run("one backend may list a route twice", func(t *testing.T) {
		if _, err := newTables([]*managed{plugin("resource", "a", "r", "r", "*", "")}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTokenIssuerLookup(t *testing.T) {
	m := &Manager{}
	if _, err := m.TokenIssuer(); !errors.Is(err, sdk.ErrUnsupported) {
		t.Fatalf("TokenIssuer without one = %v, want unsupported", err)
	}
	tab, err := newTables([]*managed{plugin("token", "ear")})
	must(t, err)
	m = &Manager{tables: tab}
	iss, err := m.TokenIssuer()
	must(t, err)
	if got := iss.(issuerProxy).p.id; got != "token/ear" {
		t.Errorf("TokenIssuer = %s", got)
	}
}

// A plugin that is down fails calls at once, naming itself, without
// touching any process.
func TestCallsFailFastWhileDown(t *testing.T) {
	tests := map[string]struct {
		state State
		want  string
	}{
		"restarting": {StateRestarting, "plugin verifier/sample is unavailable (restarting)"},
		"failed":     {StateFailed, "plugin verifier/sample is unavailable (failed)"},
		"stopped":    {StateStopped, "plugin verifier/sample is unavailable (stopped)"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := plugin("verifier", "sample", "sample")
			p.setState(tc.state, nil)
			_, err := p.verifier.Verify(context.Background(), &verifier.Request{TEE: "sample"})
			if !errors.Is(err, sdk.ErrUnavailable) || err.Error() != tc.want {
				t.Fatalf("Verify = %v, want unavailable %q", err, tc.want)
			}
		})
	}
	p := plugin("resource", "fs")
	if _, err := p.resource.Get(context.Background(), resource.Path{}); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("Get = %v", err)
	}
	p = plugin("token", "ear")
	if _, err := p.issuer.JWKS(context.Background()); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("JWKS = %v", err)
	}
}

func TestReadyListsPluginsThatAreDown(t *testing.T) {
	a, b := plugin("verifier", "a", "a"), plugin("resource", "b")
	b.setState(StateFailed, errors.New("tampered"))
	m := &Manager{plugins: []*managed{a, b}}
	err := m.Ready()
	if err == nil || err.Error() != "plugins not ready: verifier/a (restarting), resource/b (failed)" {
		t.Fatalf("Ready = %v", err)
	}
	st := m.Status()
	if len(st) != 2 || st[1].State != StateFailed || st[1].LastError != "tampered" || st[1].PID != 0 {
		t.Errorf("Status = %+v", st)
	}
}
