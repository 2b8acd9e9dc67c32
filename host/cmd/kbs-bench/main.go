// Command kbs-bench drives a broker on this machine with simulated guests
// over real HTTP and measures it against the floor: the cryptography and
// verification a handshake cannot avoid, done in this process.
//
//	kbs-bench                                start bin/kbs-host with every plugin, measure everything
//	kbs-bench -url http://127.0.0.1:8080 -resource default/key/one   a running broker
//
// Modes: "handshake" (key, auth, attest with sample evidence, resource
// fetch with the session cookie, JWE decryption: a guest's boot) and
// "bearer" (resource fetches with an attestation token). It also times
// one plugin call against the same call in this process. Only loopback
// brokers are driven, and every loop is bounded in count and time.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/gokbs/kbs/host/internal/kbsclient"
)

// Bounds on the flags: the harness must never run away.
const (
	maxConcurrency = 1024
	maxOps         = 1_000_000
	maxDuration    = 10 * time.Minute
	maxRepeat      = 10
	maxPluginCalls = 100_000
	maxFloor       = time.Minute
)

// Targets are the goals; the report says whether each was met.
const (
	targetHandshakeRatio = 0.40
	targetBearerRatio    = 0.50
	targetPluginAddedUS  = 150
	targetRSSMiB         = 300
	targetReadySeconds   = 2
)

// Report is the JSON output.
type Report struct {
	Time       time.Time   `json:"time"`
	GoVersion  string      `json:"go_version"`
	CPUs       int         `json:"cpus"`
	GOMAXPROCS int         `json:"gomaxprocs"`
	LoadAvg    []float64   `json:"load_avg_start"`
	Command    string      `json:"command"`
	URL        string      `json:"url"`
	Broker     *Broker     `json:"broker,omitempty"`
	PluginCall *PluginCall `json:"plugin_call,omitempty"`
	Floor      *Floor      `json:"floor,omitempty"`
	Runs       []*LoadRun  `json:"runs"`
	// Best is, per mode, the run closest to its floor (the quietest
	// moment of a shared machine).
	Best    map[string]*LoadRun `json:"best"`
	Targets []Target            `json:"targets"`
}

// Target is one goal and whether this run met it.
type Target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Goal  string  `json:"goal"`
	Met   bool    `json:"met"`
}

type options struct {
	url, spawn, pluginDir, resource, adminToken, out, profile string
	modes                                                     []string
	concurrency, repeat, pluginCalls                          int
	n                                                         int64
	duration, warmup, floor                                   time.Duration
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "kbs-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "kbs-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("kbs-bench", flag.ContinueOnError)
	exeDir := besideExecutable()
	fs.StringVar(&o.url, "url", "", "a running broker to drive (loopback only); empty: start -spawn")
	fs.StringVar(&o.spawn, "spawn", filepath.Join(exeDir, "kbs-host"), "kbs-host to start with every plugin of -plugin-dir configured, when -url is empty")
	fs.StringVar(&o.pluginDir, "plugin-dir", filepath.Join(exeDir, "plugins"), "plugin directory (for -spawn and the plugin-call measurement)")
	fs.StringVar(&o.resource, "resource", benchResource, "resource the guests fetch (a running broker must hold it, or pass -admin-token)")
	fs.StringVar(&o.adminToken, "admin-token", "", "file with an admin token: store a random -resource first (running broker)")
	modes := fs.String("mode", "handshake,bearer", "modes to run: handshake, bearer")
	fs.IntVar(&o.concurrency, "c", 32, fmt.Sprintf("concurrent simulated guests (at most %d)", maxConcurrency))
	fs.Int64Var(&o.n, "n", 0, fmt.Sprintf("operations per run (at most %d); 0: run for -d", maxOps))
	fs.DurationVar(&o.duration, "d", 10*time.Second, fmt.Sprintf("duration of a run when -n is 0 (at most %s)", maxDuration))
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before each run, not measured")
	fs.IntVar(&o.repeat, "repeat", 1, fmt.Sprintf("runs per mode; the report's best is the fastest (at most %d)", maxRepeat))
	fs.DurationVar(&o.floor, "floor", 3*time.Second, "time to measure each floor; 0 skips the floor")
	fs.IntVar(&o.pluginCalls, "plugin-calls", 5000, "sequential calls timed for the plugin-call cost; 0 skips it")
	fs.StringVar(&o.out, "o", "", "write the report as JSON to this file")
	fs.StringVar(&o.profile, "profile", "", "write CPU profiles of the first run of each mode here: the guests', and the host's when kbs-bench starts it")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, m := range strings.Split(*modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case ModeHandshake, ModeBearer:
			o.modes = append(o.modes, m)
		case "":
		default:
			return nil, fmt.Errorf("-mode %q: want handshake or bearer", m)
		}
	}
	switch {
	case o.concurrency < 1 || o.concurrency > maxConcurrency:
		return nil, fmt.Errorf("-c must be 1..%d", maxConcurrency)
	case o.n < 0 || o.n > maxOps:
		return nil, fmt.Errorf("-n must be 0..%d", maxOps)
	case o.n == 0 && (o.duration <= 0 || o.duration > maxDuration):
		return nil, fmt.Errorf("-d must be positive and at most %s", maxDuration)
	case o.warmup < 0 || o.warmup > time.Minute:
		return nil, errors.New("-warmup must be 0..1m")
	case o.repeat < 1 || o.repeat > maxRepeat:
		return nil, fmt.Errorf("-repeat must be 1..%d", maxRepeat)
	case o.floor < 0 || o.floor > maxFloor:
		return nil, fmt.Errorf("-floor must be 0..%s", maxFloor)
	case o.pluginCalls < 0 || o.pluginCalls > maxPluginCalls:
		return nil, fmt.Errorf("-plugin-calls must be 0..%d", maxPluginCalls)
	}
	if o.url != "" {
		if err := checkLoopback(o.url); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// checkLoopback refuses any broker that is not on this machine's loopback.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("-url %q: want http:// or https://", raw)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-url %q: kbs-bench only drives a broker on the loopback (127.0.0.0/8, ::1, localhost)", raw)
	}
	return nil
}

func besideExecutable() string {
	exe, err := os.Executable()
	if err != nil {
		return "."
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	return filepath.Dir(exe)
}

func run(ctx context.Context, o *options) error {
	rep := &Report{
		Time: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		LoadAvg: loadAvg(), Command: strings.Join(os.Args, " "), Best: map[string]*LoadRun{},
	}
	fmt.Printf("kbs-bench: %d CPUs, GOMAXPROCS %d, %s; load average %v\n", rep.CPUs, rep.GOMAXPROCS, rep.GoVersion, rep.LoadAvg)
	t := &target{url: strings.TrimRight(o.url, "/"), resource: o.resource, tr: newTransport(o.concurrency)}
	// The plugin call first, on a machine the broker does not load yet.
	if o.pluginCalls > 0 {
		pc, err := measurePluginCall(ctx, o.pluginDir, o.pluginCalls)
		if err != nil {
			return fmt.Errorf("plugin call: %w", err)
		}
		rep.PluginCall = pc
		fmt.Printf("plugin call (%s Verify, %d calls): in process p50 %.1f µs, through the plugin p50 %.1f p90 %.1f p99 %.1f µs: adds %.1f µs at the median; CPU per call: host %.0f µs, plugin %.0f µs\n",
			pc.Plugin, pc.Calls, pc.InProcess.P50, pc.ThroughPlugin.P50, pc.ThroughPlugin.P90, pc.ThroughPlugin.P99, pc.AddedP50, pc.HostCPU, pc.PluginCPU)
	}
	// The load needs a broker; the floor and the plugin call do not.
	needBroker := len(o.modes) > 0
	var br *spawned
	if needBroker && o.url == "" {
		var err error
		if br, err = spawnBroker(ctx, o.spawn, o.pluginDir, o.profile != ""); err != nil {
			return err
		}
		defer func() {
			if br != nil {
				br.close()
			}
		}()
		t.url, t.secret, t.resource, t.hostPID = br.url, br.secret, benchResource, br.cmd.Process.Pid
		rep.Broker = &br.info
		fmt.Printf("broker: %s ready in %s with %d plugins (%s); RSS %.0f MiB in %d processes\n",
			o.spawn, secs(br.info.ReadySeconds), len(br.info.Plugins), strings.Join(br.info.Plugins, " "), br.info.IdleRSSMiB, br.info.Processes)
		for p, why := range br.info.Skipped {
			fmt.Printf("        %s left out: %s\n", p, why)
		}
	} else if needBroker && o.adminToken != "" {
		tok, err := os.ReadFile(o.adminToken)
		if err != nil {
			return err
		}
		t.secret = make([]byte, 32)
		_, _ = randRead(t.secret)
		c := kbsclient.New(t.url)
		c.AdminToken = strings.TrimSpace(string(tok))
		if err := c.SetResource(ctx, o.resource, t.secret); err != nil {
			return err
		}
	}
	rep.URL = t.url

	// One handshake: the broker works, the resource is there, and its
	// plaintext and a real token's claims are known.
	var tok string
	if needBroker {
		var err error
		if tok, err = t.probe(ctx); err != nil {
			return fmt.Errorf("first handshake against %s: %w", t.url, err)
		}
	} else {
		t.secret = make([]byte, 32)
	}

	if o.floor > 0 {
		f, err := measureFloor(refreshExp(tokenPayload(tok)), t.secret, o.floor)
		if err != nil {
			return err
		}
		rep.Floor = f
		fmt.Printf("floor (in process, %d CPUs): handshake %.0f/s, bearer %.0f/s; token %d bytes\n",
			runtime.GOMAXPROCS(0), f.Throughput[ModeHandshake], f.Throughput[ModeBearer], f.TokenBytes)
		for _, k := range sortedKeys(f.StepMicros) {
			fmt.Printf("        %-36s %8.1f µs\n", k, f.StepMicros[k])
		}
	}
	info := rep.Broker
	runs := 0
	for _, mode := range o.modes {
		for i := 0; i < o.repeat; i++ {
			// Every run after the first gets a broker of its own, started
			// afresh: a broker keeps its sessions for session.timeout, and
			// runs that inherit them would each measure a bigger heap
			// than the last (and its collector's work).
			if runs++; br != nil && runs > 1 {
				br.close()
				var err error
				if br, err = spawnBroker(ctx, o.spawn, o.pluginDir, o.profile != ""); err != nil {
					return err
				}
				t.url, t.secret, t.hostPID = br.url, br.secret, br.cmd.Process.Pid
				if _, err := t.probe(ctx); err != nil {
					return fmt.Errorf("first handshake against the new broker: %w", err)
				}
			}
			var prof *profiler
			if o.profile != "" && i == 0 {
				if err := os.MkdirAll(o.profile, 0o755); err != nil {
					return err
				}
				prof = &profiler{dir: o.profile}
				if br != nil {
					prof.pprof = br.pprof
				}
			}
			// The floor again, right before the run: a shared machine's
			// load changes by the minute.
			var floorNow float64
			var floorCPU time.Duration
			if rep.Floor != nil {
				var err error
				if floorNow, floorCPU, err = rep.Floor.kit.modeThroughput(mode, o.floor); err != nil {
					return err
				}
			}
			if br != nil {
				br.resetPeak()
			}
			r, err := t.runLoad(ctx, mode, o.concurrency, o.n, o.duration, o.warmup, prof)
			if err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if floorNow > 0 {
				r.FloorThroughput = floorNow
				r.FloorRatio = r.Throughput / floorNow
			}
			if total := r.CPUPerOp["guests"] + r.CPUPerOp["host"] + r.CPUPerOp["plugins"]; br != nil && floorCPU > 0 && total > 0 {
				r.CPURatio = us(floorCPU) / total
			}
			if br != nil {
				r.PeakRSSMiB, r.PeakHostRSSMiB = br.peakRSS()
				if n, err := sessionsHeld(ctx, t.url); err == nil {
					r.Sessions = n
				}
				if r.PeakRSSMiB > info.PeakRSSMiB {
					info.PeakRSSMiB, info.PeakHostRSSMiB, info.PeakSessions = r.PeakRSSMiB, r.PeakHostRSSMiB, r.Sessions
				}
			}
			if r.ErrorKinds["429 TooManyRequests"] > 0 {
				fmt.Println("          (429: the broker's session.auth_rate limits new handshakes; set it to 0 to measure the broker itself)")
			}
			rep.Runs = append(rep.Runs, r)
			if b := rep.Best[mode]; b == nil || r.ratio() > b.ratio() {
				rep.Best[mode] = r
			}
			fmt.Printf("%-9s c=%d: %d ops in %.1fs = %.0f/s; latency ms p50 %.2f p90 %.2f p99 %.2f max %.2f; errors %d %v\n",
				mode, r.Concurrency, r.Ops, r.Seconds, r.Throughput,
				r.LatencyMS.P50, r.LatencyMS.P90, r.LatencyMS.P99, r.LatencyMS.Max, r.Errors, r.ErrorKinds)
			fmt.Printf("          floor now %.0f/s: throughput ratio %.0f%%", r.FloorThroughput, 100*r.FloorRatio)
			if r.CPURatio > 0 {
				fmt.Printf("; CPU per op %.0f µs (floor %.0f µs): CPU ratio %.0f%%", r.CPUPerOp["guests"]+r.CPUPerOp["host"]+r.CPUPerOp["plugins"], us(floorCPU), 100*r.CPURatio)
			}
			fmt.Printf("\n          CPU per op (µs):")
			for _, k := range sortedKeys(r.CPUPerOp) {
				if v := r.CPUPerOp[k]; v >= 1 {
					fmt.Printf(" %s %.0f;", k, v)
				}
			}
			fmt.Printf("; load average %v\n", r.LoadAvg)
			if r.PeakRSSMiB > 0 {
				fmt.Printf("          RSS peak %.0f MiB (host %.0f MiB); %.0f sessions held at the end\n", r.PeakRSSMiB, r.PeakHostRSSMiB, r.Sessions)
			}
		}
	}
	if br != nil {
		fmt.Printf("broker RSS under load: peak %.0f MiB (host %.0f MiB, plugins %.0f MiB) with %.0f sessions held\n",
			info.PeakRSSMiB, info.PeakHostRSSMiB, info.PeakRSSMiB-info.PeakHostRSSMiB, info.PeakSessions)
	}
	rep.Targets = targets(rep)
	fmt.Println("targets:")
	for _, tg := range rep.Targets {
		mark := "met"
		if !tg.Met {
			mark = "MISSED"
		}
		fmt.Printf("        %-42s %10.2f  goal %-10s %s\n", tg.Name, tg.Value, tg.Goal, mark)
	}
	if o.out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.out, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Println("report:", o.out)
	}
	return nil
}

func targets(rep *Report) []Target {
	var out []Target
	add := func(name string, v float64, goal string, met bool) {
		out = append(out, Target{Name: name, Value: v, Goal: goal, Met: met})
	}
	if b := rep.Best[ModeHandshake]; b != nil && b.ratio() > 0 {
		add("handshake throughput / floor"+b.ratioKind(), b.ratio(), ">= 0.40", b.ratio() >= targetHandshakeRatio && b.Errors == 0)
	}
	if b := rep.Best[ModeBearer]; b != nil && b.ratio() > 0 {
		add("bearer throughput / floor"+b.ratioKind(), b.ratio(), ">= 0.50", b.ratio() >= targetBearerRatio && b.Errors == 0)
	}
	if pc := rep.PluginCall; pc != nil {
		add("plugin call added at the median (µs)", pc.AddedP50, "<= 150", pc.AddedP50 <= targetPluginAddedUS)
	}
	if br := rep.Broker; br != nil {
		add("ready with every plugin (s)", br.ReadySeconds, "< 2", br.ReadySeconds < targetReadySeconds)
		if br.PeakRSSMiB > 0 {
			add("host + plugins RSS under load (MiB)", br.PeakRSSMiB, "< 300", br.PeakRSSMiB < targetRSSMiB)
		}
	}
	return out
}

// probe runs one handshake, learns the resource's plaintext when it is
// not known, and returns the token.
func (t *target) probe(ctx context.Context) (string, error) {
	if t.secret != nil {
		return t.handshake(ctx)
	}
	g, err := t.newGuest()
	if err != nil {
		return "", err
	}
	ch, err := g.client.Auth(ctx, "sample")
	if err != nil {
		return "", err
	}
	jwk, _ := g.key.PublicJWKJSON()
	tok, err := g.client.Attest(ctx, ch, jwk, sampleEvidence)
	if err != nil {
		return "", err
	}
	body, err := g.client.GetResource(ctx, t.resource, "")
	if err != nil {
		return "", err
	}
	if t.secret, err = g.key.DecryptJSON(body); err != nil {
		return "", err
	}
	return tok, nil
}

// tokenPayload returns a compact JWS's decoded payload, or nil.
func tokenPayload(tok string) []byte {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	return b
}

func secs(s float64) string { return fmt.Sprintf("%.2fs", s) }

// ratio is the run's ratio to the floor: by CPU time when it is known, as
// that one holds on a machine shared with other work.
func (r *LoadRun) ratio() float64 {
	if r.CPURatio > 0 {
		return r.CPURatio
	}
	return r.FloorRatio
}

func (r *LoadRun) ratioKind() string {
	if r.CPURatio > 0 {
		return " (CPU)"
	}
	return " (wall)"
}
