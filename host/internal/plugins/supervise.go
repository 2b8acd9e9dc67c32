package plugins

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/pluginclient"
)

// pingTimeout bounds one health check: go-plugin's Ping has no deadline of
// its own, and a stopped or wedged process would otherwise hang it forever.
const pingTimeout = 5 * time.Second

// refusal marks a start error that restarting cannot fix.
type refusal struct{ err error }

func (r *refusal) Error() string        { return r.err.Error() }
func (r *refusal) Unwrap() error        { return r.err }
func (r *refusal) Is(target error) bool { return target == ErrRefused }

// start checks the binary, starts it, checks that it is the plugin it is
// configured as, and configures it. On error no process is left running.
func (m *Manager) start(ctx context.Context, p *managed) (*instance, error) {
	sum, err := verifyBinary(m.opts.Dir, BinaryName(p.spec.Kind, p.spec.Name))
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", p.id, err)
	}
	sctx, cancel := context.WithTimeout(ctx, m.opts.StartTimeout)
	defer cancel()
	c, err := pluginclient.Start(sctx, pluginclient.Config{
		Path:         p.path,
		SHA256:       sum[:],
		StartTimeout: m.opts.StartTimeout,
		Logger:       p.log,
		Env:          []string{"GOMAXPROCS=" + strconv.Itoa(m.opts.GOMAXPROCS)},
	})
	if err != nil {
		if errors.Is(err, goplugin.ErrChecksumsDoNotMatch) {
			// The file changed between the manifest check and exec.
			err = &FileError{Path: p.path, Status: StatusMismatch, Detail: err.Error()}
		}
		return nil, fmt.Errorf("plugin %s: %w", p.id, err)
	}
	inst, err := m.accept(ctx, p, c)
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("plugin %s: %w", p.id, err)
	}
	inst.sha256 = sum
	return inst, nil
}

func (m *Manager) accept(ctx context.Context, p *managed, c *pluginclient.Client) (*instance, error) {
	meta := c.Metadata()
	if meta.Kind != p.spec.Kind || meta.Name != p.spec.Name {
		return nil, &refusal{fmt.Errorf("%s says it is %s/%s", p.path, meta.Kind, meta.Name)}
	}
	if p.teeTypes != nil && !slices.Equal(sortedCopy(meta.TEETypes), p.teeTypes) {
		return nil, &refusal{fmt.Errorf("%s now declares TEE types %v instead of %v; restart the host to change them",
			p.path, meta.TEETypes, p.teeTypes)}
	}
	cctx, cancel := context.WithTimeout(ctx, m.opts.CallTimeout)
	defer cancel()
	var config []byte
	if len(p.spec.Config) > 0 {
		config = p.spec.Config
	}
	if err := c.Configure(cctx, config); err != nil {
		return nil, fmt.Errorf("configuring: %w", err)
	}
	inst := &instance{client: c, meta: meta, pid: c.Pid(), started: time.Now()}
	switch meta.Kind {
	case sdk.KindVerifier:
		inst.v = c.Verifier()
	case sdk.KindResource:
		inst.r = c.Resource()
	case sdk.KindToken:
		inst.t = c.TokenIssuer()
	}
	return inst, nil
}

// supervise watches one plugin until the manager closes or the plugin is
// refused for good. It alone replaces the plugin's instance.
func (m *Manager) supervise(p *managed, inst *instance) {
	backoff := m.opts.RestartBackoffMin
	// A plugin that stayed up this long is not crash-looping: its next
	// restart starts again from the shortest delay.
	healthyAfter := 2 * m.opts.RestartBackoffMax
	tick := time.NewTicker(m.opts.PingInterval)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
		case <-p.nudge:
		}
		err := m.health(inst)
		if err == nil {
			continue
		}
		if m.ctx.Err() != nil {
			return
		}
		if time.Since(inst.started) >= healthyAfter {
			backoff = m.opts.RestartBackoffMin
		}
		p.setState(StateRestarting, err)
		p.cur.Store(nil)
		p.log.Error("plugin is down, restarting it", "pid", inst.pid, "error", err)
		inst.client.Kill()
		if inst = m.restart(p, &backoff); inst == nil {
			return
		}
	}
}

// health reports why inst is not healthy, or nil.
func (m *Manager) health(inst *instance) error {
	if inst.client.Exited() {
		return errors.New("plugin process exited")
	}
	done := make(chan error, 1)
	go func() { done <- inst.client.Ping() }()
	t := time.NewTimer(pingTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("no answer to a ping within %s", pingTimeout)
	case <-m.ctx.Done():
		return nil
	}
}

// restart starts p again after *backoff, doubling the delay after every
// failed attempt. It returns nil when the manager closes or the binary is
// refused; a refused plugin stays down.
func (m *Manager) restart(p *managed, backoff *time.Duration) *instance {
	for {
		t := time.NewTimer(*backoff)
		select {
		case <-m.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		*backoff = min(2**backoff, m.opts.RestartBackoffMax)
		inst, err := m.start(m.ctx, p)
		if err == nil {
			if m.ctx.Err() != nil {
				inst.client.Kill()
				return nil
			}
			p.mu.Lock()
			p.restarts++
			p.mu.Unlock()
			p.publish(inst)
			p.log.Info("plugin restarted", "pid", inst.pid)
			return inst
		}
		if m.ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrRefused) {
			p.setState(StateFailed, err)
			p.log.Error("REFUSING TO RESTART PLUGIN: its binary failed the integrity checks; it stays down until the host is restarted",
				"path", p.path, "error", err)
			return nil
		}
		p.setState(StateRestarting, err)
		p.log.Warn("plugin restart failed", "error", err, "retry_in", *backoff)
	}
}
