package pluginclient_test

import (
	"context"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/verifier"
)

// idVerifier answers with the request ID its call carries.
type idVerifier struct{}

func (idVerifier) Verify(ctx context.Context, _ *verifier.Request) (verifier.Claims, error) {
	return verifier.Claims{"id": sdk.RequestID(ctx)}, nil
}

func TestRequestIDCrossesTheBoundary(t *testing.T) {
	c := plugintest.Start(t, serve.Options{Name: "id", TEETypes: []string{"x"}, Verifier: idVerifier{}}, nil)
	tests := map[string]struct{ sent, want string }{
		"carried":             {"req-1f2e.3d:4c_5b", "req-1f2e.3d:4c_5b"},
		"none":                {"", ""},
		"unsafe is dropped":   {"a\nb", ""},
		"too long is dropped": {string(make([]byte, sdk.MaxRequestIDLen+1)), ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if tc.sent != "" {
				ctx = sdk.WithRequestID(ctx, tc.sent)
			}
			claims, err := c.Verifier().Verify(ctx, &verifier.Request{TEE: "x", Evidence: []byte(`{}`)})
			if err != nil {
				t.Fatal(err)
			}
			if claims["id"] != tc.want {
				t.Fatalf("plugin saw request ID %q, want %q", claims["id"], tc.want)
			}
		})
	}
}

func TestValidRequestID(t *testing.T) {
	tests := map[string]struct {
		id   string
		want bool
	}{
		"uuid":      {"0b6c3c1e-8a4e-4c0e-9d55-0a8f3b1e2c4d", true},
		"empty":     {"", false},
		"space":     {"a b", false},
		"quote":     {`a"b`, false},
		"non-ascii": {"ä", false},
		"max":       {repeat('a', sdk.MaxRequestIDLen), true},
		"too long":  {repeat('a', sdk.MaxRequestIDLen+1), false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := sdk.ValidRequestID(tc.id); got != tc.want {
				t.Fatalf("ValidRequestID(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}

func repeat(c byte, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return string(b)
}
