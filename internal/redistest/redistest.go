// Package redistest gives tests a real Redis: REDIS_ADDR when it is set,
// otherwise a private redis-server started from PATH on a free port. Tests
// never share keys: each gets a prefix of its own.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// InstallHint says how to get what the tests need.
const InstallHint = "install Redis (Debian: apt-get install -y redis-server) so that redis-server is on PATH, or set REDIS_ADDR to a Redis the tests may write to"

// Server is a redis-server process owned by a test or a test package.
type Server struct {
	Addr string
	Port int
	Dir  string
	args []string
	cmd  *exec.Cmd
	// conf, when set, is a config file given before the arguments, and
	// sentinel runs the server as a Sentinel (redis-server conf --sentinel).
	conf     string
	sentinel bool
}

// StartServer starts redis-server on a free port of 127.0.0.1 with the
// extra configuration args (such as "--maxmemory", "1mb") and waits until it
// answers PING. dir holds its files.
func StartServer(dir string, args ...string) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("redis-server not found: %s", InstallHint)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, Dir: dir, args: args}
	return s, s.Start()
}

// Pid is the server's process id, for a caller that reads its CPU time.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Start (re)starts the server on its port, for tests that kill it.
func (s *Server) Start() error {
	base := []string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--daemonize", "no", "--protected-mode", "no",
		"--logfile", "redis.log",
	}
	if s.sentinel {
		// A Sentinel takes its settings from the file it rewrites.
		base = []string{s.conf, "--sentinel"}
	} else if s.conf != "" {
		base = append([]string{s.conf}, base...)
	}
	s.cmd = exec.CommandContext(context.Background(), "redis-server", append(base, s.args...)...)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.password(), MaxRetries: -1, DisableIdentity: true})
	defer func() { _ = rdb.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rdb.Ping(context.Background()).Err()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.Kill()
			log, _ := os.ReadFile(s.Dir + "/redis.log")
			return fmt.Errorf("redis-server on %s did not answer PING within 10s: %w\n%s", s.Addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) password() string {
	for i, a := range s.args {
		if a == "--requirepass" && i+1 < len(s.args) {
			return s.args[i+1]
		}
	}
	return ""
}

// Kill ends the server at once (SIGKILL) and waits for it.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Pause stops the process (SIGSTOP) without closing its connections.
func (s *Server) Pause() error { return s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (s *Server) Resume() error { return s.cmd.Process.Signal(syscall.SIGCONT) }

// FreePort asks the kernel for a port no one is listening on.
func FreePort() (int, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start gives a test a redis-server of its own, killed when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	s, err := StartServer(t.TempDir(), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

// packageAddr is the Redis of the running test package, set by Main.
var packageAddr string

// Main runs a package's tests against REDIS_ADDR, or against a redis-server
// it starts for the package and stops afterwards. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
func Main(m *testing.M) int {
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		packageAddr = addr
		defer runCleanups()
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "redistest:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	s, err := StartServer(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "redistest:", err)
		return 1
	}
	defer s.Kill()
	defer runCleanups()
	packageAddr = s.Addr
	return m.Run()
}

// Addr is the package's Redis address; it fails the test when TestMain did
// not call Main.
func Addr(t testing.TB) string {
	t.Helper()
	if packageAddr == "" {
		t.Fatal("redistest: call redistest.Main from TestMain")
	}
	return packageAddr
}

// Client returns a client of the package's Redis and a key prefix no other
// test uses; the keys under it are deleted when the test ends.
func Client(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{Addr(t)}, DisableIdentity: true})
	prefix := Prefix(t)
	t.Cleanup(func() {
		DeletePrefix(t, rdb, prefix)
		_ = rdb.Close()
	})
	return rdb, prefix
}

// Prefix returns a key prefix unique to this test run.
func Prefix(t testing.TB) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	return "test:" + name + ":" + hex.EncodeToString(b[:]) + ":"
}

// Keys returns every key under prefix with its type, for tests that check
// what a request changed. On a Cluster it scans every primary.
func Keys(t testing.TB, rdb redis.UniversalClient, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	out := map[string]string{}
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			typ, err := c.Type(ctx, iter.Val()).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return fmt.Errorf("TYPE %s: %w", iter.Val(), err)
			}
			mu.Lock()
			out[iter.Val()] = typ
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, rdb)
	}
	if err != nil {
		t.Fatalf("SCAN %s*: %v", prefix, err)
	}
	return out
}

// DeletePrefix deletes every key under prefix, one key at a time.
func DeletePrefix(t testing.TB, rdb redis.UniversalClient, prefix string) {
	t.Helper()
	ctx := context.Background()
	for k := range Keys(t, rdb, prefix) {
		_ = rdb.Del(ctx, k).Err()
	}
}
