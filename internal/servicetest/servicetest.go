// Package servicetest holds what the end-to-end, fault and benchmark suites
// share: finding the repository, building its binaries, requiring a tool,
// and waiting for a server to answer.
package servicetest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Root is the repository's top folder.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Build compiles the repository's commands (such as "./cmd/dubebox") into
// dir, statically, without paths and without Gin's MessagePack support, as
// the image does.
func Build(dir string, pkgs ...string) error {
	args := append([]string{"build", "-trimpath", "-tags", "nomsgpack", "-o", dir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(context.Background(), "go", args...)
	cmd.Dir = Root()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %v: %w\n%s", pkgs, err, out)
	}
	return nil
}

// Need returns the path of a tool the test cannot run without, or fails
// the test with how to install it.
func Need(t testing.TB, bin, hint string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("%s not found: %s", bin, hint)
	}
	return p
}

// WaitHTTP polls url until it answers 200, for at most within.
func WaitHTTP(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 within %v: %w", url, within, err)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// Process is a program a test started, its output going to Log.
type Process struct {
	Name   string
	Cmd    *exec.Cmd
	Log    string
	exited chan struct{}
	err    error
}

// Exited is closed when the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Wait waits for the process to end and returns its exit status.
func (p *Process) Wait() error {
	<-p.exited
	return p.err
}

// Spawn starts bin with args and env, its output to NAME.log in a folder
// of the test's. The process is killed when the test ends, and the tail of
// its log is shown when the test failed.
func Spawn(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(context.Background(), bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, Log: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = p.Wait() // killed: its status says nothing
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- tail of %s's log:\n%s", name, b)
		}
	})
	return p
}

// FreeAddr is 127.0.0.1 and a port no one listens on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// StartDubebox runs the built binary on a free port against redisAddr with
// the extra env, and waits until it answers /healthz. It returns the
// process and the base URL.
func StartDubebox(t testing.TB, bin, redisAddr string, env ...string) (*Process, string) {
	t.Helper()
	return StartHTTP(t, "dubebox", bin, redisAddr, env...)
}

// StartHTTP runs bin, a server that reads HTTP_ADDR and REDIS_ADDR as
// DubeBox does, under name on a free port, and waits until it answers
// /healthz. It returns the process and the base URL.
func StartHTTP(t testing.TB, name, bin, redisAddr string, env ...string) (*Process, string) {
	t.Helper()
	addr := FreeAddr(t)
	p := Spawn(t, name, append([]string{"HTTP_ADDR=" + addr, "REDIS_ADDR=" + redisAddr}, env...), bin)
	base := "http://" + addr
	if err := WaitHTTP(base+"/healthz", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return p, base
}
