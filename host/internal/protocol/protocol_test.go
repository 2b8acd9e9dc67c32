package protocol

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbserr"
	"github.com/gokbs/kbs/host/internal/rcar"
	"github.com/gokbs/kbs/host/internal/session"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/token"
	"github.com/gokbs/kbs/sdk/verifier"
)

// fakes: a sample-like verifier, a map backend, an issuer that returns the
// request as the "token", and a verifier that decodes it back.

type fakeVerifier struct{ err error }

func (f fakeVerifier) Verify(_ context.Context, req *verifier.Request) (verifier.Claims, error) {
	if f.err != nil {
		return nil, f.err
	}
	var ev struct {
		ReportData string `json:"report_data"`
	}
	if err := json.Unmarshal(req.Evidence, &ev); err != nil {
		return nil, sdk.BadEvidence("bad json")
	}
	if ev.ReportData != base64.StdEncoding.EncodeToString(req.ReportData) {
		return nil, sdk.BadEvidence("report data mismatch")
	}
	return verifier.Claims{"svn": "1", "report_data": ev.ReportData}, nil
}

type fakeBackend map[string][]byte

func (b fakeBackend) Get(_ context.Context, p resource.Path) ([]byte, error) {
	v, ok := b[p.String()]
	if !ok {
		return nil, sdk.NotFound("no %s", p)
	}
	return append([]byte(nil), v...), nil
}
func (b fakeBackend) Put(_ context.Context, p resource.Path, d []byte) error {
	b[p.String()] = d
	return nil
}
func (b fakeBackend) Delete(_ context.Context, p resource.Path) error {
	delete(b, p.String())
	return nil
}
func (b fakeBackend) List(context.Context, string) ([]resource.Path, error) { return nil, nil }

type fakeIssuer struct{}

func (fakeIssuer) Issue(_ context.Context, req *token.IssueRequest) (*token.Issued, error) {
	b, err := json.Marshal(req)
	return &token.Issued{Token: string(b), ExpiresAt: time.Now().Add(time.Minute)}, err
}
func (fakeIssuer) JWKS(context.Context) (json.RawMessage, error) {
	return json.RawMessage(`{"keys":[]}`), nil
}

type fakePlugins struct {
	v       verifier.Verifier
	backend resource.Backend
	down    bool
}

func (p *fakePlugins) Verifier(tee string) (verifier.Verifier, error) {
	if tee != "sample" {
		return nil, sdk.Unsupported("no verifier for %s", tee)
	}
	return p.v, nil
}
func (p *fakePlugins) Resource(resource.Path) (resource.Backend, error) {
	if p.down {
		return nil, sdk.Unavailable("plugin resource/fake is unavailable (restarting)")
	}
	return p.backend, nil
}
func (p *fakePlugins) TokenIssuer() (token.Issuer, error) { return fakeIssuer{}, nil }
func (p *fakePlugins) ListResources(ctx context.Context, repo string) ([]resource.Path, error) {
	return p.backend.List(ctx, repo)
}

type fakeTokens struct{}

func (fakeTokens) Verify(_ context.Context, tok string) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(tok), &m); err != nil {
		return nil, errors.New("invalid token")
	}
	return m, nil
}
func (fakeTokens) TEEPubKey(claims map[string]any) (json.RawMessage, error) {
	k := claims["submods"].(map[string]any)["cpu0"].(map[string]any)["ear.veraison.annotated-evidence"].(map[string]any)["runtime_data_claims"].(map[string]any)["tee-pubkey"]
	return json.Marshal(k)
}

type fakeAppraiser struct{}

func (fakeAppraiser) Appraise(_ context.Context, class string, input map[string]any) (token.Appraisal, error) {
	return token.Appraisal{Status: "affirming", TrustVector: map[string]int{"hardware": 2}, PolicyID: "default_" + class}, nil
}

type fakePolicy struct{ allow bool }

func (f fakePolicy) Allow(context.Context, map[string]any, string, []string, map[string]string) (Decision, error) {
	return Decision{Allowed: f.allow, PolicyID: "test"}, nil
}

func newService(t *testing.T) (*Service, *fakePlugins) {
	t.Helper()
	pl := &fakePlugins{v: fakeVerifier{}, backend: fakeBackend{"default/key/x": []byte("secret")}}
	mem := session.NewMemory(100, 0)
	t.Cleanup(mem.Close)
	return &Service{Plugins: pl, Sessions: mem, Tokens: fakeTokens{}, Appraiser: fakeAppraiser{},
		ResourcePolicy: fakePolicy{allow: true}, SessionTimeout: time.Minute}, pl
}

func kindOf(err error) kbserr.Kind {
	var e *kbserr.Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return -1
}

func TestAuth(t *testing.T) {
	s, _ := newService(t)
	tests := map[string]struct {
		body string
		want kbserr.Kind
		ok   bool
	}{
		"sample":             {`{"version":"0.4.0","tee":"sample","extra-params":""}`, 0, true},
		"extra params":       {`{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha384"]}}`, 0, true},
		"old version":        {`{"version":"0.1.0","tee":"sample","extra-params":""}`, kbserr.Unauthenticated, false},
		"no version":         {`{"tee":"sample"}`, kbserr.Unauthenticated, false},
		"unknown tee":        {`{"version":"0.4.0","tee":"potato"}`, kbserr.Malformed, false},
		"alias, no verifier": {`{"version":"0.4.0","tee":"azsnpvtpm"}`, kbserr.Unauthenticated, false},
		"not json":           {`version=0.4.0`, kbserr.Malformed, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ch, sess, err := s.Auth(context.Background(), []byte(tc.body))
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := base64.StdEncoding.DecodeString(ch.Nonce)
				if len(raw) != 32 || len(ch.Nonce) != 44 || !session.ValidID(sess.ID) || ch.ExtraParams != "" {
					t.Fatalf("challenge %+v session %+v", ch, sess)
				}
				return
			}
			if kindOf(err) != tc.want {
				t.Fatalf("error %v kind %d, want %d", err, kindOf(err), tc.want)
			}
		})
	}
}

func TestCanonicalTEE(t *testing.T) {
	for in, want := range map[string]string{"azsnpvtpm": "az-snp-vtpm", "aztdxvtpm": "az-tdx-vtpm", "snp": "snp", "sample": "sample"} {
		if got, ok := CanonicalTEE(in); !ok || got != want {
			t.Errorf("CanonicalTEE(%q) = %q, %v", in, got, ok)
		}
	}
	if _, ok := CanonicalTEE("sev"); ok {
		t.Error("sev was removed from the protocol")
	}
}

func attestBody(t *testing.T, nonce string, k *guest.Key, additional string, initData *InitData) []byte {
	t.Helper()
	jwk, _ := k.PublicJWKJSON()
	d, _ := rcar.Primary(nonce, jwk, additional).Digest("sha384")
	att := map[string]any{
		"runtime-data": map[string]any{"nonce": nonce, "tee-pubkey": jwk},
		"tee-evidence": map[string]any{"primary_evidence": guest.NewSampleEvidence(d).JSON(), "additional_evidence": additional},
	}
	if initData != nil {
		att["init-data"] = initData
	}
	b, _ := json.Marshal(att)
	return b
}

func TestAttestAndRelease(t *testing.T) {
	s, pl := newService(t)
	ctx := context.Background()
	k, _ := guest.NewKey(guest.KindECP256)
	ch, sess, err := s.Auth(ctx, []byte(`{"version":"0.4.0","tee":"sample"}`))
	if err != nil {
		t.Fatal(err)
	}
	initData := &InitData{Format: "toml", Body: "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"x\" = \"y\"\n"}
	tok, err := s.Attest(ctx, sess.ID, attestBody(t, ch.Nonce, k, "", initData))
	if err != nil {
		t.Fatal(err)
	}
	var req token.IssueRequest
	if err := json.Unmarshal([]byte(tok), &req); err != nil {
		t.Fatal(err)
	}
	ae := req.Submods["cpu0"].AnnotatedEvidence
	if _, moved := ae["sample"].(map[string]any)["report_data"]; moved || ae["report_data"] == nil {
		t.Errorf("report_data not moved out of the TEE claims: %v", ae)
	}
	if ae["init_data_claims"].(map[string]any)["x"] != "y" || ae["runtime_data_claims"].(map[string]any)["nonce"] != ch.Nonce {
		t.Errorf("annotated evidence = %v", ae)
	}
	if req.Submods["cpu0"].PolicyID != "default_cpu" {
		t.Errorf("policy = %q", req.Submods["cpu0"].PolicyID)
	}

	p, _ := ParseResourcePath("default/key/x")
	resp, err := s.GetResource(ctx, Credentials{SessionID: sess.ID}, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(resp)
	if plain, err := k.DecryptJSON(body); err != nil || string(plain) != "secret" {
		t.Fatalf("decrypt: %q %v", plain, err)
	}

	cases := map[string]struct {
		setup func()
		path  string
		cred  Credentials
		want  kbserr.Kind
	}{
		"missing":      {nil, "default/key/none", Credentials{Bearer: tok}, kbserr.NotFound},
		"no token":     {nil, "default/key/x", Credentials{}, kbserr.Unauthenticated},
		"bad token":    {nil, "default/key/x", Credentials{Bearer: "{"}, kbserr.Unauthenticated},
		"policy deny":  {func() { s.ResourcePolicy = fakePolicy{allow: false} }, "default/key/x", Credentials{Bearer: tok}, kbserr.Forbidden},
		"backend down": {func() { s.ResourcePolicy = fakePolicy{allow: true}; pl.down = true }, "default/key/x", Credentials{Bearer: tok}, kbserr.Unavailable},
	}
	for _, name := range []string{"missing", "no token", "bad token", "policy deny", "backend down"} {
		tc := cases[name]
		t.Run(name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			p, _ := ParseResourcePath(tc.path)
			_, err := s.GetResource(ctx, tc.cred, p, nil)
			if kindOf(err) != tc.want {
				t.Fatalf("error %v kind %d, want %d", err, kindOf(err), tc.want)
			}
		})
	}
}

func TestAdditionalEvidence(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	k, _ := guest.NewKey(guest.KindECP256)
	ch, sess, _ := s.Auth(ctx, []byte(`{"version":"0.4.0","tee":"sample"}`))
	jwk, _ := k.PublicJWKJSON()
	dev, _ := rcar.Device(ch.Nonce, jwk).Digest("sha384")
	// The device evidence is bound to the device runtime data; our fake
	// verifier only knows "sample", so claim the device is a second sample.
	add, _ := json.Marshal(map[string]json.RawMessage{"sample": guest.NewSampleEvidence(dev).JSON()})
	tok, err := s.Attest(ctx, sess.ID, attestBody(t, ch.Nonce, k, string(add), nil))
	if err != nil {
		t.Fatal(err)
	}
	var req token.IssueRequest
	_ = json.Unmarshal([]byte(tok), &req)
	if len(req.Submods) != 2 || req.Submods["cpu1"].Status != "affirming" {
		t.Fatalf("submods = %v", req.Submods)
	}
}

func TestParseResourcePath(t *testing.T) {
	for in, ok := range map[string]bool{
		"default/key/x": true, "a/b/c.d": true, "default/%2e%2e/x": false, "a%2Fb/c/d": false,
		"a/b": false, "a/b/c/d": false, "../b/c": false, "a/b/": false,
	} {
		_, err := ParseResourcePath(in)
		if (err == nil) != ok {
			t.Errorf("ParseResourcePath(%q) error = %v, want ok=%v", in, err, ok)
		}
		if err != nil && kindOf(err) != kbserr.Malformed {
			t.Errorf("ParseResourcePath(%q) kind %d, want Malformed", in, kindOf(err))
		}
	}
}
