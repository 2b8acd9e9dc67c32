// Package plugins is kbs-host's plugin manager: it checks plugin binaries
// against the directory's manifest, starts them through sdk/pluginclient,
// supervises them (ping, restart with backoff, readiness) and hands the
// request path typed verifiers, resource backends and a token issuer that
// stay valid across plugin restarts.
package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/pluginclient"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/token"
	"github.com/gokbs/kbs/sdk/verifier"
)

// Spec configures one plugin. The host's configuration layer fills it.
type Spec struct {
	Kind, Name string
	// Config is the plugin's own settings, passed to its Configure as is.
	Config json.RawMessage
	// Routes (resource backends only) are the "repo" or "repo/type"
	// prefixes the backend serves. Empty, or "*", makes it the default.
	Routes []string
}

// Options configure the manager. Zero durations take the defaults.
type Options struct {
	// Dir holds the plugin binaries and manifest.sha256.
	Dir string
	// StartTimeout bounds a plugin's start (handshake and metadata). 10 s.
	StartTimeout time.Duration
	// CallTimeout is the deadline of every call into a plugin. 30 s.
	CallTimeout time.Duration
	// PingInterval is how often each plugin is health-checked. 1 s.
	PingInterval time.Duration
	// RestartBackoffMin and Max bound the delay before a restart; it
	// doubles after each failed attempt. 100 ms and 10 s.
	RestartBackoffMin, RestartBackoffMax time.Duration
	// Logger is the host's logger; each plugin logs to a sub-logger named
	// plugin.<kind>.<name>. Default: discard.
	Logger hclog.Logger
	// GOMAXPROCS is each plugin process's. 0: half the host's, at least
	// one. A plugin mostly waits on its socket and computes briefly; with
	// fewer threads its Go runtime spends less time waking and parking
	// them (a sixth of a plugin's CPU time per call on a 2-CPU machine).
	GOMAXPROCS int
	// OnCall, when set, is told of every call into a plugin ("verifier/sample",
	// "Verify") once it returns, for metrics. It must be fast.
	OnCall func(plugin, method string, elapsed time.Duration, err error)
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.StartTimeout, 10*time.Second)
	def(&o.CallTimeout, 30*time.Second)
	def(&o.PingInterval, time.Second)
	def(&o.RestartBackoffMin, 100*time.Millisecond)
	def(&o.RestartBackoffMax, 10*time.Second)
	if o.GOMAXPROCS <= 0 {
		o.GOMAXPROCS = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if o.RestartBackoffMax < o.RestartBackoffMin {
		o.RestartBackoffMax = o.RestartBackoffMin
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return o
}

// State of a supervised plugin.
type State string

// Plugin states.
const (
	StateRunning    State = "running"
	StateRestarting State = "restarting"
	// StateFailed is final: the binary was refused on restart (tampered,
	// or it no longer says it is the plugin it was). Restart the host.
	StateFailed State = "failed"
	// StateStopped: the manager was closed.
	StateStopped State = "stopped"
)

// PluginStatus describes one configured plugin.
type PluginStatus struct {
	Kind, Name   string
	Version      string
	SDKVersion   string
	TEETypes     []string
	Capabilities []string
	Path         string
	SHA256       string // hex, of the binary last started
	PID          int    // 0 while down
	State        State
	Restarts     int    // successful restarts after a failure
	LastError    string // why it last went down or failed to start
}

// Manager runs the configured plugins. Its methods are safe for concurrent
// use.
type Manager struct {
	opts    Options
	plugins []*managed
	tables

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// instance is one running process of a plugin.
type instance struct {
	client  *pluginclient.Client
	meta    pluginclient.Metadata
	sha256  [sha256.Size]byte
	pid     int
	started time.Time
	v       verifier.Verifier
	r       resource.Backend
	t       token.Issuer
}

// managed is one configured plugin across its restarts.
type managed struct {
	spec        Spec
	id          string // "verifier/sample"
	path        string
	log         hclog.Logger
	callTimeout time.Duration
	onCall      func(plugin, method string, elapsed time.Duration, err error)
	// teeTypes are those of the first start, sorted; the dispatch table is
	// built from them, so a restarted verifier must declare the same.
	teeTypes []string

	cur   atomic.Pointer[instance] // nil while down
	nudge chan struct{}            // a call saw the plugin unavailable

	mu       sync.Mutex
	state    State
	last     *instance // the latest instance, kept for Status while down
	restarts int
	lastErr  string

	// The typed values handed out; they find the current instance per call.
	verifier verifier.Verifier
	resource resource.Backend
	issuer   token.Issuer
}

func (p *managed) setState(s State, err error) {
	p.mu.Lock()
	p.state = s
	if err != nil {
		p.lastErr = err.Error()
	}
	p.mu.Unlock()
}

// poke asks the supervisor to check the plugin now rather than at the next
// tick, so that a crash seen by a call is acted on at once.
func (p *managed) poke() {
	select {
	case p.nudge <- struct{}{}:
	default:
	}
}

func (p *managed) downErr() error {
	p.mu.Lock()
	s := p.state
	p.mu.Unlock()
	if s == StateRunning {
		s = StateRestarting // the supervisor is about to say so
	}
	return sdk.Unavailable("plugin %s is unavailable (%s)", p.id, s)
}

// New checks and starts every plugin in specs, configures each with its
// settings and starts supervising them. On error nothing is left running.
func New(ctx context.Context, opts Options, specs []Spec) (*Manager, error) {
	opts = opts.withDefaults()
	if err := validateSpecs(specs); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("plugin directory: %w", err)
	}
	opts.Dir = dir
	if len(specs) > 0 {
		if err := checkDir(dir); err != nil {
			return nil, err
		}
	}
	m := &Manager{opts: opts}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	for _, s := range specs {
		m.plugins = append(m.plugins, m.newManaged(s))
	}

	insts := make([]*instance, len(m.plugins))
	errs := make([]error, len(m.plugins))
	var wg sync.WaitGroup
	for i, p := range m.plugins {
		wg.Go(func() { insts[i], errs[i] = m.start(ctx, p) })
	}
	wg.Wait()
	err = errors.Join(errs...)
	if err == nil {
		for i, p := range m.plugins {
			p.teeTypes = sortedCopy(insts[i].meta.TEETypes)
		}
		m.tables, err = newTables(m.plugins)
	}
	if err != nil {
		for _, inst := range insts {
			if inst != nil {
				inst.client.Kill()
			}
		}
		m.cancel()
		return nil, err
	}
	for i, p := range m.plugins {
		p.publish(insts[i])
		m.wg.Go(func() { m.supervise(p, insts[i]) })
	}
	m.wg.Go(m.watchExits)
	return m, nil
}

// exitPoll is how often the manager looks for plugin processes that have
// exited. go-plugin notices an exit at once but only answers when asked;
// asking is a field read, so a dead plugin is restarted within this delay
// even when no call meets it (a resource served from the cache, a verifier
// for a TEE nobody uses), rather than at the next ping.
const exitPoll = 100 * time.Millisecond

// watchExits nudges the supervisor of every plugin whose process exited.
func (m *Manager) watchExits() {
	t := time.NewTicker(exitPoll)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range m.plugins {
			if inst := p.cur.Load(); inst != nil && inst.client.Exited() {
				p.poke()
			}
		}
	}
}

func (m *Manager) newManaged(s Spec) *managed {
	p := &managed{
		spec:        s,
		id:          s.Kind + "/" + s.Name,
		path:        filepath.Join(m.opts.Dir, BinaryName(s.Kind, s.Name)),
		log:         m.opts.Logger.Named("plugin." + s.Kind + "." + s.Name),
		callTimeout: m.opts.CallTimeout,
		onCall:      m.opts.OnCall,
		nudge:       make(chan struct{}, 1),
	}
	switch s.Kind {
	case sdk.KindVerifier:
		p.verifier = verifierProxy{p}
	case sdk.KindResource:
		p.resource = resourceProxy{p}
	case sdk.KindToken:
		p.issuer = issuerProxy{p}
	}
	return p
}

// publish makes inst the plugin's current process.
func (p *managed) publish(inst *instance) {
	p.mu.Lock()
	p.last = inst
	p.state = StateRunning
	p.mu.Unlock()
	p.cur.Store(inst)
}

func validateSpecs(specs []Spec) error {
	seen := map[string]bool{}
	var tokens []string
	for _, s := range specs {
		id := s.Kind + "/" + s.Name
		switch {
		case !validKind(s.Kind):
			return fmt.Errorf("plugin %s: kind %q is not verifier, resource or token", id, s.Kind)
		case !nameRE.MatchString(s.Name):
			return fmt.Errorf("plugin %s: name %q does not match %s", id, s.Name, nameRE)
		case seen[id]:
			return fmt.Errorf("plugin %s is configured twice", id)
		case len(s.Routes) > 0 && s.Kind != sdk.KindResource:
			return fmt.Errorf("plugin %s: only resource backends take routes", id)
		}
		seen[id] = true
		if s.Kind == sdk.KindToken {
			tokens = append(tokens, id)
		}
	}
	if len(tokens) > 1 {
		return fmt.Errorf("at most one token issuer may be configured, got %s", strings.Join(tokens, ", "))
	}
	return nil
}

// tables dispatch requests to plugins. They are built once in New and only
// read afterwards, so lookups take no lock.
type tables struct {
	verifiers       map[string]*managed // TEE type -> verifier
	routes          map[routeKey]*managed
	defaultResource *managed
	issuer          *managed
}

// routeKey is a resource route; typ is "" for a whole repository. A struct
// key lets Resource look up a path without building a string.
type routeKey struct{ repo, typ string }

func parseRoute(r string) (key routeKey, isDefault bool, err error) {
	if r == "" || r == "*" {
		return routeKey{}, true, nil
	}
	parts := strings.Split(r, "/")
	if len(parts) > 2 {
		return routeKey{}, false, fmt.Errorf("route %q: want repo or repo/type", r)
	}
	for _, seg := range parts {
		if err := resource.ValidateSegment(seg); err != nil {
			return routeKey{}, false, fmt.Errorf("route %q: %w", r, err)
		}
	}
	key.repo = parts[0]
	if len(parts) == 2 {
		key.typ = parts[1]
	}
	return key, false, nil
}

// newTables needs each plugin's spec and, for verifiers, teeTypes.
func newTables(ps []*managed) (tables, error) {
	t := tables{verifiers: map[string]*managed{}, routes: map[routeKey]*managed{}}
	for _, p := range ps {
		switch p.spec.Kind {
		case sdk.KindVerifier:
			if len(p.teeTypes) == 0 {
				return t, fmt.Errorf("verifier %s declares no TEE types", p.id)
			}
			for _, tee := range p.teeTypes {
				if other := t.verifiers[tee]; other != nil {
					return t, fmt.Errorf("verifiers %s and %s both claim TEE %q", other.id, p.id, tee)
				}
				t.verifiers[tee] = p
			}
		case sdk.KindResource:
			routes := p.spec.Routes
			if len(routes) == 0 {
				routes = []string{"*"}
			}
			for _, r := range routes {
				key, isDefault, err := parseRoute(r)
				if err != nil {
					return t, fmt.Errorf("resource backend %s: %w", p.id, err)
				}
				if isDefault {
					if t.defaultResource != nil && t.defaultResource != p {
						return t, fmt.Errorf("resource backends %s and %s are both the default", t.defaultResource.id, p.id)
					}
					t.defaultResource = p
					continue
				}
				if other := t.routes[key]; other != nil && other != p {
					return t, fmt.Errorf("resource backends %s and %s both serve %q", other.id, p.id, r)
				}
				t.routes[key] = p
			}
		case sdk.KindToken:
			t.issuer = p
		}
	}
	return t, nil
}

// Verifier returns the verifier for a TEE type.
func (m *Manager) Verifier(tee string) (verifier.Verifier, error) {
	p := m.verifiers[tee]
	if p == nil {
		return nil, sdk.Unsupported("no verifier plugin handles TEE %q", tee)
	}
	return p.verifier, nil
}

// Resource returns the backend that serves p: the one routed for
// repo/type, else for repo, else the default backend.
func (m *Manager) Resource(p resource.Path) (resource.Backend, error) {
	b := m.owner(p)
	if b == nil {
		return nil, sdk.NotFound("no resource backend serves %s", p)
	}
	return b.resource, nil
}

// owner returns the managed backend that serves p, or nil.
func (m *Manager) owner(p resource.Path) *managed {
	if b := m.routes[routeKey{p.Repo, p.Type}]; b != nil {
		return b
	}
	if b := m.routes[routeKey{p.Repo, ""}]; b != nil {
		return b
	}
	return m.defaultResource
}

// ListResources lists the resources of repo ("" for all) over every
// backend. A path that a backend holds but the routes give to another
// backend is left out: it is not what a guest would be served.
func (m *Manager) ListResources(ctx context.Context, repo string) ([]resource.Path, error) {
	var out []resource.Path
	for _, p := range m.plugins {
		if p.spec.Kind != sdk.KindResource {
			continue
		}
		paths, err := p.resource.List(ctx, repo)
		if err != nil {
			return nil, err
		}
		for _, rp := range paths {
			if m.owner(rp) == p {
				out = append(out, rp)
			}
		}
	}
	slices.SortFunc(out, func(a, b resource.Path) int { return strings.Compare(a.String(), b.String()) })
	return out, nil
}

// TokenIssuer returns the token issuer.
func (m *Manager) TokenIssuer() (token.Issuer, error) {
	if m.issuer == nil {
		return nil, sdk.Unsupported("no token issuer plugin is configured")
	}
	return m.issuer.issuer, nil
}

// Ready returns nil while every configured plugin is running, and otherwise
// an error that lists those that are not.
func (m *Manager) Ready() error {
	var down []string
	for _, p := range m.plugins {
		if p.cur.Load() == nil {
			down = append(down, p.id+" ("+string(p.status().State)+")")
		}
	}
	if down != nil {
		return fmt.Errorf("plugins not ready: %s", strings.Join(down, ", "))
	}
	return nil
}

// Status reports every configured plugin, in configuration order.
func (m *Manager) Status() []PluginStatus {
	out := make([]PluginStatus, 0, len(m.plugins))
	for _, p := range m.plugins {
		out = append(out, p.status())
	}
	return out
}

func (p *managed) status() PluginStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PluginStatus{Kind: p.spec.Kind, Name: p.spec.Name, Path: p.path,
		State: p.state, Restarts: p.restarts, LastError: p.lastErr}
	if p.last != nil {
		st.Version = p.last.meta.Version
		st.SDKVersion = p.last.meta.SDKVersion
		st.TEETypes = slices.Clone(p.last.meta.TEETypes)
		st.Capabilities = slices.Clone(p.last.meta.Capabilities)
		st.SHA256 = hex.EncodeToString(p.last.sha256[:])
	}
	if cur := p.cur.Load(); cur != nil {
		st.PID = cur.pid
	}
	return st
}

// Close stops supervision and every plugin process, and waits for them to
// exit. Calls made afterwards fail as unavailable.
//
// A host that is killed never gets here, and its plugins keep running as
// orphans: sdk/pluginclient does not (yet) set Pdeathsig on them.
func (m *Manager) Close() error {
	m.once.Do(func() {
		m.cancel()
		m.wg.Wait()
		var wg sync.WaitGroup
		for _, p := range m.plugins {
			inst := p.cur.Swap(nil)
			p.setState(StateStopped, nil)
			if inst != nil {
				wg.Go(inst.client.Kill)
			}
		}
		wg.Wait()
	})
	return nil
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
