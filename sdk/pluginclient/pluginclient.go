// Package pluginclient starts a plugin binary and talks to it. It is the
// host's side of sdk/serve; plugin authors do not need it (sdk/plugintest
// uses it to test their plugins the way the host runs them).
//
// A plugin process is started over go-plugin gRPC only, with automatic
// mutual TLS, without the host's environment, and with its binary checked
// against the expected SHA-256 right before it is executed.
package pluginclient

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/internal/wire"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/token"
	"github.com/gokbs/kbs/sdk/verifier"
)

// Config says how to start one plugin process.
type Config struct {
	// Path is the plugin binary.
	Path string
	Args []string
	// SHA256 is the binary's expected digest. Required: go-plugin checks it
	// just before exec, which closes the gap between the host's manifest
	// check and the start.
	SHA256 []byte
	// Env is the plugin's whole environment (the host's is never passed).
	Env []string
	// Dir is the working directory; "" keeps the host's.
	Dir string
	// StartTimeout bounds the handshake. Default 10 s.
	StartTimeout time.Duration
	// Logger receives the plugin's log lines. Default: discard.
	Logger hclog.Logger
}

// Metadata is what a plugin says about itself.
type Metadata struct {
	Name          string
	Kind          string
	Version       string
	SDKVersion    string
	ProtocolMinor uint32
	Capabilities  []string
	TEETypes      []string
}

// Client is one running plugin process.
type Client struct {
	gp   *plugin.Client
	rpc  plugin.ClientProtocol
	conn *wire.Conn
	meta Metadata
	// stop ends an in-process plugin (gp is nil then).
	stop func()
}

// Start launches the plugin and asks it for its metadata. On any error the
// process is killed before Start returns.
func Start(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.SHA256) != sha256.Size {
		return nil, fmt.Errorf("plugin %s: expected SHA-256 is missing", cfg.Path)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	cmd := exec.Command(cfg.Path, cfg.Args...)
	cmd.Env = cfg.Env
	cmd.Dir = cfg.Dir
	cmd.SysProcAttr = sysProcAttr()
	gp := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		Plugins:          wire.PluginSet(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     cfg.StartTimeout,
		Logger:           cfg.Logger,
		SecureConfig:     &plugin.SecureConfig{Checksum: cfg.SHA256, Hash: sha256.New()},
		GRPCDialOptions:  wire.DialOptions(),
	})
	c, err := connect(ctx, gp)
	if err != nil {
		gp.Kill()
		return nil, fmt.Errorf("starting plugin %s: %w", cfg.Path, err)
	}
	return c, nil
}

func connect(ctx context.Context, gp *plugin.Client) (*Client, error) {
	rpc, err := gp.Client()
	if err != nil {
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return nil, fmt.Errorf("binary does not match its expected SHA-256: %w", err)
		}
		return nil, err
	}
	raw, err := rpc.Dispense(wire.PluginName)
	if err != nil {
		return nil, fmt.Errorf("dispensing: %w", err)
	}
	conn, ok := raw.(*wire.Conn)
	if !ok {
		return nil, fmt.Errorf("dispensing: unexpected client type %T", raw)
	}
	c := &Client{gp: gp, rpc: rpc, conn: conn}
	if err := c.loadMetadata(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) loadMetadata(ctx context.Context) error {
	m, err := c.conn.Metadata(ctx)
	if err != nil {
		return fmt.Errorf("reading metadata: %w", err)
	}
	c.meta = Metadata(m)
	switch c.meta.Kind {
	case sdk.KindVerifier, sdk.KindResource, sdk.KindToken:
	default:
		return fmt.Errorf("plugin reports unknown kind %q", c.meta.Kind)
	}
	return nil
}

// Metadata returns what the plugin said about itself at start.
func (c *Client) Metadata() Metadata { return c.meta }

// Configure hands the plugin its settings, a JSON object (nil for none).
func (c *Client) Configure(ctx context.Context, config []byte) error {
	return c.conn.Configure(ctx, config)
}

// Verifier returns the plugin as a verifier, or nil if it is not one.
func (c *Client) Verifier() verifier.Verifier {
	if c.meta.Kind != sdk.KindVerifier {
		return nil
	}
	return c.conn.Verifier()
}

// Resource returns the plugin as a resource backend, or nil.
func (c *Client) Resource() resource.Backend {
	if c.meta.Kind != sdk.KindResource {
		return nil
	}
	return c.conn.Resource()
}

// TokenIssuer returns the plugin as a token issuer, or nil.
func (c *Client) TokenIssuer() token.Issuer {
	if c.meta.Kind != sdk.KindToken {
		return nil
	}
	return c.conn.TokenIssuer()
}

// Ping checks that the plugin answers.
func (c *Client) Ping() error {
	if c.gp != nil && c.gp.Exited() {
		return sdk.Unavailable("plugin %s has exited", c.meta.Name)
	}
	var err error
	if c.rpc != nil {
		err = c.rpc.Ping()
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = c.conn.Metadata(ctx)
	}
	if err != nil {
		return sdk.Unavailable("plugin %s does not answer: %v", c.meta.Name, err)
	}
	return nil
}

// Exited reports whether the plugin process has ended.
func (c *Client) Exited() bool { return c.gp != nil && c.gp.Exited() }

// Pid returns the plugin's process ID (0 for an in-process plugin).
func (c *Client) Pid() int {
	if c.gp == nil {
		return 0
	}
	if rc := c.gp.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// killGrace is how long Kill waits for a plugin to shut down when asked.
// go-plugin's own Kill asks over the plugin connection without a deadline:
// a hung plugin (stopped, deadlocked) never answers, and the host would
// wait forever to restart it or to exit.
const killGrace = 2 * time.Second

// Kill stops the plugin process (gracefully, then by force) and waits for
// it to end.
func (c *Client) Kill() {
	if c.gp != nil {
		pid := c.Pid()
		done := make(chan struct{})
		go func() {
			c.gp.Kill()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(killGrace):
			if p, err := os.FindProcess(pid); err == nil && pid > 0 {
				_ = p.Kill()
			}
			<-done
		}
		return
	}
	if c.stop != nil {
		c.stop()
	}
}
