//go:build bench

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/servicetest"
	"github.com/redis/go-redis/v9"
)

// zipfKeys is how many keys the skewed workload reads: a Zipf distribution
// (s = 1) over them, so that a few keys take most reads, as real cache
// traffic does.
const zipfKeys = 10000

// zipfScript draws keys by rank from a Zipf distribution with s = 1 over
// %d keys (inverse CDF, binary search) and GETs path .. (rank - 1).
const zipfScript = `
local n, cdf, total = %d, {}, 0
for k = 1, n do total = total + 1 / k; cdf[k] = total end
for k = 1, n do cdf[k] = cdf[k] / total end
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%%x+)") or "0", 16) %% 1000003)
request = function()
  local u, lo, hi = math.random(), 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", "%s" .. (lo - 1))
end
`

// oneKeyScript sends one request again and again.
const oneKeyScript = `
local body = %q
request = function()
  if body == "" then return wrk.format(%q, %q) end
  return wrk.format(%q, %q, {["Content-Type"]=%q}, body)
end
`

func oneKey(method, path, ctype, body string) string {
	return fmt.Sprintf(oneKeyScript, body, method, path, method, path, ctype)
}

// contender is a server the Webdis comparison measures, with its scripts
// (put "" when it takes no writes) and its process, whose CPU is read.
type contender struct {
	name           string
	base           string
	pid            int
	zipf, get, put string
}

// webdisRun is the comparison's figures: per workload, per contender.
type webdisRun struct {
	names     []string
	workloads []string
	rps       map[string]map[string]float64 // workload -> contender -> req/s
	// cpu and redisCPU are the contender's and Redis's CPU time per
	// request (µs), from /proc over each run: workload -> contender.
	cpu, redisCPU map[string]map[string]float64

	nearRSS    float64 // MiB, the 100%-sampled near-cache server's peak
	shippedRSS float64 // MiB, the peak of the server as shipped
	// olWebdis and olShipped are the open-loop runs at olRate, Webdis's
	// and DubeBox's as shipped (medians).
	olWebdis, olShipped constantRate
	pairs, stale        int64   // read-your-writes through one instance
	staleP99, staleMax  float64 // ms until another instance answers a write
}

// Workload names, as the report and the targets use them.
const (
	wZipf = "GET, Zipf over 10,000 keys"
	wGet  = "GET, one key"
	wPut  = "PUT, one key"
)

// besideWebdis measures Webdis (C, libevent) and DubeBox with and without
// the near cache, with telemetry at 100% and 10% trace sampling and off,
// on the same Redis, alternated run by run, on the skewed GET and on one
// key's GET and PUT; then the open-loop p99 at olRate of Webdis and of
// DubeBox as shipped, alternated; and on the near cache, read-your-writes
// and the cross-instance staleness.
func besideWebdis(t *testing.T, pl plan, rs *redistest.Server, bin, vegeta, baseline, otlp string) webdisRun {
	t.Helper()
	redisAddr := rs.Addr
	servicetest.Need(t, "webdis", "install Webdis (apt-get install -y webdis)")
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	value := strings.Repeat("v", valueLen)
	pipe := rdb.Pipeline()
	for i := range zipfKeys {
		pipe.Set(context.Background(), "dubebox:zipf"+strconv.Itoa(i), value, 0)
	}
	pipe.Set(context.Background(), "dubebox:one", value, 0)
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = rdb.Close()

	webdis, webdisPid := startWebdis(t, redisAddr)
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	dubeboxBody, _ := json.Marshal(map[string]string{"value": value})
	servers := map[string]*server{}
	dubebox := func(name string, env ...string) contender {
		srv := startServer(t, bin, redisAddr, append([]string{"LOG_LEVEL=info", "OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp}, env...))
		stops = append(stops, srv.stop)
		servers[name] = srv
		return contender{
			name: name, base: srv.base, pid: srv.proc.Cmd.Process.Pid,
			zipf: fmt.Sprintf(zipfScript, zipfKeys, "/v1/kv/zipf"),
			get:  oneKey("GET", "/v1/kv/one", "", ""),
			put:  oneKey("PUT", "/v1/kv/one", "application/json", string(dubeboxBody)),
		}
	}
	contenders := []contender{
		{
			name: "Webdis", base: webdis, pid: webdisPid,
			zipf: fmt.Sprintf(zipfScript, zipfKeys, "/GET/dubebox:zipf"),
			get:  oneKey("GET", "/GET/dubebox:one", "", ""),
			put:  oneKey("PUT", "/SET/dubebox:one", "application/octet-stream", value),
		},
		dubebox(plainFull, "NEAR_CACHE_SIZE=0", "OTEL_TRACES_EXPORTER=otlp", "OTEL_TRACES_SAMPLER=always_on"),
		dubebox(plainTenth, "NEAR_CACHE_SIZE=0", "OTEL_TRACES_EXPORTER=otlp", "OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.1"),
		dubebox(plainOff, "NEAR_CACHE_SIZE=0", "LOG_LEVEL=warn", "OTEL_TRACES_EXPORTER=none", "OTEL_TRACES_SAMPLER=always_off"),
		dubebox(nearFull, "OTEL_TRACES_EXPORTER=otlp", "OTEL_TRACES_SAMPLER=always_on"),
		// No setting of its own: the near cache and the sampler as shipped.
		dubebox(shipped, "OTEL_TRACES_EXPORTER=otlp"),
		dubebox(nearOff, "LOG_LEVEL=warn", "OTEL_TRACES_EXPORTER=none", "OTEL_TRACES_SAMPLER=always_off"),
	}
	bare := startBaseline(t, baseline, "nethttp", redisAddr, otlp)
	stops = append(stops, bare.stop)
	contenders = append(contenders, contender{
		name: bareHTTP, base: bare.base, pid: bare.proc.Cmd.Process.Pid,
		zipf: fmt.Sprintf(zipfScript, zipfKeys, "/v1/kv/zipf"),
		get:  oneKey("GET", "/v1/kv/one", "", ""),
	})
	run := webdisRun{workloads: []string{wZipf, wGet, wPut}, rps: map[string]map[string]float64{},
		cpu: map[string]map[string]float64{}, redisCPU: map[string]map[string]float64{}}
	samples, cpus, redisCPUs := map[string]map[string][]float64{}, map[string]map[string][]float64{}, map[string]map[string][]float64{}
	for _, w := range run.workloads {
		run.rps[w], samples[w] = map[string]float64{}, map[string][]float64{}
		run.cpu[w], cpus[w] = map[string]float64{}, map[string][]float64{}
		run.redisCPU[w], redisCPUs[w] = map[string]float64{}, map[string][]float64{}
	}
	for _, c := range contenders {
		run.names = append(run.names, c.name)
	}
	for range pl.repeats {
		for _, w := range run.workloads {
			for _, c := range contenders {
				script := map[string]string{wZipf: c.zipf, wGet: c.get, wPut: c.put}[w]
				if script == "" {
					continue
				}
				cpu0, redis0 := cpuOf(t, c.pid), cpuOf(t, rs.Pid())
				r := wrk(t, pl, c.base, script)
				n := r.rps * pl.runFor.Seconds()
				samples[w][c.name] = append(samples[w][c.name], r.rps)
				cpus[w][c.name] = append(cpus[w][c.name], float64((cpuOf(t, c.pid)-cpu0).Microseconds())/n)
				redisCPUs[w][c.name] = append(redisCPUs[w][c.name], float64((cpuOf(t, rs.Pid())-redis0).Microseconds())/n)
			}
		}
	}
	for w, byName := range samples {
		for name, xs := range byName {
			run.rps[w][name] = median(xs)
			run.cpu[w][name] = median(cpus[w][name])
			run.redisCPU[w][name] = median(redisCPUs[w][name])
		}
	}
	// The peak before the open-loop runs, whose connections are another
	// load than the closed loop's 32.
	run.shippedRSS = servers[shipped].peakRSS(t)
	var ws, ds []constantRate
	for range pl.repeats {
		ws = append(ws, atConstantRate(t, vegeta, webdis+"/GET/dubebox:zipf", olRate, pl.openLoop))
		ds = append(ds, atConstantRate(t, vegeta, servers[shipped].base+"/v1/kv/zipf", olRate, pl.openLoop))
	}
	run.olWebdis, run.olShipped = medianRate(ws), medianRate(ds)
	near := servers[nearFull]
	run.nearRSS = near.peakRSS(t)
	run.pairs, run.stale = readYourWrites(t, near.base, pl)
	other := startServer(t, bin, redisAddr, []string{"LOG_LEVEL=warn", "OTEL_TRACES_EXPORTER=none"})
	stops = append(stops, other.stop)
	run.staleP99, run.staleMax = crossInstance(t, near.base, other.base, pl)
	return run
}

// The DubeBox contenders: without the near cache (every GET a Redis round
// trip), and with it, as shipped (near cache on, 10% of traces kept).
const (
	plainFull  = "no near cache, 100% sampled"
	plainTenth = "no near cache, 10% sampled"
	plainOff   = "no near cache, telemetry off"
	nearFull   = "near cache, 100% sampled"
	shipped    = "as shipped: near cache, 10% sampled"
	nearOff    = "near cache, telemetry off"
	// bareHTTP is no DubeBox: net/http writing a near-cache hit's answer
	// (bench/baseline, nethttp), the floor of a read from memory.
	bareHTTP = "bare net/http"
)

// readYourWrites has 8 clients each PUT a value and GET it back at once
// through the same instance, and counts the GETs that answered anything
// else: a cache that does not return what was just written is broken.
func readYourWrites(t *testing.T, base string, pl plan) (pairs, stale int64) {
	t.Helper()
	each := 1000
	if pl.smoke {
		each = 100
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var total, bad atomic.Int64
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			for i := range each {
				want := fmt.Sprintf("%d-%d", c, i)
				url := fmt.Sprintf("%s/v1/kv/ryw%d", base, c)
				if code, _, _ := call(client, "PUT", url, fmt.Sprintf(`{"value":%q}`, want)); code != 200 {
					t.Errorf("PUT: %d", code)
					return
				}
				_, body, _ := call(client, "GET", url, "")
				if !strings.Contains(body, `"value":"`+want+`"`) {
					bad.Add(1)
				}
				total.Add(1)
			}
		})
	}
	wg.Wait()
	return total.Load(), bad.Load()
}

// crossInstance writes through one instance while another holds the old
// value in its near cache, and measures how long the other keeps
// answering it: p99 and max in milliseconds.
func crossInstance(t *testing.T, writer, reader string, pl plan) (p99, worst float64) {
	t.Helper()
	trials := 200
	if pl.smoke {
		trials = 20
	}
	client := &http.Client{}
	var lags []float64
	for i := range trials {
		url := "/v1/kv/crossinstance"
		call(client, "PUT", writer+url, fmt.Sprintf(`{"value":"old-%d"}`, i))
		for deadline := time.Now().Add(2 * time.Second); ; {
			_, _, cache := call(client, "GET", reader+url, "")
			if cache == "near" || time.Now().After(deadline) {
				break
			}
		}
		want := fmt.Sprintf("new-%d", i)
		start := time.Now()
		call(client, "PUT", writer+url, fmt.Sprintf(`{"value":%q}`, want))
		for {
			_, body, _ := call(client, "GET", reader+url, "")
			if strings.Contains(body, want) {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("the other instance still answered %s after 10 s", body)
			}
		}
		lags = append(lags, float64(time.Since(start).Microseconds())/1000)
	}
	slices.Sort(lags)
	return lags[len(lags)*99/100], lags[len(lags)-1]
}

// call sends one request and returns the status, the body and X-Cache.
func call(client *http.Client, method, url, body string) (int, string, string) {
	req, _ := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", ""
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("X-Cache")
}

// startWebdis runs Webdis in the foreground against redisAddr and returns
// its base URL.
func startWebdis(t *testing.T, redisAddr string) (string, int) {
	t.Helper()
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(redisAddr)
	httpAddr := servicetest.FreeAddr(t)
	httpHost, httpPort, _ := net.SplitHostPort(httpAddr)
	rp, _ := strconv.Atoi(port)
	hp, _ := strconv.Atoi(httpPort)
	cfg, _ := json.Marshal(map[string]any{
		"redis_host": host, "redis_port": rp, "http_host": httpHost, "http_port": hp,
		// As many threads as the machine has cores, as Debian's own
		// configuration does on this machine.
		"threads": 2, "pool_size": 16, "daemonize": false, "database": 0,
		"verbosity": 0, "logfile": filepath.Join(dir, "webdis.log"),
	})
	conf := filepath.Join(dir, "webdis.json")
	if err := os.WriteFile(conf, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("webdis", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://" + httpAddr
	if err := servicetest.WaitHTTP(base+"/PING", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return base, cmd.Process.Pid
}

// render is the comparison's part of the report, with the targets
// as ratios to Webdis in the same run.
func (r webdisRun) render() string {
	var b strings.Builder
	b.WriteString("\nBeside Webdis (C, libevent; Debian's webdis), same Redis, alternated run by run, load from wrk (2 threads, 32 connections, closed loop); DubeBox (every column but Webdis) with the info access log, metrics and OTLP export to a discarding sink unless its telemetry is off; ratios to Webdis:\n\n")
	b.WriteString("| workload | " + strings.Join(r.names, " | ") + " |\n|---|" + strings.Repeat("---:|", len(r.names)) + "\n")
	webdis := r.names[0]
	for _, w := range r.workloads {
		fmt.Fprintf(&b, "| %s |", w)
		for i, name := range r.names {
			v, ok := r.rps[w][name]
			switch {
			case !ok:
				b.WriteString(" |")
				continue
			case i == 0:
				fmt.Fprintf(&b, " %.0f |", v)
			default:
				fmt.Fprintf(&b, " %.0f (%.2f×) |", v, v/r.rps[w][webdis])
			}
		}
		b.WriteString("\n")
	}
	ratio := func(w, name string) float64 { return r.rps[w][name] / r.rps[w][webdis] }
	b.WriteString("\n| target (issue 14) | measured | goal | met |\n|---|---:|---:|---|\n")
	check := func(name string, v, goal float64, higher bool, unit string) {
		targetRow(&b, name, v, goal, higher, unit)
	}
	check("Zipf GET, 10% sampled (as shipped), ×Webdis", ratio(wZipf, shipped), 0.6, true, "")
	check("Zipf GET, 100% sampled, near cache, ×Webdis", ratio(wZipf, nearFull), 0.45, true, "")
	check("PUT, 100% sampled, near cache, ×Webdis", ratio(wPut, nearFull), 0.3, true, "")
	check("PUT, 100% sampled, no near cache, ×Webdis", ratio(wPut, plainFull), 0.3, true, "")
	check("Zipf GET telemetry on/off, as shipped (10% sampled)", r.rps[wZipf][shipped]/r.rps[wZipf][nearOff], 0.8, true, "")
	check("Zipf GET telemetry on/off, near cache, 100% sampled", r.rps[wZipf][nearFull]/r.rps[wZipf][nearOff], 0.8, true, "")
	check("Zipf GET telemetry on/off, no near cache, 100% sampled", r.rps[wZipf][plainFull]/r.rps[wZipf][plainOff], 0.8, true, "")
	check(fmt.Sprintf("open-loop Zipf GET p99 as shipped at %d req/s (got %.0f, %.1f%% 2xx)", olRate, r.olShipped.rate, 100*r.olShipped.success), r.olShipped.p99, 2, false, " ms")
	check("peak RSS with a 10,000-entry near cache, 100% sampled", r.nearRSS, 64, false, " MiB")
	check("peak RSS as shipped (10,000-entry near cache, 10% sampled)", r.shippedRSS, 64, false, " MiB")
	check(fmt.Sprintf("stale reads after one's own write (%d pairs)", r.pairs), float64(r.stale), 0, false, "")
	b.WriteString(r.renderCPU())
	fmt.Fprintf(&b, "\nAnother instance stopped answering the old value within %.2f ms at p99 and %.2f ms at most (of the cross-instance trials); "+
		"every entry's life is also bounded by NEAR_CACHE_TTL (5 s) should an invalidation be lost.\n", r.staleP99, r.staleMax)
	return b.String()
}

// targetRow writes one row of a target table: the figure, the goal (at
// least it when higher, at most it otherwise) and whether it was met.
func targetRow(b *strings.Builder, name string, v, goal float64, higher bool, unit string) {
	met := v >= goal
	if !higher {
		met = v <= goal
	}
	fmt.Fprintf(b, "| %s | %.2f%s | %s %.2f%s | %v |\n", name, v, unit, map[bool]string{true: "≥", false: "≤"}[higher], goal, unit, met)
}

// total is a contender's CPU per request, its own and Redis's (µs).
func (r webdisRun) total(w, name string) float64 { return r.cpu[w][name] + r.redisCPU[w][name] }

// renderCPU is the cost side of the comparison: CPU per request, the
// server's and Redis's, which the load generator's share of the cores
// moves far less than it moves the rates above; and the targets of issue
// 24 as ratios in this run.
func (r webdisRun) renderCPU() string {
	var b strings.Builder
	b.WriteString("\nCPU per request in µs, the server's + Redis's = both (from /proc over each run above, medians), and Webdis's both ÷ this one's:\n\n")
	b.WriteString("| workload | " + strings.Join(r.names, " | ") + " |\n|---|" + strings.Repeat("---:|", len(r.names)) + "\n")
	webdis := r.names[0]
	for _, w := range r.workloads {
		fmt.Fprintf(&b, "| %s |", w)
		for i, name := range r.names {
			if _, ok := r.cpu[w][name]; !ok {
				b.WriteString(" |")
				continue
			}
			fmt.Fprintf(&b, " %.1f + %.1f = %.1f", r.cpu[w][name], r.redisCPU[w][name], r.total(w, name))
			if i > 0 {
				fmt.Fprintf(&b, " (%.2f×)", r.total(w, webdis)/r.total(w, name))
			}
			b.WriteString(" |")
		}
		b.WriteString("\n")
	}
	ratio := func(w, name string) float64 { return r.total(w, webdis) / r.total(w, name) }
	b.WriteString("\n| target (issue 24), CPU per request | measured | goal | met |\n|---|---:|---:|---|\n")
	check := func(name string, v, goal float64, higher bool, unit string) {
		targetRow(&b, name, v, goal, higher, unit)
	}
	check("near-cache hit (one key), telemetry off: DubeBox's own CPU above bare net/http", r.cpu[wGet][nearOff]-r.cpu[wGet][bareHTTP], 8, false, " µs")
	check("Zipf GET, telemetry off: Webdis ÷ DubeBox", ratio(wZipf, nearOff), 1, true, "×")
	check("Zipf GET as shipped: Webdis ÷ DubeBox", ratio(wZipf, shipped), 0.8, true, "×")
	check("Zipf GET, every trace kept: Webdis ÷ DubeBox", ratio(wZipf, nearFull), 0.6, true, "×")
	check("one-key PUT, every trace kept: Webdis ÷ DubeBox", ratio(wPut, nearFull), 0.5, true, "×")
	check(fmt.Sprintf("open-loop Zipf GET p99 at %d req/s (vegeta), as shipped ÷ Webdis: %.2f ms (%.1f%% 2xx) ÷ %.2f ms (%.1f%% 2xx)",
		olRate, r.olShipped.p99, 100*r.olShipped.success, r.olWebdis.p99, 100*r.olWebdis.success), r.olShipped.p99/r.olWebdis.p99, 1.5, false, "×")
	return b.String()
}

// figures lists the comparison's numbers for checkFigures.
func (r webdisRun) figures() map[string]float64 {
	out := map[string]float64{"near-cache peak RSS": r.nearRSS, "read-your-writes pairs": float64(r.pairs),
		"peak RSS as shipped": r.shippedRSS, "open-loop as shipped": r.olShipped.rate, "open-loop p99 as shipped": r.olShipped.p99,
		"open-loop Webdis": r.olWebdis.rate, "open-loop p99 Webdis": r.olWebdis.p99,
		"cross-instance max": r.staleMax}
	for w, byName := range r.rps {
		for name, v := range byName {
			out[w+", "+name] = v
			out[w+", "+name+", CPU a request"] = r.cpu[w][name]
		}
	}
	return out
}
