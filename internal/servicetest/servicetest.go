// Package servicetest holds what the end-to-end, fault and benchmark suites
// share: finding the repository, building its binaries, requiring a tool,
// and waiting for a server to answer.
package servicetest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
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
			t.Logf("--- last warnings and errors of %s's log:\n%s", name, notable(b, 30))
		}
	})
	return p
}

// notable returns the last n lines of a log that are not info or debug
// lines: a failing test's reason is in them, and a tail of access lines
// would push the test's own messages out of what CI keeps.
func notable(log []byte, n int) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if !strings.Contains(l, `"level":"info"`) && !strings.Contains(l, `"level":"debug"`) {
			keep = append(keep, l)
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, "\n")
}

// FreeAddr is 127.0.0.1 and a port no one listens on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// SyncBuffer is a log sink safe to read while a server writes to it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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
	vars := []string{"HTTP_ADDR=" + addr}
	if redisAddr != "" {
		// Empty for a Cluster or Sentinel named in env instead.
		vars = append(vars, "REDIS_ADDR="+redisAddr)
	}
	p := Spawn(t, name, append(vars, env...), bin)
	base := "http://" + addr
	if err := WaitHTTP(base+"/healthz", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return p, base
}

// Write is one request to a write route, for the tests that drive every
// write route: Route is the router's template, Path the request's path for
// key "k" (field "f"), FullStatus what a full Redis (maxmemory reached,
// noeviction) must answer on a key that does not exist yet.
type Write struct {
	Method, Route, Path, Body string
	FullStatus                int
}

// Writes lists every write route. The API's tests fail when the router
// serves a write route this list lacks, so a route added later cannot be
// missed by the tests that use it. DELETE and TTL changes are writes Redis
// still accepts when full (they free memory), so on a missing key they
// answer 404; a publish stores nothing, and Redis takes it when full.
var Writes = []Write{
	{"PUT", "/v1/kv/:key", "/v1/kv/k", `{"value":"v"}`, 507},
	{"DELETE", "/v1/kv/:key", "/v1/kv/k", "", 404},
	{"POST", "/v1/kv/:key/incr", "/v1/kv/k/incr", `{"by":2}`, 507},
	{"PUT", "/v1/kv/:key/ttl", "/v1/kv/k/ttl", `{"ttl_seconds":60}`, 404},
	{"DELETE", "/v1/kv/:key/ttl", "/v1/kv/k/ttl", "", 404},
	{"PUT", "/v1/hash/:key", "/v1/hash/k", `{"fields":{"f":"v"},"ttl_seconds":60}`, 507},
	{"DELETE", "/v1/hash/:key", "/v1/hash/k", "", 404},
	{"PUT", "/v1/hash/:key/:field", "/v1/hash/k/f", `{"value":"v"}`, 507},
	{"DELETE", "/v1/hash/:key/:field", "/v1/hash/k/f", "", 404},
	{"POST", "/v1/hash/:key/:field/incr", "/v1/hash/k/f/incr", "", 507},
	{"GET", "/set/:key/:value", "/set/k/v", "", 507},
	{"DELETE", "/v1/keys/:key", "/v1/keys/k", "", 404},
	{"PUT", "/v1/keys/:key/ttl", "/v1/keys/k/ttl", `{"ttl_seconds":60}`, 404},
	{"DELETE", "/v1/keys/:key/ttl", "/v1/keys/k/ttl", "", 404},
	{"POST", "/v1/list/:key/push", "/v1/list/k/push", `{"values":["v"],"ttl_seconds":60}`, 507},
	{"POST", "/v1/list/:key/pop", "/v1/list/k/pop", "", 404},
	{"POST", "/v1/list/:key/remove", "/v1/list/k/remove", `{"value":"v"}`, 404},
	{"POST", "/v1/list/:key/trim", "/v1/list/k/trim", `{"start":0,"stop":1}`, 404},
	{"DELETE", "/v1/list/:key", "/v1/list/k", "", 404},
	{"POST", "/v1/channels/:channel/messages", "/v1/channels/k/messages", `{"message":"m"}`, 200},
	{"POST", "/v1/tx", "/v1/tx", `{"ops":[{"op":"set","key":"k","value":"v"},{"op":"incr","key":"n"}]}`, 507},
}
