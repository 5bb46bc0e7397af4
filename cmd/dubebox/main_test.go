package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/config"
	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/servicetest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// start runs the service in-process on a free port and returns its base URL.
func start(t *testing.T, env map[string]string) (string, *servicetest.SyncBuffer, func() error) {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	env["HTTP_ADDR"] = "127.0.0.1:0"
	if env["REDIS_ADDR"] == "" && env["REDIS_CLUSTER_ADDRS"] == "" && env["REDIS_SENTINEL_ADDRS"] == "" {
		env["REDIS_ADDR"] = redistest.Addr(t)
	}
	if env["KEY_PREFIX"] == "" {
		env["KEY_PREFIX"] = redistest.Prefix(t)
	}
	ctx, cancel := context.WithCancel(t.Context())
	out := &servicetest.SyncBuffer{}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, out, ready) }()
	select {
	case addr := <-ready:
		stop := func() error {
			cancel()
			return <-done
		}
		t.Cleanup(func() { cancel() })
		return "http://" + addr, out, stop
	case err := <-done:
		cancel()
		t.Fatalf("run ended before listening: %v\n%s", err, out)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("not listening after 10s\n%s", out)
	}
	return "", nil, nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	return send(t, http.MethodGet, url, "")
}

func TestRunServesAndStops(t *testing.T) {
	t.Parallel()
	base, out, stop := start(t, map[string]string{"API_TOKEN": "tok-abc-123-4567890", "REDIS_PASSWORD": ""})
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("healthz: %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("readyz: %d %s", code, body)
	}
	if err := healthcheck(t.Context(), strings.TrimPrefix(base, "http://")); err != nil {
		t.Errorf("healthcheck subcommand: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("run returned %v after its context ended", err)
	}
	logs := out.String()
	for _, want := range []string{`"msg":"starting dubebox"`, `"msg":"listening"`, `"msg":"shutting down"`, `"msg":"stopped"`, `"API_TOKEN":"********"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "tok-abc-123-4567890") {
		t.Errorf("the token is in the log")
	}
}

// TestMetricsPassPromtool lints the whole /metrics output with Prometheus's
// own checker.
func TestMetricsPassPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Prometheus (Debian: apt-get install -y prometheus), as .ci/run does")
	}
	base, _, _ := start(t, nil)
	get(t, base+"/v1/kv/k")
	get(t, base+"/set/k/v")
	_, body := get(t, base+"/metrics")
	cmd := exec.CommandContext(t.Context(), promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, name := range []string{
		"dubebox_http_requests_total", "dubebox_http_request_duration_seconds_bucket",
		"dubebox_http_requests_in_flight", "dubebox_cache_lookups_total", "dubebox_redis_commands_total",
		"dubebox_redis_command_duration_seconds_bucket", "dubebox_redis_pool_hits_total",
		"dubebox_redis_pool_misses_total", "dubebox_redis_pool_timeouts_total",
		"dubebox_redis_pool_idle_connections", "dubebox_redis_pool_total_connections",
		"dubebox_build_info", "go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// run applies the service's default GOGC; the runtime's own is 100. No
	// test in this package sets GOGC, so every run in the process agrees.
	if want := fmt.Sprintf("\ngo_gc_gogc_percent %d\n", config.DefaultGCPercent); !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %q: GOGC was not applied", strings.TrimSpace(want))
	}
}

// TestNearCacheStartupLine checks that the start-up log says whether the
// near cache (on by default) is on, and why it is off where it is.
func TestNearCacheStartupLine(t *testing.T) {
	t.Parallel()
	nowhere := servicetest.FreeAddr(t)
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"default, one server", nil, `"msg":"near cache on","entries":10000`},
		{"turned off", map[string]string{"NEAR_CACHE_SIZE": "0"}, `"msg":"near cache off: NEAR_CACHE_SIZE is 0"`},
		{"cluster", map[string]string{"REDIS_CLUSTER_ADDRS": nowhere, "REDIS_TIMEOUT": "200ms"},
			`"msg":"near cache off: it needs one Redis server (REDIS_ADDR)`},
		{"sentinel", map[string]string{"REDIS_SENTINEL_ADDRS": nowhere, "REDIS_SENTINEL_MASTER": "m", "REDIS_TIMEOUT": "200ms"},
			`"msg":"near cache off: it needs one Redis server (REDIS_ADDR)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, out, stop := start(t, tc.env)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("the start-up log lacks %s:\n%s", tc.want, out)
			}
		})
	}
}

func TestRedisDownAtStart(t *testing.T) {
	t.Parallel()
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	base, out, _ := start(t, map[string]string{"REDIS_ADDR": addr, "REDIS_TIMEOUT": "200ms"})
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "unavailable") {
		t.Errorf("readyz with Redis down: %d %s", code, body)
	}
	if code, _ := get(t, base+"/v1/kv/k"); code != 503 {
		t.Errorf("GET with Redis down: %d", code)
	}
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, "\ndubebox_ready 0\n") {
		t.Errorf("/metrics lacks dubebox_ready 0 with Redis down")
	}
	if !strings.Contains(out.String(), "redis is not answering yet") {
		t.Errorf("no start-up warning:\n%s", out)
	}
	srv := &redistest.Server{Addr: addr, Port: port, Dir: t.TempDir()}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	// Readiness reuses a check for a second.
	deadline := time.Now().Add(3 * time.Second)
	code, body := get(t, base+"/readyz")
	for ; code != 200 && time.Now().Before(deadline); code, body = get(t, base+"/readyz") {
		time.Sleep(100 * time.Millisecond)
	}
	if code != 200 {
		t.Errorf("readyz once Redis is up: %d %s", code, body)
	}
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, "\ndubebox_ready 1\n") {
		t.Errorf("/metrics lacks dubebox_ready 1 once Redis is up")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	err := run(t.Context(), nil, func(k string) string {
		if k == "REDIS_TIMEOUT" {
			return "fast"
		}
		return ""
	}, io.Discard, nil)
	if !config.IsConfigError(err) || !strings.HasPrefix(err.Error(), "REDIS_TIMEOUT") {
		t.Errorf("got %v, want a config error naming REDIS_TIMEOUT", err)
	}
	err = run(t.Context(), []string{"serve"}, func(string) string { return "" }, io.Discard, nil)
	if !config.IsConfigError(err) {
		t.Errorf("an unknown argument: got %v, want a usage error", err)
	}
}

// TestHelp: --help (and -h, help) prints the usage and every variable with
// its default, and succeeds without reading the environment.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--help", "-h", "help"} {
		var out bytes.Buffer
		err := run(t.Context(), []string{arg}, func(string) string { return "not valid anywhere" }, &out, nil)
		if err != nil {
			t.Errorf("dubebox %s: %v", arg, err)
		}
		for _, want := range []string{"Usage:", "dubebox healthcheck", "HTTP_ADDR=:5000", "API_TOKEN  (secret)", "CORS_ALLOWED_ORIGINS", "docs/reference.md"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("dubebox %s lacks %q:\n%s", arg, want, out.String())
			}
		}
	}
}

// TestConnectionLimit holds MAX_CONNECTIONS connections open without a
// request, as slow clients do: the next client waits (its connection is
// not taken up) until one of them closes, then is served; the server
// never holds more than MAX_CONNECTIONS connections' headers in memory.
func TestConnectionLimit(t *testing.T) {
	t.Parallel()
	base, _, _ := start(t, map[string]string{"MAX_CONNECTIONS": "2"})
	addr := strings.TrimPrefix(base, "http://")
	var held []net.Conn
	for range 2 {
		var d net.Dialer
		c, err := d.DialContext(t.Context(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// Half a request line, so that the server is waiting on it.
		if _, err := c.Write([]byte("GET /healthz HT")); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	time.Sleep(100 * time.Millisecond)
	quick := &http.Client{Timeout: 300 * time.Millisecond}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/healthz", nil)
	if resp, err := quick.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("a third connection was served (%d) while MAX_CONNECTIONS=2 were held", resp.StatusCode)
	}
	_ = held[0].Close()
	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("after one held connection closed: %d %s", code, body)
	}
	_ = held[1].Close()
}

// TestServerRefusalsAreJSON sends what net/http refuses before any handler
// runs: each answer is the API's JSON error with a request id, the one log
// line names the id, and the refusal is counted.
func TestServerRefusalsAreJSON(t *testing.T) {
	t.Parallel()
	base, logs, _ := start(t, map[string]string{"MAX_HEADER_BYTES": "1024"})
	addr := strings.TrimPrefix(base, "http://")
	for _, tc := range []struct {
		name, request string
		status        int
		code          string
	}{
		{"malformed percent-encoding", "GET /v1/kv/ct-%ZZ HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "invalid_argument"},
		{"no Host", "GET /healthz HTTP/1.1\r\n\r\n", 400, "invalid_argument"},
		{"headers over the server's cap", "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + strings.Repeat("b", 40<<10) + "\r\n\r\n", 431, "headers_too_large"},
	} {
		var d net.Dialer
		c, err := d.DialContext(t.Context(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(tc.request)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		_ = c.Close()
		var e struct {
			Error     struct{ Code, Message string } `json:"error"`
			RequestID string                         `json:"request_id"`
		}
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" ||
			json.Unmarshal(b, &e) != nil || e.Error.Code != tc.code || e.RequestID == "" || e.RequestID != resp.Header.Get("X-Request-Id") {
			t.Errorf("%s: %d %s %s, want %d %s in the JSON error shape with the request id", tc.name, resp.StatusCode, resp.Header.Get("Content-Type"), b, tc.status, tc.code)
			continue
		}
		// Info lines reach the log within a second (the logger's buffer).
		n := 0
		for deadline := time.Now().Add(3 * time.Second); n == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			n = strings.Count(logs.String(), `"request_id":"`+e.RequestID+`"`)
		}
		if n != 1 {
			t.Errorf("%s: %d log lines name request %s, want 1", tc.name, n, e.RequestID)
		}
	}
	_, metrics := get(t, base+"/metrics")
	if !strings.Contains(metrics, `dubebox_http_requests_total{code="400",method="other",route="unmatched"} 2`) {
		t.Errorf("the refusals are not counted as 400s of the unmatched route:\n%s", grepLines(metrics, "dubebox_http_requests_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestShutdownEndsStreams: when the service is told to stop (SIGTERM ends
// run's context), every open stream gets its end event and the service
// returns well within SHUTDOWN_TIMEOUT, with no error: streams do not
// hold a shutdown up.
func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	base, _, stop := start(t, map[string]string{"SHUTDOWN_TIMEOUT": "5s"})
	var streams []*bufio.Reader
	for _, path := range []string{"/v1/channels/bye/events", "/v1/kv/bye/events", "/v1/hash/bye/events"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		streams = append(streams, bufio.NewReader(resp.Body))
	}
	began := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("run returned %v with streams open", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("shutdown with streams open took %v", took)
	}
	for i, r := range streams {
		rest, _ := io.ReadAll(r)
		if !strings.Contains(string(rest), "event: end\ndata: {\"reason\":\"shutdown\"}") {
			t.Errorf("stream %d ended without its end event: %q", i, rest)
		}
	}
}
