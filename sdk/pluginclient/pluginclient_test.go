package pluginclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/verifier"
)

// errVerifier fails with the error it is told to, or panics.
type errVerifier struct{}

func (errVerifier) Verify(_ context.Context, req *verifier.Request) (verifier.Claims, error) {
	switch string(req.Evidence) {
	case `"bad"`:
		return nil, sdk.BadEvidence("report data mismatch: %w", errors.New("inner"))
	case `"unsupported"`:
		return nil, sdk.Unsupported("evidence version 9")
	case `"notfound"`:
		return nil, sdk.NotFound("no VCEK")
	case `"unavailable"`:
		return nil, sdk.Unavailable("KDS down")
	case `"plain"`:
		return nil, errors.New("some bug")
	case `"panic"`:
		panic("boom")
	case `"ctx"`:
		return nil, context.DeadlineExceeded
	}
	return verifier.Claims{"n": 1, "big": float64(1 << 53), "s": "x", "nested": map[string]any{"b": true}}, nil
}

func TestErrorClassesCrossTheBoundary(t *testing.T) {
	c := plugintest.Start(t, serve.Options{Name: "err", TEETypes: []string{"x"}, Verifier: errVerifier{}}, nil)
	v := c.Verifier()
	tests := map[string]struct {
		evidence string
		want     error
		wantMsg  string
	}{
		"bad evidence":     {`"bad"`, sdk.ErrBadEvidence, "report data mismatch: inner"},
		"unsupported":      {`"unsupported"`, sdk.ErrUnsupported, "evidence version 9"},
		"not found":        {`"notfound"`, sdk.ErrNotFound, "no VCEK"},
		"unavailable":      {`"unavailable"`, sdk.ErrUnavailable, "KDS down"},
		"unclassified":     {`"plain"`, sdk.ErrInternal, "some bug"},
		"panic is caught":  {`"panic"`, sdk.ErrInternal, "plugin panicked while handling the call"},
		"context deadline": {`"ctx"`, sdk.ErrUnavailable, "context deadline exceeded"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), &verifier.Request{TEE: "x", Evidence: json.RawMessage(tc.evidence)})
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %#v, want class of %v", err, tc.want)
			}
			if err.Error() != tc.wantMsg {
				t.Errorf("message = %q, want %q", err.Error(), tc.wantMsg)
			}
		})
	}
	t.Run("plugin survives a panic", func(t *testing.T) {
		claims, err := v.Verify(context.Background(), &verifier.Request{TEE: "x", Evidence: json.RawMessage(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		if claims["big"] != float64(1<<53) || claims["nested"].(map[string]any)["b"] != true {
			t.Errorf("claims = %v", claims)
		}
	})
}

func TestCancelledContextIsUnavailable(t *testing.T) {
	c := plugintest.Start(t, serve.Options{Name: "err", TEETypes: []string{"x"}, Verifier: errVerifier{}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Verifier().Verify(ctx, &verifier.Request{TEE: "x", Evidence: json.RawMessage(`{}`)})
	if !errors.Is(err, sdk.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want unavailable wrapping context.Canceled", err)
	}
}

func TestKindAccessors(t *testing.T) {
	c := plugintest.Start(t, serve.Options{Name: "v", TEETypes: []string{"x"}, Verifier: errVerifier{}}, nil)
	if c.Verifier() == nil || c.Resource() != nil || c.TokenIssuer() != nil {
		t.Fatal("a verifier plugin must only be usable as a verifier")
	}
	if err := c.Ping(); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	c.Kill()
	if err := c.Ping(); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Ping after Kill = %v, want unavailable", err)
	}
	if _, err := c.Verifier().Verify(context.Background(), &verifier.Request{TEE: "x"}); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Verify after Kill = %v, want unavailable", err)
	}
}

func TestConfigureIsStrictWithoutConfigurer(t *testing.T) {
	c := plugintest.Start(t, serve.Options{Name: "v", TEETypes: []string{"x"}, Verifier: errVerifier{}}, nil)
	err := c.Configure(context.Background(), []byte(`{"unexpected":1}`))
	if !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("Configure with settings for a plugin that takes none = %v, want invalid_argument", err)
	}
}

func TestResourcePathValidation(t *testing.T) {
	tests := map[string]struct {
		in      string
		wantErr bool
	}{
		"plain":          {"default/key/one", false},
		"dots inside":    {"a.b/c_d/e-f.g", false},
		"akv":            {"default/akv/coco_one", false},
		"dotdot":         {"default/../x", true},
		"leading dot":    {"default/.key/x", true},
		"two segments":   {"default/key", true},
		"four segments":  {"a/b/c/d", true},
		"empty segment":  {"a//c", true},
		"absolute":       {"/a/b/c", true},
		"encoded":        {"a/%2e%2e/c", true},
		"backslash":      {`a/b\c/d`, true},
		"space":          {"a/b c/d", true},
		"nul":            {"a/b\x00/c", true},
		"unicode":        {"a/bé/c", true},
		"trailing slash": {"a/b/c/", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := resource.ParsePath(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParsePath(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("error class = %q, want invalid_argument", sdk.ClassOf(err))
			}
		})
	}
}
