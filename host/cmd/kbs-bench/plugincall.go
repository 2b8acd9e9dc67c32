package main

import (
	"bufio"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/pluginclient"
	"github.com/gokbs/kbs/sdk/verifier"
)

// PluginCall compares one verifier call made in this process with the same
// call through a plugin process, as the host makes it (go-plugin, gRPC,
// AutoMTLS over a unix socket, a deadline and a request ID per call).
type PluginCall struct {
	Plugin string `json:"plugin"`
	Calls  int    `json:"calls"`
	// Latencies in µs.
	InProcess     Latency `json:"in_process_us"`
	ThroughPlugin Latency `json:"through_plugin_us"`
	// AddedP50 is the median through the plugin minus the median in
	// process: what the process boundary costs one call.
	AddedP50 float64 `json:"added_p50_us"`
	// CPU per call, in µs, of this process (the host side) and of the
	// plugin process: what the boundary costs when the machine is busy.
	HostCPU   float64 `json:"host_cpu_us_per_call"`
	PluginCPU float64 `json:"plugin_cpu_us_per_call"`
}

// measurePluginCall starts kbs-plugin-verifier-sample from dir (checked
// against the directory's manifest, as the host does) and times n calls.
func measurePluginCall(ctx context.Context, dir string, n int) (*PluginCall, error) {
	name := "kbs-plugin-verifier-sample"
	path := filepath.Join(dir, name)
	sum, err := manifestSum(dir, name)
	if err != nil {
		return nil, err
	}
	// As the host starts its plugins: GOMAXPROCS half its own.
	env := []string{"GOMAXPROCS=" + strconv.Itoa(max(1, runtime.GOMAXPROCS(0)/2))}
	c, err := pluginclient.Start(ctx, pluginclient.Config{Path: path, SHA256: sum, StartTimeout: 20 * time.Second, Env: env})
	if err != nil {
		return nil, err
	}
	defer c.Kill()
	if err := c.Configure(ctx, nil); err != nil {
		return nil, fmt.Errorf("configuring %s: %w", name, err)
	}
	remote := c.Verifier()
	digest := sha512.Sum384([]byte("kbs-bench"))
	req := &verifier.Request{TEE: "sample", ReportData: digest[:], HashAlgorithm: "sha384",
		Evidence: json.RawMessage(`{"svn":"1","report_data":"` + base64.StdEncoding.EncodeToString(digest[:]) + `"}`)}
	// As the host's plugin manager calls: a deadline and a request ID.
	viaPlugin := func() error {
		cctx, cancel := context.WithTimeout(sdk.WithRequestID(ctx, "kbs-bench-0123456789abcdef"), 30*time.Second)
		defer cancel()
		_, err := remote.Verify(cctx, req)
		return err
	}
	direct := func() error {
		cctx, cancel := context.WithTimeout(sdk.WithRequestID(ctx, "kbs-bench-0123456789abcdef"), 30*time.Second)
		defer cancel()
		_, err := sampleVerify(cctx, req)
		return err
	}
	for range 300 { // warm both paths
		if err := viaPlugin(); err != nil {
			return nil, fmt.Errorf("calling %s: %w", name, err)
		}
		_ = direct()
	}
	pc := &PluginCall{Plugin: "verifier/sample", Calls: n}
	ds := make([]time.Duration, n)
	for i := range ds {
		t := time.Now()
		if err := direct(); err != nil {
			return nil, err
		}
		ds[i] = time.Since(t)
	}
	pc.InProcess = inMicros(percentiles(ds))
	host0, plug0 := selfCPU(), procCPU(c.Pid())
	for i := range ds {
		t := time.Now()
		if err := viaPlugin(); err != nil {
			return nil, err
		}
		ds[i] = time.Since(t)
	}
	host1, plug1 := selfCPU(), procCPU(c.Pid())
	pc.ThroughPlugin = inMicros(percentiles(ds))
	pc.AddedP50 = pc.ThroughPlugin.P50 - pc.InProcess.P50
	pc.HostCPU = us(host1-host0) / float64(n)
	pc.PluginCPU = us(plug1-plug0) / float64(n)
	return pc, nil
}

func inMicros(l Latency) Latency {
	return Latency{P50: l.P50 * 1000, P90: l.P90 * 1000, P99: l.P99 * 1000, Max: l.Max * 1000}
}

// manifestSum reads name's SHA-256 from dir/manifest.sha256.
func manifestSum(dir, name string) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, "manifest.sha256"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && strings.TrimPrefix(fields[1], "*") == name {
			return hex.DecodeString(fields[0])
		}
	}
	return nil, fmt.Errorf("%s is not in %s/manifest.sha256", name, dir)
}

// selfCPU is this process's CPU time.
func selfCPU() time.Duration {
	var r syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r)
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// procCPU is a process's CPU time from /proc (in clock ticks of 10 ms).
func procCPU(pid int) time.Duration {
	st, ok := procStat(pid)
	if !ok {
		return 0
	}
	return time.Duration(st.utime+st.stime) * 10 * time.Millisecond
}

type stat struct {
	ppid, utime, stime int
}

func procStat(pid int) (stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return stat{}, false
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return stat{}, false
	}
	var st stat
	st.ppid, _ = strconv.Atoi(f[1])
	st.utime, _ = strconv.Atoi(f[11])
	st.stime, _ = strconv.Atoi(f[12])
	return st, true
}
