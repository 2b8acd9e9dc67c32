package wire

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/gokbs/kbs/sdk"
)

func TestReceiveRequestID(t *testing.T) {
	tests := map[string]struct {
		md   metadata.MD
		want string
	}{
		"plain":      {metadata.Pairs(mdRequestID, "abc-123"), "abc-123"},
		"absent":     {metadata.MD{}, ""},
		"not plain":  {metadata.Pairs(mdRequestID, "a b"), ""},
		"twice":      {metadata.Pairs(mdRequestID, "a", mdRequestID, "b"), ""},
		"too long":   {metadata.Pairs(mdRequestID, string(make([]byte, sdk.MaxRequestIDLen+1))), ""},
		"other keys": {metadata.Pairs("x-request-id", "abc"), ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := metadata.NewIncomingContext(context.Background(), tc.md)
			var got string
			_, _ = receiveRequestID(ctx, nil, nil, func(ctx context.Context, _ any) (any, error) {
				got = sdk.RequestID(ctx)
				return nil, nil
			})
			if got != tc.want {
				t.Fatalf("plugin sees request ID %q, want %q", got, tc.want)
			}
		})
	}
}
