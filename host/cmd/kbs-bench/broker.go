package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gokbs/kbs/sdk/pluginclient"
)

// Broker is what the report says about a broker that kbs-bench started.
type Broker struct {
	// Plugins are those configured ("verifier/sample", ...).
	Plugins []string `json:"plugins"`
	// Skipped are plugins left out, with why.
	Skipped map[string]string `json:"skipped,omitempty"`
	// ReadySeconds is the time from exec to the first 200 of /readyz.
	ReadySeconds float64 `json:"ready_s"`
	// RSS of the host and its plugin processes, in MiB: after start, and
	// the highest seen while the load ran.
	IdleRSSMiB float64 `json:"idle_rss_mib"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// PeakHostRSSMiB is the host process's share of the peak.
	PeakHostRSSMiB float64 `json:"peak_host_rss_mib"`
	// PeakSessions is how many handshake sessions the broker held at the
	// end of the run with the peak: most of a loaded host's memory.
	PeakSessions float64 `json:"peak_sessions"`
	Processes    int     `json:"processes"`
}

// spawned is a kbs-host that kbs-bench runs.
type spawned struct {
	cmd    *exec.Cmd
	url    string
	pprof  string // the host's profiler address, when asked for
	dir    string
	secret []byte
	info   Broker
	logs   *logTail

	mu       sync.Mutex
	peak     int64
	peakHost int64
	stop     chan struct{}
	done     chan struct{}
}

// logTail keeps the end of the broker's log for an error message.
type logTail struct {
	mu sync.Mutex
	b  []byte
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	if len(l.b) > 64<<10 {
		l.b = l.b[len(l.b)-32<<10:]
	}
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// benchResource is where the load's resource lives in the spawned broker.
const benchResource = "default/bench/key"

// spawnBroker starts hostBin with every plugin in pluginDir configured for
// offline use (see pluginSettings), on a free loopback port, and waits
// until it is ready.
func spawnBroker(ctx context.Context, hostBin, pluginDir string, profile bool) (*spawned, error) {
	dir, err := os.MkdirTemp("", "kbs-bench-")
	if err != nil {
		return nil, err
	}
	s := &spawned{dir: dir, logs: &logTail{}, stop: make(chan struct{}), done: make(chan struct{})}
	s.secret = make([]byte, 32)
	_, _ = rand.Read(s.secret)
	repo := filepath.Join(dir, "repository")
	if err := os.MkdirAll(filepath.Join(repo, filepath.Dir(benchResource)), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(repo, benchResource), s.secret, 0o600); err != nil {
		return nil, err
	}
	policy := filepath.Join(dir, "allow.rego")
	if err := os.WriteFile(policy, []byte("package policy\n\ndefault allow := true\n"), 0o600); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	if profile {
		if s.pprof, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	cfg, err := s.config(ctx, pluginDir, addr, repo, policy)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "kbs.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	s.url = "http://" + addr
	s.cmd = exec.Command(hostBin, "--config", cfgPath)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(exited) }()
	if err := waitReady(ctx, s.url, exited, 30*time.Second); err != nil {
		s.close()
		return nil, fmt.Errorf("kbs-host did not become ready: %w\n%s", err, s.logs.String())
	}
	s.info.ReadySeconds = time.Since(start).Seconds()
	rss, n := treeRSS(s.cmd.Process.Pid)
	s.info.IdleRSSMiB, s.info.Processes = mib(rss), n
	go s.sampleRSS()
	return s, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitReady(ctx context.Context, url string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("kbs-host exited")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := client.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %s", timeout)
}

// sampleRSS records the highest RSS of the broker's processes until close.
// It reads only their statm files, and finds the processes again (a
// restarted plugin) every few seconds: walking /proc on every sample
// would charge the guests' CPU with a noticeable share.
func (s *spawned) sampleRSS() {
	defer close(s.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var pids []int
	var found time.Time
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if time.Since(found) > 3*time.Second {
			pids, found = descendants(s.cmd.Process.Pid), time.Now()
		}
		var rss, host int64
		for i, p := range pids {
			r := statmRSS(p)
			rss += r
			if i == 0 {
				host = r
			}
		}
		s.mu.Lock()
		if rss > s.peak {
			s.peak, s.peakHost = rss, host
		}
		s.mu.Unlock()
	}
}

var pageSize = int64(os.Getpagesize())

// procName is the plugin name of a process ("verifier-sample"), from its
// command line.
func procName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	arg0, _, _ := strings.Cut(string(b), "\x00")
	return strings.TrimPrefix(filepath.Base(arg0), "kbs-plugin-")
}

// statmRSS is a process's resident set from /proc/<pid>/statm.
func statmRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * pageSize
}

// resetPeak starts a new peak (the load is about to start).
func (s *spawned) resetPeak() {
	s.mu.Lock()
	s.peak, s.peakHost = 0, 0
	s.mu.Unlock()
}

// peakRSS returns the peak of the broker's processes and the host's share.
func (s *spawned) peakRSS() (float64, float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return mib(s.peak), mib(s.peakHost)
}

// close stops the broker (SIGTERM, then SIGKILL of its group) and removes
// its directory.
func (s *spawned) close() {
	if s.cmd != nil && s.cmd.Process != nil {
		select {
		case <-s.stop:
		default:
			close(s.stop)
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) && syscall.Kill(s.cmd.Process.Pid, 0) == nil {
			time.Sleep(20 * time.Millisecond)
		}
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
	_ = os.RemoveAll(s.dir)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// descendants returns pid and every process below it.
func descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := procStat(p); ok {
			children[st.ppid] = append(children[st.ppid], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// treeCPU sums the CPU time of pid and its descendants.
func treeCPU(pid int) time.Duration {
	var total time.Duration
	for _, p := range descendants(pid) {
		total += procCPU(p)
	}
	return total
}

// treeRSS sums VmRSS over pid and its descendants.
func treeRSS(pid int) (int64, int) {
	ps := descendants(pid)
	var total int64
	for _, p := range ps {
		total += rssOf(p)
	}
	return total, len(ps)
}

func rssOf(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// pluginSettings configures each in-tree plugin to start without the
// network or any platform: what "every in-tree plugin configured" means
// for the readiness and memory figures. dir is a scratch directory.
func pluginSettings(kind, name, dir string) (map[string]any, []string, error) {
	sub := filepath.Join(dir, kind+"-"+name)
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return nil, nil, err
	}
	switch kind + "/" + name {
	case "resource/fs":
		return nil, nil, nil // the default backend, set by the caller
	case "resource/vault":
		return map[string]any{"vault_url": "http://127.0.0.1:1", "token": "kbs-bench"}, []string{"bench-vault"}, nil
	case "resource/akv":
		return map[string]any{"vault_url": "https://kbs-bench.vault.azure.net", "credential": "managed_identity"}, []string{"bench-akv"}, nil
	case "resource/kms":
		pin := filepath.Join(sub, "pin")
		if err := os.WriteFile(pin, []byte("0000\n"), 0o600); err != nil {
			return nil, nil, err
		}
		return map[string]any{"dir": filepath.Join(sub, "repo"), "aws": map[string]any{"key_id": "alias/kbs-bench", "region": "us-east-1", "endpoint": "http://127.0.0.1:1"}}, []string{"bench-kms"}, nil
	case "verifier/cca":
		ta, rv, err := ccaStores(sub)
		return map[string]any{"ta_store": ta, "rv_store": rv}, nil, err
	case "verifier/csv":
		return map[string]any{"offline": true, "cert_dir": sub}, nil, nil
	case "verifier/snp":
		return map[string]any{"kds_disabled": true, "vcek_dir": sub}, nil, nil
	case "verifier/ita":
		key := filepath.Join(sub, "api-key")
		if err := os.WriteFile(key, []byte("kbs-bench\n"), 0o600); err != nil {
			return nil, nil, err
		}
		return map[string]any{"api_key_file": key}, nil, nil
	}
	return nil, nil, nil
}

// ccaStores writes a trust-anchor store with one made-up platform and an
// empty reference-value store.
func ccaStores(dir string) (string, string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	pt, _ := k.PublicKey.ECDH()
	b := pt.Bytes()
	b64 := base64.RawURLEncoding.EncodeToString
	ta, _ := json.Marshal([]any{map[string]any{
		"pkey":              map[string]string{"kty": "EC", "crv": "P-256", "x": b64(b[1:33]), "y": b64(b[33:])},
		"implementation-id": hex.EncodeToString(make([]byte, 32)),
		"instance-id":       "01" + hex.EncodeToString(make([]byte, 32)),
	}})
	taPath, rvPath := filepath.Join(dir, "ta.json"), filepath.Join(dir, "rv.json")
	if err := os.WriteFile(taPath, ta, 0o600); err != nil {
		return "", "", err
	}
	return taPath, rvPath, os.WriteFile(rvPath, []byte(`{"platform":[],"realm":[]}`), 0o600)
}

// config writes the broker's configuration: every plugin binary of
// pluginDir, verifiers whose TEE types clash left out (one verifier per
// TEE; those declaring fewer TEEs win, then by name).
func (s *spawned) config(ctx context.Context, pluginDir, addr, repo, policy string) (string, error) {
	ents, err := os.ReadDir(pluginDir)
	if err != nil {
		return "", err
	}
	type verifierBin struct {
		name string
		tees []string
	}
	var verifiers []verifierBin
	var resources []string
	token := ""
	for _, e := range ents {
		kindName, ok := strings.CutPrefix(e.Name(), "kbs-plugin-")
		if !ok {
			continue
		}
		kind, name, ok := strings.Cut(kindName, "-")
		if !ok {
			continue
		}
		switch kind {
		case "verifier":
			tees, err := teeTypes(ctx, pluginDir, e.Name())
			if err != nil {
				return "", err
			}
			verifiers = append(verifiers, verifierBin{name, tees})
		case "resource":
			resources = append(resources, name)
		case "token":
			if token == "" || name == "ear" {
				token = name
			}
		}
	}
	sort.SliceStable(verifiers, func(i, j int) bool {
		if len(verifiers[i].tees) != len(verifiers[j].tees) {
			return len(verifiers[i].tees) < len(verifiers[j].tees)
		}
		return verifiers[i].name < verifiers[j].name
	})
	s.info.Skipped = map[string]string{}
	claimed := map[string]string{}
	var b strings.Builder
	fmt.Fprintf(&b, "[http_server]\nsockets = [%q]\ninsecure_http = true\n\n", addr)
	// The bench measures the broker, not its deliberate limit on new
	// handshakes (session.auth_rate), which would cap the handshake rate.
	// Nor the bound on live sessions: a sustained run opens far more
	// handshakes within one session.timeout than a cluster's boot does.
	fmt.Fprintf(&b, "[session]\nauth_rate = 0\nmax_sessions = 1000000\n\n")
	fmt.Fprintf(&b, "[plugins]\ndir = %q\n\n", pluginDir)
	section := func(kind, name string, routes []string, settings map[string]any) error {
		if kind == "token" {
			fmt.Fprintf(&b, "[plugins.token]\nname = %q\n", name)
		} else {
			fmt.Fprintf(&b, "[[plugins.%s]]\nname = %q\n", kind, name)
		}
		if len(routes) > 0 {
			r, _ := json.Marshal(routes)
			fmt.Fprintf(&b, "routes = %s\n", r)
		}
		if settings != nil {
			fmt.Fprintf(&b, "[plugins.%s.config]\n", kind)
			keys := make([]string, 0, len(settings))
			for k := range settings {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				v, err := tomlValue(settings[k])
				if err != nil {
					return err
				}
				fmt.Fprintf(&b, "%s = %s\n", k, v)
			}
		}
		b.WriteString("\n")
		s.info.Plugins = append(s.info.Plugins, kind+"/"+name)
		return nil
	}
	for _, v := range verifiers {
		var clash []string
		for _, t := range v.tees {
			if other, ok := claimed[t]; ok {
				clash = append(clash, t+" (verifier/"+other+")")
			}
		}
		if len(clash) > 0 {
			s.info.Skipped["verifier/"+v.name] = "TEE types already handled: " + strings.Join(clash, ", ")
			continue
		}
		for _, t := range v.tees {
			claimed[t] = v.name
		}
		settings, _, err := pluginSettings("verifier", v.name, s.dir)
		if err != nil {
			return "", err
		}
		if err := section("verifier", v.name, nil, settings); err != nil {
			return "", err
		}
	}
	slices.Sort(resources)
	for _, name := range resources {
		settings, routes, err := pluginSettings("resource", name, s.dir)
		if err != nil {
			return "", err
		}
		if name == "fs" {
			settings, routes = map[string]any{"dir": repo}, []string{"*"}
		}
		if err := section("resource", name, routes, settings); err != nil {
			return "", err
		}
	}
	if token != "" {
		if err := section("token", token, nil, nil); err != nil {
			return "", err
		}
	}
	fmt.Fprintf(&b, "[policy]\nresource_policy_file = %q\n\n[storage]\ndir = %q\n\n[log]\nlevel = \"warn\"\n",
		policy, filepath.Join(s.dir, "state"))
	if s.pprof != "" {
		fmt.Fprintf(&b, "\n[debug]\npprof_listen = %q\n", s.pprof)
	}
	return b.String(), nil
}

// tomlValue writes a setting as TOML (strings, booleans, tables of them).
func tomlValue(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x), nil
	case bool:
		return strconv.FormatBool(x), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			s, err := tomlValue(x[k])
			if err != nil {
				return "", err
			}
			parts = append(parts, k+" = "+s)
		}
		return "{ " + strings.Join(parts, ", ") + " }", nil
	}
	return "", fmt.Errorf("setting of type %T", v)
}

// teeTypes starts a verifier binary to read the TEE types it declares.
func teeTypes(ctx context.Context, dir, file string) ([]string, error) {
	sum, err := manifestSum(dir, file)
	if err != nil {
		return nil, err
	}
	c, err := pluginclient.Start(ctx, pluginclient.Config{Path: filepath.Join(dir, file), SHA256: sum, StartTimeout: 20 * time.Second})
	if err != nil {
		return nil, err
	}
	defer c.Kill()
	return c.Metadata().TEETypes, nil
}

// sessionsHeld reads the broker's kbs_sessions gauge from /metrics.
func sessionsHeld(ctx context.Context, base string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/metrics: %s", resp.Status)
	}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "kbs_sessions "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("/metrics has no kbs_sessions")
}
