package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/token"
	"github.com/gokbs/kbs/sdk/verifier"
)

// The proxies are what the request path holds. Each call finds the
// plugin's current process, so a value stays usable across restarts.

var (
	_ verifier.Verifier = verifierProxy{}
	_ resource.Backend  = resourceProxy{}
	_ token.Issuer      = issuerProxy{}
)

// call runs f on p's current instance under the call deadline. While p is
// down it fails at once. An unavailable error names the plugin and makes
// the supervisor look at it now: the process may have just died.
func call[T any](ctx context.Context, p *managed, method string, f func(context.Context, *instance) (T, error)) (T, error) {
	start := time.Now()
	inst := p.cur.Load()
	if inst == nil {
		var zero T
		err := p.downErr()
		p.observe(method, start, err)
		return zero, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.callTimeout)
	defer cancel()
	v, err := f(ctx, inst)
	if err != nil && errors.Is(err, sdk.ErrUnavailable) {
		p.poke()
		err = sdk.Unavailable("plugin %s: %w", p.id, err)
	}
	p.observe(method, start, err)
	return v, err
}

func (p *managed) observe(method string, start time.Time, err error) {
	if p.onCall != nil {
		p.onCall(p.id, method, time.Since(start), err)
	}
}

type verifierProxy struct{ p *managed }

func (x verifierProxy) Verify(ctx context.Context, req *verifier.Request) (verifier.Claims, error) {
	return call(ctx, x.p, "Verify", func(ctx context.Context, in *instance) (verifier.Claims, error) {
		return in.v.Verify(ctx, req)
	})
}

type resourceProxy struct{ p *managed }

func (x resourceProxy) Get(ctx context.Context, path resource.Path) ([]byte, error) {
	return call(ctx, x.p, "Get", func(ctx context.Context, in *instance) ([]byte, error) {
		return in.r.Get(ctx, path)
	})
}

func (x resourceProxy) Put(ctx context.Context, path resource.Path, data []byte) error {
	_, err := call(ctx, x.p, "Put", func(ctx context.Context, in *instance) (struct{}, error) {
		return struct{}{}, in.r.Put(ctx, path, data)
	})
	return err
}

func (x resourceProxy) Delete(ctx context.Context, path resource.Path) error {
	_, err := call(ctx, x.p, "Delete", func(ctx context.Context, in *instance) (struct{}, error) {
		return struct{}{}, in.r.Delete(ctx, path)
	})
	return err
}

func (x resourceProxy) List(ctx context.Context, repo string) ([]resource.Path, error) {
	return call(ctx, x.p, "List", func(ctx context.Context, in *instance) ([]resource.Path, error) {
		return in.r.List(ctx, repo)
	})
}

type issuerProxy struct{ p *managed }

func (x issuerProxy) Issue(ctx context.Context, req *token.IssueRequest) (*token.Issued, error) {
	return call(ctx, x.p, "Issue", func(ctx context.Context, in *instance) (*token.Issued, error) {
		return in.t.Issue(ctx, req)
	})
}

func (x issuerProxy) JWKS(ctx context.Context) (json.RawMessage, error) {
	return call(ctx, x.p, "JWKS", func(ctx context.Context, in *instance) (json.RawMessage, error) {
		return in.t.JWKS(ctx)
	})
}
