//go:build bench

// Package bench measures DubeBox against Redis's own ceiling on the same
// machine, in one run: `make bench`. It appends its figures to results.md.
package bench

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/servicetest"
	"github.com/redis/go-redis/v9"
)

const (
	conns    = 32
	keys     = 1000
	valueLen = 64
)

// plan is how long and how often the benchmark measures. make bench uses
// the full plan and appends its report to results.md; BENCH_SMOKE=1 (CI)
// runs every step briefly, to prove the harness still works, and writes the
// report to a temporary file instead.
type plan struct {
	runFor   time.Duration // one closed-loop run
	repeats  int           // runs per figure, of which the median is kept
	openLoop time.Duration // the open-loop run
	redisN   int           // requests per redis-benchmark run
	results  string        // where the report is appended
	smoke    bool
}

func newPlan(t *testing.T) plan {
	t.Helper()
	if os.Getenv("BENCH_SMOKE") != "" {
		return plan{runFor: time.Second, repeats: 1, openLoop: 2 * time.Second, redisN: 20000,
			results: filepath.Join(t.TempDir(), "results.md"), smoke: true}
	}
	return plan{runFor: 8 * time.Second, repeats: 3, openLoop: 10 * time.Second, redisN: 300000,
		results: filepath.Join(servicetest.Root(), "bench", "results.md")}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// result is one measurement: throughput and latency quantiles.
type result struct {
	rps, p50, p99 float64 // p50 and p99 in milliseconds
	cpuUS         float64 // the server's CPU time per request, in microseconds
}

func medianResult(rs []result) result {
	var a, b, c, d []float64
	for _, r := range rs {
		a, b, c, d = append(a, r.rps), append(b, r.p50), append(c, r.p99), append(d, r.cpuUS)
	}
	return result{median(a), median(b), median(c), median(d)}
}

// redisBenchmark runs redis-benchmark -c 32 (not pipelined) for one command.
func redisBenchmark(t *testing.T, pl plan, addr, test string) result {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command("redis-benchmark", "-h", host, "-p", port, "-c", strconv.Itoa(conns),
		"-n", strconv.Itoa(pl.redisN), "-d", strconv.Itoa(valueLen), "-r", strconv.Itoa(keys), "-t", test, "--csv").Output()
	if err != nil {
		t.Fatalf("redis-benchmark: %v", err)
	}
	rows, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("redis-benchmark output: %v %q", err, out)
	}
	// "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
	f := func(i int) float64 { v, _ := strconv.ParseFloat(rows[1][i], 64); return v }
	return result{rps: f(1), p50: f(4), p99: f(6)}
}

var wrkLatency = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)$`)
var wrkRate = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)

// wrk runs wrk with 32 keep-alive connections, closed loop, with a Lua
// script that picks the method and the key.
func wrk(t *testing.T, pl plan, base, script string) result {
	t.Helper()
	dir := t.TempDir()
	lua := filepath.Join(dir, "s.lua")
	if err := os.WriteFile(lua, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("wrk", "-t", "2", "-c", strconv.Itoa(conns), "-d", pl.runFor.String(),
		"--latency", "-s", lua, base).CombinedOutput()
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	var r result
	m := wrkRate.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("wrk output: %s", out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, l := range wrkLatency.FindAllStringSubmatch(string(out), -1) {
		v, _ := strconv.ParseFloat(l[2], 64)
		switch l[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if l[1] == "50" {
			r.p50 = v
		} else {
			r.p99 = v
		}
	}
	if strings.Contains(string(out), "Non-2xx") {
		t.Fatalf("wrk saw non-2xx answers:\n%s", out)
	}
	return r
}

const getScript = `
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/v1/kv/bench" .. math.random(0, %d))
end
`

const putScript = `
math.randomseed(os.time())
local body = '{"value":"' .. string.rep("v", %d) .. '"}'
request = function()
  return wrk.format("PUT", "/v1/kv/bench" .. math.random(0, %d), {["Content-Type"]="application/json"}, body)
end
`

// server is the built dubebox under test.
type server struct {
	proc *servicetest.Process
	base string
}

// serverEnv is extra environment for the server under test, from
// BENCH_SERVER_ENV (space-separated, such as "GOMAXPROCS=1 GOGC=200"), so
// that runtime settings can be compared in one harness.
func serverEnv() []string { return strings.Fields(os.Getenv("BENCH_SERVER_ENV")) }

func startServer(t *testing.T, bin, redisAddr string, env []string) *server {
	t.Helper()
	env = append(append([]string{"KEY_PREFIX=dubebox:"}, env...), serverEnv()...)
	p, base := servicetest.StartDubebox(t, bin, redisAddr, env...)
	if err := servicetest.WaitHTTP(base+"/readyz", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return &server{proc: p, base: base}
}

// startBaseline runs bench/baseline in mode (hello, bare or defaults).
func startBaseline(t *testing.T, bin, mode, redisAddr, otlp string) *server {
	t.Helper()
	p, base := servicetest.StartHTTP(t, "baseline-"+mode, bin, redisAddr,
		"BASELINE_MODE="+mode, "OTEL_EXPORTER_OTLP_ENDPOINT="+otlp)
	return &server{proc: p, base: base}
}

func (s *server) stop() {
	_ = s.proc.Cmd.Process.Signal(os.Interrupt)
	_ = s.proc.Wait()
}

// peakRSS reads the process's high-water resident set (VmHWM) in MiB.
func (s *server) peakRSS(t *testing.T) float64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.proc.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// scrape reads /metrics every 5s while the run lasts, as Prometheus would.
func scrape(ctx context.Context, base string) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
			req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}
	}
}

type figures struct {
	get, put result
	rss      float64
}

// cpuTime is the process's user and system CPU time so far, from
// /proc/PID/stat: a measure of cost per request that the machine's other
// load disturbs far less than throughput.
func (s *server) cpuTime(t *testing.T) time.Duration {
	t.Helper()
	return cpuOf(t, s.proc.Cmd.Process.Pid)
}

// cpuOf is process pid's user and system CPU time so far (cpuTime).
func cpuOf(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start after ")".
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration((utime + stime) / ticksPerSecond * float64(time.Second))
}

// wrkServer runs wrk against srv and adds the server's CPU per request.
func wrkServer(t *testing.T, pl plan, srv *server, script string) result {
	t.Helper()
	before := srv.cpuTime(t)
	r := wrk(t, pl, srv.base, script)
	used := srv.cpuTime(t) - before
	r.cpuUS = float64(used.Microseconds()) / (r.rps * pl.runFor.Seconds())
	return r
}

// measurePair measures the servers with telemetry on and off in
// alternation, run by run, so that a change in the machine's other load
// cannot pass for the cost of telemetry. on is scraped while it is measured.
func measurePair(t *testing.T, pl plan, on, off *server) (figures, figures) {
	t.Helper()
	get, put := fmt.Sprintf(getScript, keys-1), fmt.Sprintf(putScript, valueLen, keys-1)
	scraped := func(script string) result {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go scrape(ctx, on.base)
		return wrkServer(t, pl, on, script)
	}
	var onGet, onPut, offGet, offPut []result
	for range pl.repeats {
		onGet = append(onGet, scraped(get))
		offGet = append(offGet, wrkServer(t, pl, off, get))
		onPut = append(onPut, scraped(put))
		offPut = append(offPut, wrkServer(t, pl, off, put))
	}
	// on's peak RSS is read by the caller, after its open-loop run too.
	return figures{get: medianResult(onGet), put: medianResult(onPut)},
		figures{get: medianResult(offGet), put: medianResult(offPut), rss: off.peakRSS(t)}
}

// measure runs the GET (and, when puts, the PUT) runs against a baseline
// server; the report quotes no memory figure for those.
func measure(t *testing.T, pl plan, srv *server, puts bool) figures {
	t.Helper()
	var g, p []result
	for range pl.repeats {
		g = append(g, wrkServer(t, pl, srv, fmt.Sprintf(getScript, keys-1)))
		if puts {
			p = append(p, wrkServer(t, pl, srv, fmt.Sprintf(putScript, valueLen, keys-1)))
		}
	}
	f := figures{get: medianResult(g)}
	if puts {
		f.put = medianResult(p)
	}
	return f
}

// openLoopP99 runs loadgen open-loop GETs at rate over n keys under prefix
// (Zipf-distributed, loadgen's default) and returns the rate reached and
// its p99 (ms).
func openLoopP99(t *testing.T, pl plan, loadgen, base, prefix string, n int, rate float64) (float64, float64) {
	t.Helper()
	js := filepath.Join(t.TempDir(), "ol.json")
	// At most MAX_INFLIGHT_REQUESTS (32 by default) requests in flight: with
	// more, a stall of the shared cores had the service refuse the excess
	// (503 overloaded, as designed) and the run measure refusals rather than
	// latency. Requests due while all 32 wait are sent late, and their
	// latency counts from when they were due.
	out, err := exec.Command(loadgen, "-url", base, "-mode", "get", "-keys", strconv.Itoa(n), "-prefix", prefix,
		"-rate", strconv.FormatFloat(rate, 'f', 0, 64), "-c", "32", "-duration", pl.openLoop.String(), "-report", pl.openLoop.String(), "-json", js).CombinedOutput()
	if err != nil {
		t.Fatalf("loadgen: %v\n%s", err, out)
	}
	var sum struct {
		Throughput float64 `json:"throughput_rps"`
		P99ms      float64 `json:"p99_ms"`
	}
	b, _ := os.ReadFile(js)
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	return sum.Throughput, sum.P99ms
}

func TestBench(t *testing.T) {
	servicetest.Need(t, "redis-benchmark", "install Redis (apt-get install -y redis-server)")
	servicetest.Need(t, "wrk", "install wrk (apt-get install -y wrk)")
	servicetest.Need(t, "webdis", "install Webdis (apt-get install -y webdis)")
	pl := newPlan(t)
	dir := t.TempDir()
	rs, err := redistest.StartServer(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Kill)

	bin := filepath.Join(dir, "dubebox")
	lg := filepath.Join(dir, "loadgen")
	baseline := filepath.Join(dir, "baseline")
	vegeta := filepath.Join(dir, "vegeta")
	if err := servicetest.Build(dir, "./cmd/dubebox", "./cmd/loadgen", "./bench/baseline", "github.com/tsenart/vegeta/v12"); err != nil {
		t.Fatal(err)
	}

	// Existing keys for the GET runs, written straight to Redis.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	value := strings.Repeat("v", valueLen)
	for i := range keys {
		if err := rdb.Set(context.Background(), "dubebox:bench"+strconv.Itoa(i), value, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	_ = rdb.Close()

	var rget, rset []result
	for range pl.repeats {
		rget = append(rget, redisBenchmark(t, pl, rs.Addr, "get"))
		rset = append(rset, redisBenchmark(t, pl, rs.Addr, "set"))
	}
	redisGet, redisSet := medianResult(rget), medianResult(rset)

	// A sink that accepts OTLP/HTTP trace exports and discards them.
	var exports atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		exports.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(sink.Close)

	// What this machine allows: the HTTP stack alone, a bare handler, and
	// the straightforward telemetry at its defaults (bench/baseline).
	var b baselines
	hello := startBaseline(t, baseline, "hello", rs.Addr, sink.URL)
	b.hello = measure(t, pl, hello, false)
	hello.stop()
	bare := startBaseline(t, baseline, "bare", rs.Addr, sink.URL)
	b.bare = measure(t, pl, bare, true)
	b.bareOLRate = b.bare.get.rps / 2
	b.bareOLGot, b.bareOLP99 = openLoopP99(t, pl, lg, bare.base, "bench", keys, b.bareOLRate)
	bare.stop()
	defaults := startBaseline(t, baseline, "defaults", rs.Addr, sink.URL)
	b.defaults = measure(t, pl, defaults, true)
	defaults.stop()

	// The request path itself, every GET a Redis round trip: the near
	// cache (on by default) is measured beside Webdis below.
	exportsBefore := exports.Load() // the defaults baseline exported too
	on := startServer(t, bin, rs.Addr, []string{
		"LOG_LEVEL=info", "OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT=" + sink.URL,
		"OTEL_TRACES_SAMPLER=always_on", "NEAR_CACHE_SIZE=0",
	})
	off := startServer(t, bin, rs.Addr, []string{
		"LOG_LEVEL=warn", "OTEL_TRACES_EXPORTER=none", "OTEL_TRACES_SAMPLER=always_off", "NEAR_CACHE_SIZE=0",
	})
	telOn, telOff := measurePair(t, pl, on, off)
	off.stop()
	olRate := telOn.get.rps / 2
	olGot, olP99 := openLoopP99(t, pl, lg, on.base, "bench", keys, olRate)
	telOn.rss = on.peakRSS(t)
	on.stop()

	exported := exports.Load() - exportsBefore
	streams := measureStreams(t, pl, bin, rs.Addr, sink.URL)
	checkFigures(t, map[string]float64{"stream delivery p50": streams.p50, "stream delivery p99": streams.p99,
		"RSS a stream": streams.perStream()})
	txs := measureTx(t, pl, bin, rs.Addr, sink.URL)
	checkFigures(t, txs.figures())
	fleet := measureFleet(t, pl, bin, rs)
	checkFigures(t, fleet.figures())
	wd := besideWebdis(t, pl, rs, bin, vegeta, baseline, sink.URL)
	checkFigures(t, wd.figures())
	if wd.stale > 0 {
		t.Errorf("%d of %d reads right after the same client's write answered another value through the near cache", wd.stale, wd.pairs)
	}
	checkFigures(t, map[string]float64{
		"redis-benchmark GET": redisGet.rps, "redis-benchmark SET": redisSet.rps,
		"GET on": telOn.get.rps, "PUT on": telOn.put.rps, "GET off": telOff.get.rps, "PUT off": telOff.put.rps,
		"GET on CPU": telOn.get.cpuUS, "GET off CPU": telOff.get.cpuUS,
		"hello": b.hello.get.rps, "bare GET": b.bare.get.rps, "bare PUT": b.bare.put.rps,
		"defaults GET": b.defaults.get.rps, "defaults PUT": b.defaults.put.rps,
		"open loop": olGot, "open-loop p99": olP99, "bare open loop": b.bareOLGot,
		"peak RSS on": telOn.rss, "peak RSS off": telOff.rss,
		"OTLP exports from the server with telemetry on": float64(exported),
	})
	report := renderReport(pl, redisGet, redisSet, telOn, telOff, olRate, olGot, olP99, exported, b) + wd.render() + fleet.render() + streams.render() + txs.render()
	t.Log(report)
	appendResults(t, pl, report)
}

// checkFigures fails on a figure that is not positive: a step that measured
// nothing (or a server that exported no spans with telemetry on) must not
// pass for a result.
func checkFigures(t *testing.T, figs map[string]float64) {
	t.Helper()
	for name, v := range figs {
		if !(v > 0) {
			t.Errorf("%s: got %v, want a measured figure above 0", name, v)
		}
	}
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

// baselines are bench/baseline's figures, measured in the same run.
type baselines struct {
	hello, bare, defaults            figures
	bareOLRate, bareOLGot, bareOLP99 float64
}

func renderReport(pl plan, redisGet, redisSet result, on, off figures, olRate, olGot, olP99 float64, exports int64, bl baselines) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "## %s on %s (%d cores, %s, %s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), host,
		runtime.NumCPU(), cpuModel(), runtime.Version())
	fmt.Fprintf(&b, "Medians of %d runs of %v each; %d connections, closed loop (wrk); %d keys of %d bytes; Redis, API and load share the cores; telemetry on and off measured in alternation.\n",
		pl.repeats, pl.runFor, conns, keys, valueLen)
	fmt.Fprintf(&b, "Server environment beyond the telemetry settings: %q (BENCH_SERVER_ENV).\n\n", strings.Join(serverEnv(), " "))
	b.WriteString("| what | req/s | p50 ms | p99 ms | server CPU µs/req |\n|---|---:|---:|---:|---:|\n")
	row := func(name string, r result) {
		cpu := "—"
		if r.cpuUS > 0 {
			cpu = fmt.Sprintf("%.0f", r.cpuUS)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.3f | %.3f | %s |\n", name, r.rps, r.p50, r.p99, cpu)
	}
	row("redis-benchmark GET -c 32", redisGet)
	row("redis-benchmark SET -c 32", redisSet)
	row("API GET, telemetry on", on.get)
	row("API PUT, telemetry on", on.put)
	row("API GET, telemetry off", off.get)
	row("API PUT, telemetry off", off.put)
	row("baseline: Gin hello world (no Redis)", bl.hello.get)
	row("baseline: bare Gin + go-redis GET, no telemetry", bl.bare.get)
	row("baseline: bare Gin + go-redis PUT, no telemetry", bl.bare.put)
	row("baseline: straightforward telemetry at defaults, GET", bl.defaults.get)
	row("baseline: straightforward telemetry at defaults, PUT", bl.defaults.put)
	b.WriteString("\n| target | measured | goal | met |\n|---|---:|---:|---|\n")
	check := func(name string, v, goal float64, higher bool, unit string) {
		targetRow(&b, name, v, goal, higher, unit)
	}
	check("GET API/Redis (telemetry on)", on.get.rps/redisGet.rps, 0.4, true, "")
	check("PUT API/Redis (telemetry on)", on.put.rps/redisSet.rps, 0.4, true, "")
	check("GET telemetry on/off", on.get.rps/off.get.rps, 0.8, true, "")
	check("PUT telemetry on/off", on.put.rps/off.put.rps, 0.8, true, "")
	check("GET telemetry CPU off/on (cost per request)", off.get.cpuUS/on.get.cpuUS, 0.8, true, "")
	check(fmt.Sprintf("open-loop GET p99 at %.0f req/s (got %.0f)", olRate, olGot), olP99, 2, false, " ms")
	check("peak RSS, telemetry on", on.rss, 50, false, " MiB")
	fmt.Fprintf(&b, "\nPeak RSS with telemetry off: %.1f MiB. OTLP exports received by the sink: %d.\n", off.rss, exports)
	fmt.Fprintf(&b, "\nWhat this machine allows, same run (bench/baseline), as a share of redis-benchmark GET:"+
		" Gin hello world %.2f; bare Gin + go-redis GET %.2f (PUT %.2f of SET); straightforward telemetry at its defaults GET %.2f (PUT %.2f)."+
		" DubeBox with all telemetry on is %.2f× the straightforward GET and %.2f× its PUT."+
		" Open-loop p99 of the bare handler at half its maximum (%.0f req/s, got %.0f): %.2f ms.\n",
		bl.hello.get.rps/redisGet.rps, bl.bare.get.rps/redisGet.rps, bl.bare.put.rps/redisSet.rps,
		bl.defaults.get.rps/redisGet.rps, bl.defaults.put.rps/redisSet.rps,
		on.get.rps/bl.defaults.get.rps, on.put.rps/bl.defaults.put.rps,
		bl.bareOLRate, bl.bareOLGot, bl.bareOLP99)
	return b.String()
}

func appendResults(t *testing.T, pl plan, report string) {
	t.Helper()
	path := pl.results
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.WriteString("\n" + report); err != nil {
		t.Fatal(err)
	}
	t.Logf("appended to %s", path)
}
