// Package e2e tests the broker end to end: the real kbs-host daemon, the
// real plugin binaries, and guests speaking HTTP.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binaries holds the paths of the built programs.
type binaries struct {
	host, client, pluginDir string
}

var (
	buildOnce sync.Once
	built     binaries
	buildErr  error
)

// repoRoot is the directory holding go.work.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the working directory")
		}
		dir = parent
	}
}

// bins returns the binaries: those of `make build` when KBS_BIN_DIR names
// them, else built once for this test binary into a temporary directory.
func bins(t testing.TB) binaries {
	t.Helper()
	buildOnce.Do(func() {
		if d := os.Getenv("KBS_BIN_DIR"); d != "" {
			built = binaries{host: filepath.Join(d, "kbs-host"), client: filepath.Join(d, "kbs-client"), pluginDir: filepath.Join(d, "plugins")}
			return
		}
		root := repoRoot(t)
		out, err := os.MkdirTemp("", "kbs-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		built = binaries{host: filepath.Join(out, "kbs-host"), client: filepath.Join(out, "kbs-client"), pluginDir: filepath.Join(out, "plugins")}
		targets := map[string]string{
			built.host:   "./host/cmd/kbs-host",
			built.client: "./host/cmd/kbs-client",
		}
		mains, _ := filepath.Glob(filepath.Join(root, "plugins", "*", "*", "cmd", "kbs-plugin-*", "main.go"))
		for _, m := range mains {
			rel, _ := filepath.Rel(root, filepath.Dir(m))
			targets[filepath.Join(built.pluginDir, filepath.Base(rel))] = "./" + filepath.ToSlash(rel)
		}
		for dst, pkg := range targets {
			cmd := exec.Command("go", "build", "-o", dst, pkg)
			cmd.Dir = root
			if b, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
		if b, err := exec.Command(built.host, "plugins", "manifest", built.pluginDir).CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("writing the manifest: %v\n%s", err, b)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// broker is one running kbs-host.
type broker struct {
	URL    string
	DevDir string
	cmd    *exec.Cmd
	logs   *syncBuffer
}

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

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startDev starts `kbs-host --dev` on a fresh port and dev dir (or the
// given one) and waits until it is ready.
func startDev(t testing.TB, devDir string, extraArgs ...string) *broker {
	t.Helper()
	return startDevEnv(t, devDir, nil, extraArgs...)
}

// startDevEnv is startDev with KBS_* overrides in env.
func startDevEnv(t testing.TB, devDir string, env []string, extraArgs ...string) *broker {
	t.Helper()
	b := bins(t)
	if devDir == "" {
		devDir = t.TempDir()
	}
	addr := freeAddr(t)
	args := append([]string{"--dev", "--dev-dir", devDir, "--listen", addr, "--plugin-dir", b.pluginDir}, extraArgs...)
	return start(t, b.host, args, "http://"+addr, devDir, env)
}

// startConfig starts kbs-host with a configuration file.
func startConfig(t testing.TB, configPath, url string, env []string) *broker {
	t.Helper()
	return start(t, bins(t).host, []string{"--config", configPath}, url, "", env)
}

func start(t testing.TB, bin string, args []string, url, devDir string, env []string) *broker {
	t.Helper()
	br := &broker{URL: url, DevDir: devDir, logs: &syncBuffer{}}
	br.cmd = exec.Command(bin, args...)
	br.cmd.Stdout = br.logs
	br.cmd.Stderr = br.logs
	br.cmd.Env = append(os.Environ(), env...)
	br.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := br.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.stop(t) })
	if err := br.waitReady(20 * time.Second); err != nil {
		t.Fatalf("kbs-host did not become ready: %v\nlogs:\n%s", err, br.logs.String())
	}
	return br
}

func (br *broker) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if br.cmd.ProcessState != nil {
			return fmt.Errorf("exited: %v", br.cmd.ProcessState)
		}
		resp, err := http.Get(br.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("readyz %d", resp.StatusCode)
		} else {
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

// stop ends the broker with SIGTERM and checks that no process of its
// group (the plugins) is left behind.
func (br *broker) stop(t testing.TB) {
	if br.cmd.Process == nil || br.cmd.ProcessState != nil {
		return
	}
	_ = br.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- br.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-br.cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Errorf("kbs-host did not stop within 15 s of SIGTERM\nlogs:\n%s", br.logs.String())
	}
	// The plugins run in the host's process group: none may outlive it.
	if err := syscall.Kill(-br.cmd.Process.Pid, 0); err == nil {
		time.Sleep(500 * time.Millisecond)
		if err := syscall.Kill(-br.cmd.Process.Pid, 0); err == nil {
			out, _ := exec.Command("ps", "-o", "pid,ppid,stat,args", "-g", strconv.Itoa(br.cmd.Process.Pid)).CombinedOutput()
			t.Errorf("a process of kbs-host's group (%d) outlived it:\n%s", br.cmd.Process.Pid, out)
			_ = syscall.Kill(-br.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
}

// kill ends the broker with SIGKILL, as a crash would.
func (br *broker) kill() {
	_ = syscall.Kill(-br.cmd.Process.Pid, syscall.SIGKILL)
	_ = br.cmd.Wait()
}

// client runs kbs-client with args and returns its stdout.
func runClient(t testing.TB, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), bins(t).client, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), strings.TrimSpace(errb.String()), err
}

// writeResource puts a file into the dev repository.
func writeResource(t testing.TB, devDir, path string, data []byte) {
	t.Helper()
	full := filepath.Join(devDir, "repository", filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
