package plugins

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/resource"
	"github.com/gokbs/kbs/sdk/token"
	"github.com/gokbs/kbs/sdk/verifier"
)

// The real plugins and the test verifier, built once per test binary run
// (building them takes a while on a small machine).
var pluginPackages = map[string]string{
	"kbs-plugin-verifier-sample": "./plugins/verifier/sample/cmd/kbs-plugin-verifier-sample",
	"kbs-plugin-resource-fs":     "./plugins/resource/fs/cmd/kbs-plugin-resource-fs",
	"kbs-plugin-token-ear":       "./plugins/token/ear/cmd/kbs-plugin-token-ear",
	"kbs-plugin-verifier-test":   "./host/internal/plugins/testplugins/cmd/kbs-plugin-verifier-test",
}

var build struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// builtPlugins builds every plugin in pluginPackages with one go build from
// the repository root (go.work resolves the modules) and returns the
// directory that holds them.
func builtPlugins(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		root, err := repoRoot()
		if err != nil {
			build.err = err
			return
		}
		build.dir, build.err = os.MkdirTemp("", "kbs-plugins-*")
		if build.err != nil {
			return
		}
		args := []string{"build", "-o", build.dir + "/"}
		for _, pkg := range pluginPackages {
			args = append(args, pkg)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.dir
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the test's directory")
		}
		dir = parent
	}
}

// install copies the named plugins into a fresh plugin directory and
// writes its manifest.
func install(t testing.TB, names ...string) string {
	t.Helper()
	src := builtPlugins(t)
	dir := t.TempDir()
	for _, n := range names {
		if err := copyFile(filepath.Join(src, n), filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteManifest(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// tamper appends a byte to the binary at path. It writes a new file and
// renames it over the old one, as an attacker would have to: a running
// binary cannot be written to.
func tamper(t testing.TB, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tampered"
	if err := os.WriteFile(tmp, append(data, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer collects the manager's and plugins' logs; they are shown only
// when a test fails.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testOptions(t testing.TB, dir string) Options {
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	return Options{
		Dir:               dir,
		StartTimeout:      20 * time.Second, // a loaded 2-core CI machine
		CallTimeout:       10 * time.Second,
		PingInterval:      50 * time.Millisecond,
		RestartBackoffMin: 500 * time.Millisecond, // long enough to observe the plugin down
		RestartBackoffMax: 2 * time.Second,
		Logger:            hclog.New(&hclog.LoggerOptions{Name: "kbs-host", Output: logs, Level: hclog.Debug}),
	}
}

func startManager(t testing.TB, opts Options, specs ...Spec) *Manager {
	t.Helper()
	m, err := New(context.Background(), opts, specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func pidGone(pid int) bool { return syscall.Kill(pid, 0) == syscall.ESRCH }

func statusOf(m *Manager, kind, name string) PluginStatus {
	for _, s := range m.Status() {
		if s.Kind == kind && s.Name == name {
			return s
		}
	}
	return PluginStatus{}
}

var reportData = bytes.Repeat([]byte{0xab}, 48)

func sampleRequest() *verifier.Request {
	ev := fmt.Sprintf(`{"svn":"1","report_data":%q}`, base64.StdEncoding.EncodeToString(reportData))
	return &verifier.Request{TEE: "sample", Evidence: json.RawMessage(ev), ReportData: reportData, HashAlgorithm: "sha384"}
}

func testRequest(extra string) *verifier.Request {
	ev := fmt.Sprintf(`{"svn":"2","report_data":%q%s}`, base64.StdEncoding.EncodeToString(reportData), extra)
	return &verifier.Request{TEE: "test", Evidence: json.RawMessage(ev), ReportData: reportData, HashAlgorithm: "sha384"}
}

func allSpecs(t *testing.T) (specs []Spec, repo string) {
	repo = t.TempDir()
	must(t, os.MkdirAll(filepath.Join(repo, "default", "key"), 0o700))
	must(t, os.WriteFile(filepath.Join(repo, "default", "key", "one"), []byte("secret one"), 0o600))
	return []Spec{
		{Kind: "verifier", Name: "sample"},
		{Kind: "verifier", Name: "test", Config: json.RawMessage(`{"tag":"configured"}`)},
		{Kind: "resource", Name: "fs", Config: json.RawMessage(fmt.Sprintf(`{"dir":%q}`, repo))},
		{Kind: "token", Name: "ear"},
	}, repo
}

// The issue's end-to-end test: real binaries, a manifest, discovery, start,
// calls of every kind, a SIGKILL, the restart, the next call, shutdown.
func TestRealPluginsSurviveSIGKILL(t *testing.T) {
	dir := install(t, "kbs-plugin-verifier-sample", "kbs-plugin-verifier-test", "kbs-plugin-resource-fs", "kbs-plugin-token-ear")
	specs, _ := allSpecs(t)
	m := startManager(t, testOptions(t, dir), specs...)
	ctx := context.Background()

	if err := m.Ready(); err != nil {
		t.Fatalf("Ready after start: %v", err)
	}
	found, err := Discover(dir)
	must(t, err)
	digests := map[string]string{}
	for _, f := range found {
		digests[f.Kind+"/"+f.Name] = f.SHA256
	}
	for _, s := range m.Status() {
		id := s.Kind + "/" + s.Name
		if s.State != StateRunning || s.PID <= 0 || pidGone(s.PID) || s.Restarts != 0 || s.SDKVersion != sdk.Version {
			t.Errorf("%s: status %+v", id, s)
		}
		if s.SHA256 != digests[id] || s.SHA256 == "" {
			t.Errorf("%s: SHA256 %s, want the manifest's %s", id, s.SHA256, digests[id])
		}
	}
	if st := statusOf(m, "verifier", "sample"); fmt.Sprint(st.TEETypes) != "[sample]" {
		t.Errorf("sample TEE types = %v", st.TEETypes)
	}

	sample, err := m.Verifier("sample")
	must(t, err)
	claims, err := sample.Verify(ctx, sampleRequest())
	must(t, err)
	if claims["svn"] != "1" || claims["launch_digest"] != "abcde" {
		t.Errorf("sample claims = %v", claims)
	}
	bad := sampleRequest()
	bad.ReportData = []byte("other")
	if _, err := sample.Verify(ctx, bad); !errors.Is(err, sdk.ErrBadEvidence) {
		t.Errorf("sample with the wrong report data = %v, want bad evidence", err)
	}

	path := resource.Path{Repo: "default", Type: "key", Tag: "one"}
	fs, err := m.Resource(path)
	must(t, err)
	if data, err := fs.Get(ctx, path); err != nil || string(data) != "secret one" {
		t.Errorf("Get = %q, %v", data, err)
	}
	if _, err := fs.Get(ctx, resource.Path{Repo: "default", Type: "key", Tag: "none"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get of a missing resource = %v, want not found", err)
	}

	issuer, err := m.TokenIssuer()
	must(t, err)
	issued, err := issuer.Issue(ctx, &token.IssueRequest{Submods: map[string]token.Appraisal{
		"cpu0": {Status: "affirming", TrustVector: map[string]int{"executables": 2}, AnnotatedEvidence: map[string]any{"sample": claims}},
	}})
	if err != nil || strings.Count(issued.Token, ".") != 2 {
		t.Fatalf("Issue = %+v, %v", issued, err)
	}
	if jwks, err := issuer.JWKS(ctx); err != nil || !bytes.Contains(jwks, []byte(`"keys"`)) {
		t.Errorf("JWKS = %s, %v", jwks, err)
	}

	// Kill the test verifier while a call is in flight, then call again.
	tv, err := m.Verifier("test")
	must(t, err)
	claims, err = tv.Verify(ctx, testRequest(""))
	must(t, err)
	if claims["tag"] != "configured" {
		t.Errorf("test verifier claims = %v: not configured", claims)
	}
	before := statusOf(m, "verifier", "test")
	inFlight := make(chan error, 1)
	go func() {
		_, err := tv.Verify(ctx, testRequest(`,"sleep":"20s"`))
		inFlight <- err
	}()
	time.Sleep(200 * time.Millisecond) // let the call reach the plugin
	must(t, syscall.Kill(before.PID, syscall.SIGKILL))
	select {
	case err := <-inFlight:
		if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "plugin verifier/test") {
			t.Errorf("call in flight at SIGKILL = %v, want unavailable naming the plugin", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a call in flight when its plugin died did not return")
	}
	if _, err := tv.Verify(ctx, testRequest("")); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("call right after SIGKILL = %v, want unavailable", err)
	}

	var notReady error
	waitFor(t, 5*time.Second, "Ready to report the killed plugin", func() bool { notReady = m.Ready(); return notReady != nil })
	if !strings.Contains(notReady.Error(), "verifier/test (restarting)") || strings.Contains(notReady.Error(), "sample") {
		t.Errorf("Ready = %v, want it to name verifier/test only", notReady)
	}
	if _, err := tv.Verify(ctx, testRequest("")); err == nil || err.Error() != "plugin verifier/test is unavailable (restarting)" {
		t.Errorf("call while restarting = %v", err)
	}
	if _, err := sample.Verify(ctx, sampleRequest()); err != nil {
		t.Errorf("the other plugins must keep working: %v", err)
	}

	waitFor(t, 10*time.Second, "the plugin to be restarted", func() bool { return m.Ready() == nil })
	after := statusOf(m, "verifier", "test")
	if after.PID == before.PID || after.PID <= 0 || after.Restarts != 1 || after.State != StateRunning || after.LastError == "" {
		t.Errorf("after restart: %+v (before: PID %d)", after, before.PID)
	}
	waitFor(t, 5*time.Second, "the killed process to be reaped", func() bool { return pidGone(before.PID) })
	claims, err = tv.Verify(ctx, testRequest(""))
	must(t, err)
	if claims["tag"] != "configured" || claims["pid"] != float64(after.PID) {
		t.Errorf("claims after restart = %v: want the new process (%d), configured again", claims, after.PID)
	}

	// Close leaves nothing behind.
	var pids []int
	for _, s := range m.Status() {
		pids = append(pids, s.PID)
	}
	must(t, m.Close())
	for _, pid := range pids {
		if !pidGone(pid) {
			t.Errorf("plugin process %d is still there after Close", pid)
		}
	}
	if _, err := sample.Verify(ctx, sampleRequest()); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("call after Close = %v, want unavailable", err)
	}
}

func TestPluginExitingMidCall(t *testing.T) {
	dir := install(t, "kbs-plugin-verifier-test")
	m := startManager(t, testOptions(t, dir), Spec{Kind: "verifier", Name: "test"})
	tv, err := m.Verifier("test")
	must(t, err)
	pid := statusOf(m, "verifier", "test").PID

	_, err = tv.Verify(context.Background(), testRequest(`,"exit":3`))
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("call whose plugin exits = %v, want unavailable", err)
	}
	waitFor(t, 10*time.Second, "a new process", func() bool {
		st := statusOf(m, "verifier", "test")
		return st.State == StateRunning && st.PID != pid
	})
	if _, err := tv.Verify(context.Background(), testRequest("")); err != nil {
		t.Fatalf("call after the restart: %v", err)
	}
}

// A plugin that dies while nobody calls it (a resource served from the
// cache, a verifier for a TEE nobody uses) is restarted at once, not at the
// next health check: the ping interval here is an hour.
func TestExitNoticedWithoutCalls(t *testing.T) {
	dir := install(t, "kbs-plugin-verifier-test")
	opts := testOptions(t, dir)
	opts.PingInterval = time.Hour
	opts.RestartBackoffMin = 10 * time.Millisecond
	m := startManager(t, opts, Spec{Kind: "verifier", Name: "test"})
	pid := statusOf(m, "verifier", "test").PID
	killed := time.Now()
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	waitFor(t, 5*time.Second, "a new process without any call or ping", func() bool {
		st := statusOf(m, "verifier", "test")
		return st.State == StateRunning && st.PID != pid
	})
	t.Logf("restarted %s after the SIGKILL", time.Since(killed).Round(time.Millisecond))
	tv, err := m.Verifier("test")
	must(t, err)
	if _, err := tv.Verify(context.Background(), testRequest("")); err != nil {
		t.Fatalf("call after the restart: %v", err)
	}
}

// Plugins run without the host's environment: only what go-plugin itself
// needs for the handshake and mTLS reaches them.
func TestPluginsDoNotInheritHostEnvironment(t *testing.T) {
	t.Setenv("KBS_HOST_ONLY_SECRET", "must not leak")
	dir := install(t, "kbs-plugin-verifier-test")
	m := startManager(t, testOptions(t, dir), Spec{Kind: "verifier", Name: "test"})
	tv, err := m.Verifier("test")
	must(t, err)
	claims, err := tv.Verify(context.Background(), testRequest(""))
	must(t, err)
	names, _ := claims["env"].([]any)
	if len(names) == 0 {
		t.Fatalf("claims carry no environment: %v", claims)
	}
	for _, n := range names {
		name := n.(string)
		if !strings.HasPrefix(name, "PLUGIN_") && name != "KBS_PLUGIN_MAGIC_COOKIE" && name != "GOMAXPROCS" {
			t.Errorf("plugin environment has %s; want only go-plugin's PLUGIN_*, the magic cookie and GOMAXPROCS", name)
		}
	}
}

func TestCallTimeoutCutsOffHungPlugin(t *testing.T) {
	dir := install(t, "kbs-plugin-verifier-test")
	opts := testOptions(t, dir)
	opts.CallTimeout = 300 * time.Millisecond
	m := startManager(t, opts, Spec{Kind: "verifier", Name: "test"})
	tv, err := m.Verifier("test")
	must(t, err)

	start := time.Now()
	_, err = tv.Verify(context.Background(), testRequest(`,"sleep":"20s"`))
	took := time.Since(start)
	if !errors.Is(err, sdk.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung call = %v, want unavailable and deadline exceeded", err)
	}
	if took < opts.CallTimeout || took > 5*time.Second {
		t.Errorf("hung call returned after %s, want about %s", took, opts.CallTimeout)
	}
	// A slow call is not a crash: the plugin keeps running and serving.
	if _, err := tv.Verify(context.Background(), testRequest("")); err != nil {
		t.Fatalf("next call: %v", err)
	}
	if st := statusOf(m, "verifier", "test"); st.Restarts != 0 || st.State != StateRunning {
		t.Errorf("status after a timeout: %+v", st)
	}
	// The caller's own deadline is kept when it is shorter.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := tv.Verify(ctx, testRequest(`,"sleep":"20s"`)); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > opts.CallTimeout {
		t.Errorf("call with a shorter caller deadline = %v after %s", err, time.Since(start))
	}
}

func TestTamperedBinaryIsRefusedAtStart(t *testing.T) {
	dir := install(t, "kbs-plugin-verifier-sample", "kbs-plugin-verifier-test")
	bin := filepath.Join(dir, "kbs-plugin-verifier-test")
	tamper(t, bin)
	_, err := New(context.Background(), testOptions(t, dir), []Spec{{Kind: "verifier", Name: "sample"}, {Kind: "verifier", Name: "test"}})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), bin) || !strings.Contains(err.Error(), "does not match manifest.sha256") {
		t.Fatalf("New with a tampered binary = %v, want a refusal naming %s", err, bin)
	}
}

func TestTamperedBinaryIsRefusedOnRestart(t *testing.T) {
	dir := install(t, "kbs-plugin-verifier-test")
	m := startManager(t, testOptions(t, dir), Spec{Kind: "verifier", Name: "test"})
	bin := filepath.Join(dir, "kbs-plugin-verifier-test")
	tamper(t, bin)
	must(t, syscall.Kill(statusOf(m, "verifier", "test").PID, syscall.SIGKILL))

	waitFor(t, 10*time.Second, "the restart to be refused", func() bool {
		return statusOf(m, "verifier", "test").State == StateFailed
	})
	st := statusOf(m, "verifier", "test")
	if !strings.Contains(st.LastError, bin) || !strings.Contains(st.LastError, "does not match") || st.Restarts != 0 || st.PID != 0 {
		t.Errorf("status = %+v, want failed naming %s", st, bin)
	}
	if err := m.Ready(); err == nil || !strings.Contains(err.Error(), "verifier/test (failed)") {
		t.Errorf("Ready = %v", err)
	}
	tv, err := m.Verifier("test")
	must(t, err)
	if _, err := tv.Verify(context.Background(), testRequest("")); err == nil || err.Error() != "plugin verifier/test is unavailable (failed)" {
		t.Errorf("Verify = %v", err)
	}
	// It stays down: no further attempts.
	time.Sleep(time.Second)
	if st := statusOf(m, "verifier", "test"); st.State != StateFailed || st.PID != 0 {
		t.Errorf("a refused plugin came back: %+v", st)
	}
}

func TestStartErrors(t *testing.T) {
	tests := map[string]struct {
		setup   func(t *testing.T, dir string)
		specs   []Spec
		wantErr string
	}{
		"plugin is not what its file name says": {
			setup: func(t *testing.T, dir string) {
				must(t, copyFile(filepath.Join(builtPlugins(t), "kbs-plugin-verifier-test"), filepath.Join(dir, "kbs-plugin-verifier-other")))
				must(t, WriteManifest(dir))
			},
			specs:   []Spec{{Kind: "verifier", Name: "other"}},
			wantErr: "kbs-plugin-verifier-other says it is verifier/test",
		},
		"kind mismatch": {
			setup: func(t *testing.T, dir string) {
				must(t, copyFile(filepath.Join(builtPlugins(t), "kbs-plugin-verifier-test"), filepath.Join(dir, "kbs-plugin-resource-test")))
				must(t, WriteManifest(dir))
			},
			specs:   []Spec{{Kind: "resource", Name: "test"}},
			wantErr: "kbs-plugin-resource-test says it is verifier/test",
		},
		"bad settings": {
			specs:   []Spec{{Kind: "verifier", Name: "test", Config: json.RawMessage(`{"tga":"x"}`)}},
			wantErr: `plugin verifier/test: configuring: plugin settings: json: unknown field "tga"`,
		},
		"not installed": {
			specs:   []Spec{{Kind: "token", Name: "ear"}},
			wantErr: "kbs-plugin-token-ear: no such file",
		},
		"not executable": {
			setup: func(t *testing.T, dir string) {
				must(t, os.Chmod(filepath.Join(dir, "kbs-plugin-verifier-test"), 0o644))
			},
			specs:   []Spec{{Kind: "verifier", Name: "test"}},
			wantErr: "kbs-plugin-verifier-test: is not executable",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := install(t, "kbs-plugin-verifier-test", "kbs-plugin-verifier-sample")
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			m, err := New(context.Background(), testOptions(t, dir), tc.specs)
			if err == nil {
				m.Close()
				t.Fatalf("New succeeded, want an error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestDiscoverAndProbeRealBinaries(t *testing.T) {
	dir := install(t, "kbs-plugin-verifier-sample", "kbs-plugin-verifier-test", "kbs-plugin-resource-fs")
	must(t, copyFile(filepath.Join(builtPlugins(t), "kbs-plugin-verifier-test"), filepath.Join(dir, "kbs-plugin-verifier-liar")))
	appendManifest(t, dir, "kbs-plugin-verifier-liar", filepath.Join(dir, "kbs-plugin-verifier-liar"))
	tamper(t, filepath.Join(dir, "kbs-plugin-resource-fs"))

	found, err := Discover(dir)
	must(t, err)
	probed := Probe(context.Background(), testOptions(t, dir), found)
	got := map[string]string{}
	for _, p := range probed {
		s := fmt.Sprintf("%s started=%v", p.Status, p.Started)
		if p.Started {
			s += fmt.Sprintf(" %s/%s %s tee=%v", p.Metadata.Kind, p.Metadata.Name, p.Metadata.SDKVersion, p.Metadata.TEETypes)
		}
		if p.Err != nil {
			s += " err"
		}
		got[p.File] = s
	}
	want := map[string]string{
		"kbs-plugin-verifier-sample": "ok started=true verifier/sample " + sdk.Version + " tee=[sample]",
		"kbs-plugin-verifier-test":   "ok started=true verifier/test " + sdk.Version + " tee=[test]",
		"kbs-plugin-verifier-liar":   "ok started=false err",
		"kbs-plugin-resource-fs":     "mismatch started=false",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Probe:\n got %v\nwant %v", got, want)
	}
}
