package wire

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc"

	"github.com/gokbs/kbs/sdk"
	pb "github.com/gokbs/kbs/sdk/internal/pb/pluginv1"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/token"
	"github.com/gokbs/kbs/sdk/verifier"
)

// Metadata is the plugin's self-description, in plain Go.
type Metadata struct {
	Name          string
	Kind          string
	Version       string
	SDKVersion    string
	ProtocolMinor uint32
	Capabilities  []string
	TEETypes      []string
}

// MetadataToPB converts for the server side.
func MetadataToPB(m Metadata) *pb.Metadata {
	return &pb.Metadata{Name: m.Name, Kind: m.Kind, Version: m.Version, SdkVersion: m.SDKVersion,
		ProtocolMinor: m.ProtocolMinor, Capabilities: m.Capabilities, TeeTypes: m.TEETypes}
}

// Conn is the host side of one plugin connection.
type Conn struct {
	plugin pb.PluginClient
	cc     grpc.ClientConnInterface
}

// NewConn wraps a gRPC connection to a plugin.
func NewConn(cc grpc.ClientConnInterface) *Conn {
	return &Conn{plugin: pb.NewPluginClient(cc), cc: cc}
}

// Metadata asks the plugin to describe itself.
func (c *Conn) Metadata(ctx context.Context) (Metadata, error) {
	m, err := c.plugin.GetMetadata(ctx, &pb.GetMetadataRequest{})
	if err != nil {
		return Metadata{}, fromStatus(ctx, err)
	}
	return Metadata{Name: m.GetName(), Kind: m.GetKind(), Version: m.GetVersion(), SDKVersion: m.GetSdkVersion(),
		ProtocolMinor: m.GetProtocolMinor(), Capabilities: m.GetCapabilities(), TEETypes: m.GetTeeTypes()}, nil
}

// Configure hands the plugin its settings (a JSON object).
func (c *Conn) Configure(ctx context.Context, config []byte) error {
	_, err := c.plugin.Configure(ctx, &pb.ConfigureRequest{ConfigJson: config})
	return fromStatus(ctx, err)
}

// Verifier returns a verifier.Verifier backed by the plugin.
func (c *Conn) Verifier() verifier.Verifier { return &verifierClient{c: pb.NewVerifierClient(c.cc)} }

// Resource returns a resource.Backend backed by the plugin.
func (c *Conn) Resource() resource.Backend {
	return &resourceClient{c: pb.NewResourceBackendClient(c.cc)}
}

// TokenIssuer returns a token.Issuer backed by the plugin.
func (c *Conn) TokenIssuer() token.Issuer { return &tokenClient{c: pb.NewTokenIssuerClient(c.cc)} }

type verifierClient struct{ c pb.VerifierClient }

func (v *verifierClient) Verify(ctx context.Context, req *verifier.Request) (verifier.Claims, error) {
	resp, err := v.c.Verify(ctx, &pb.VerifyRequest{
		Tee:            req.TEE,
		EvidenceJson:   req.Evidence,
		ReportData:     req.ReportData,
		HashAlgorithm:  req.HashAlgorithm,
		InitDataDigest: req.InitDataDigest,
	})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	var claims verifier.Claims
	if err := json.Unmarshal(resp.GetClaimsJson(), &claims); err != nil {
		return nil, sdk.Internal("plugin returned claims that are not a JSON object: %v", err)
	}
	return claims, nil
}

type resourceClient struct{ c pb.ResourceBackendClient }

func (r *resourceClient) Get(ctx context.Context, p resource.Path) ([]byte, error) {
	resp, err := r.c.Get(ctx, &pb.GetResourceRequest{Path: pathToPB(p)})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	return resp.GetData(), nil
}

func (r *resourceClient) Put(ctx context.Context, p resource.Path, data []byte) error {
	_, err := r.c.Put(ctx, &pb.PutResourceRequest{Path: pathToPB(p), Data: data})
	return fromStatus(ctx, err)
}

func (r *resourceClient) Delete(ctx context.Context, p resource.Path) error {
	_, err := r.c.Delete(ctx, &pb.DeleteResourceRequest{Path: pathToPB(p)})
	return fromStatus(ctx, err)
}

func (r *resourceClient) List(ctx context.Context, repo string) ([]resource.Path, error) {
	resp, err := r.c.List(ctx, &pb.ListResourcesRequest{Repo: repo})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	out := make([]resource.Path, 0, len(resp.GetPaths()))
	for _, p := range resp.GetPaths() {
		rp, err := pathFromPB(p)
		if err != nil {
			return nil, sdk.Internal("plugin listed an invalid path: %v", err)
		}
		out = append(out, rp)
	}
	return out, nil
}

type tokenClient struct{ c pb.TokenIssuerClient }

func (t *tokenClient) Issue(ctx context.Context, req *token.IssueRequest) (*token.Issued, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding issue request: %w", err)
	}
	resp, err := t.c.Issue(ctx, &pb.IssueRequest{RequestJson: body})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	return &token.Issued{Token: resp.GetToken(), ExpiresAt: unixTime(resp.GetExpiresAtUnix())}, nil
}

func (t *tokenClient) JWKS(ctx context.Context) (json.RawMessage, error) {
	resp, err := t.c.GetJWKS(ctx, &pb.GetJWKSRequest{})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	return resp.GetJwksJson(), nil
}
