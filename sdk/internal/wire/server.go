package wire

import (
	"context"
	"encoding/json"
	"time"

	"google.golang.org/grpc"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/internal/memtrim"
	pb "github.com/gokbs/kbs/sdk/internal/pb/pluginv1"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/token"
	"github.com/gokbs/kbs/sdk/verifier"
)

// Impl is one plugin as the server side sees it.
type Impl struct {
	Meta        *pb.Metadata
	Verifier    verifier.Verifier
	Resource    resource.Backend
	TokenIssuer token.Issuer
	// Configurer is the implementation's sdk.Configurer, if it has one.
	Configurer sdk.Configurer
}

// Register registers the Plugin service and the service of impl's kind.
func Register(s *grpc.Server, impl *Impl) {
	pb.RegisterPluginServer(s, &pluginServer{impl: impl})
	switch {
	case impl.Verifier != nil:
		pb.RegisterVerifierServer(s, &verifierServer{v: impl.Verifier})
	case impl.Resource != nil:
		pb.RegisterResourceBackendServer(s, &resourceServer{b: impl.Resource})
	case impl.TokenIssuer != nil:
		pb.RegisterTokenIssuerServer(s, &tokenServer{t: impl.TokenIssuer})
	}
}

type pluginServer struct {
	pb.UnimplementedPluginServer
	impl *Impl
}

func (s *pluginServer) GetMetadata(context.Context, *pb.GetMetadataRequest) (*pb.Metadata, error) {
	return s.impl.Meta, nil
}

func (s *pluginServer) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	err := guard(ctx, func() error {
		if s.impl.Configurer == nil {
			return sdk.DecodeConfig(req.GetConfigJson(), &struct{}{})
		}
		return s.impl.Configurer.Configure(ctx, req.GetConfigJson())
	})
	if err != nil {
		return nil, err
	}
	// The host configures a plugin once, right after starting it: from
	// here on the plugin only serves calls, and the pages of its start-up
	// can go.
	memtrim.ReleaseAfterStart()
	return &pb.ConfigureResponse{}, nil
}

type verifierServer struct {
	pb.UnimplementedVerifierServer
	v verifier.Verifier
}

func (s *verifierServer) Verify(ctx context.Context, req *pb.VerifyRequest) (*pb.VerifyResponse, error) {
	var out []byte
	err := guard(ctx, func() error {
		claims, err := s.v.Verify(ctx, &verifier.Request{
			TEE:            req.GetTee(),
			Evidence:       json.RawMessage(req.GetEvidenceJson()),
			ReportData:     req.GetReportData(),
			HashAlgorithm:  req.GetHashAlgorithm(),
			InitDataDigest: nilIfEmpty(req.GetInitDataDigest()),
		})
		if err != nil {
			return err
		}
		if claims == nil {
			claims = verifier.Claims{}
		}
		out, err = json.Marshal(claims)
		if err != nil {
			return sdk.Internal("encoding claims: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &pb.VerifyResponse{ClaimsJson: out}, nil
}

type resourceServer struct {
	pb.UnimplementedResourceBackendServer
	b resource.Backend
}

func pathFromPB(p *pb.ResourcePath) (resource.Path, error) {
	rp := resource.Path{Repo: p.GetRepo(), Type: p.GetType(), Tag: p.GetTag()}
	return rp, rp.Validate()
}

func pathToPB(p resource.Path) *pb.ResourcePath {
	return &pb.ResourcePath{Repo: p.Repo, Type: p.Type, Tag: p.Tag}
}

func (s *resourceServer) Get(ctx context.Context, req *pb.GetResourceRequest) (*pb.GetResourceResponse, error) {
	var data []byte
	err := guard(ctx, func() error {
		p, err := pathFromPB(req.GetPath())
		if err != nil {
			return err
		}
		data, err = s.b.Get(ctx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.GetResourceResponse{Data: data}, nil
}

func (s *resourceServer) Put(ctx context.Context, req *pb.PutResourceRequest) (*pb.PutResourceResponse, error) {
	err := guard(ctx, func() error {
		p, err := pathFromPB(req.GetPath())
		if err != nil {
			return err
		}
		return s.b.Put(ctx, p, req.GetData())
	})
	if err != nil {
		return nil, err
	}
	return &pb.PutResourceResponse{}, nil
}

func (s *resourceServer) Delete(ctx context.Context, req *pb.DeleteResourceRequest) (*pb.DeleteResourceResponse, error) {
	err := guard(ctx, func() error {
		p, err := pathFromPB(req.GetPath())
		if err != nil {
			return err
		}
		return s.b.Delete(ctx, p)
	})
	if err != nil {
		return nil, err
	}
	return &pb.DeleteResourceResponse{}, nil
}

func (s *resourceServer) List(ctx context.Context, req *pb.ListResourcesRequest) (*pb.ListResourcesResponse, error) {
	var out []*pb.ResourcePath
	err := guard(ctx, func() error {
		if req.GetRepo() != "" {
			if err := resource.ValidateSegment(req.GetRepo()); err != nil {
				return err
			}
		}
		paths, err := s.b.List(ctx, req.GetRepo())
		if err != nil {
			return err
		}
		out = make([]*pb.ResourcePath, len(paths))
		for i, p := range paths {
			out[i] = pathToPB(p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &pb.ListResourcesResponse{Paths: out}, nil
}

type tokenServer struct {
	pb.UnimplementedTokenIssuerServer
	t token.Issuer
}

func (s *tokenServer) Issue(ctx context.Context, req *pb.IssueRequest) (*pb.IssueResponse, error) {
	var issued *token.Issued
	err := guard(ctx, func() error {
		var ir token.IssueRequest
		if err := json.Unmarshal(req.GetRequestJson(), &ir); err != nil {
			return sdk.InvalidArgument("issue request: %v", err)
		}
		var err error
		issued, err = s.t.Issue(ctx, &ir)
		if err == nil && issued == nil {
			err = sdk.Internal("token issuer returned no token")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.IssueResponse{Token: issued.Token, ExpiresAtUnix: issued.ExpiresAt.Unix()}, nil
}

func (s *tokenServer) GetJWKS(ctx context.Context, _ *pb.GetJWKSRequest) (*pb.GetJWKSResponse, error) {
	var jwks json.RawMessage
	err := guard(ctx, func() error {
		var err error
		jwks, err = s.t.JWKS(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.GetJWKSResponse{JwksJson: jwks}, nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// unixTime converts the wire's seconds into a time.
func unixTime(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}

// NewImpl builds the server side of a plugin from its parts.
func NewImpl(meta Metadata, v verifier.Verifier, r resource.Backend, t token.Issuer) *Impl {
	impl := &Impl{Meta: MetadataToPB(meta), Verifier: v, Resource: r, TokenIssuer: t}
	for _, x := range []any{v, r, t} {
		if c, ok := x.(sdk.Configurer); ok && x != nil {
			impl.Configurer = c
		}
	}
	return impl
}
