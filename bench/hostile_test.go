//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/servicetest"
	"github.com/goccy/go-yaml"
)

// hostile is one workload that pushes a bound as hard as a client may with
// legal requests (or, before authentication, with unfinished ones).
type hostile struct {
	name string
	// what says, in words for the report, what the workload does.
	what string
	run  func(t *testing.T, pl plan, base string)
}

// chartMemoryLimit reads the Helm chart's memory limit, in MiB: the figure
// every hostile workload's peak RSS is held against.
func chartMemoryLimit(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(servicetest.Root(), "deploy", "helm", "dubebox", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Resources struct {
			Limits struct {
				Memory string `yaml:"memory"`
			} `yaml:"limits"`
		} `yaml:"resources"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var mib float64
	if _, err := fmt.Sscanf(v.Resources.Limits.Memory, "%fMi", &mib); err != nil {
		t.Fatalf("values.yaml resources.limits.memory %q: want <n>Mi", v.Resources.Limits.Memory)
	}
	return mib
}

// TestBenchHostile runs each hostile workload against a fresh server with
// the service's defaults (and the chart's GOMEMLIMIT), and reports the
// process's peak RSS (VmHWM) beside the Helm chart's memory limit. A peak
// within 80 % of the limit fails: the chart's limit must hold every
// workload with headroom.
func TestBenchHostile(t *testing.T) {
	pl := newPlan(t)
	dir := t.TempDir()
	rs, err := redistest.StartServer(dir, "--maxmemory", "2gb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Kill)
	bin := filepath.Join(dir, "dubebox")
	if err := servicetest.Build(dir, "./cmd/dubebox"); err != nil {
		t.Fatal(err)
	}
	limit := chartMemoryLimit(t)
	env := chartEnv(t)
	var b strings.Builder
	fmt.Fprintf(&b, "\n### Peak memory under hostile clients (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Each workload against a fresh server with the service's defaults and the chart's %s; peak RSS is the process's VmHWM. The Helm chart limits the pod to %.0f MiB.\n\n",
		strings.Join(env, " "), limit)
	b.WriteString("| workload | peak RSS MiB | share of the chart's limit |\n|---|---:|---:|\n")
	for _, w := range hostileWorkloads() {
		srv := startServer(t, bin, rs.Addr, append([]string{"LOG_LEVEL=warn"}, env...))
		idle := srv.peakRSS(t)
		w.run(t, pl, srv.base)
		peak := srv.peakRSS(t)
		srv.stop()
		fmt.Fprintf(&b, "| %s: %s | %.1f (idle %.1f) | %.0f %% |\n", w.name, w.what, peak, idle, 100*peak/limit)
		if peak > 0.8*limit {
			t.Errorf("%s: peak RSS %.1f MiB, more than 80 %% of the chart's limit of %.0f MiB", w.name, peak, limit)
		}
	}
	t.Log(b.String())
	appendResults(t, pl, b.String())
}

// chartEnv is the settings the chart gives the pod that bear on memory.
func chartEnv(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(servicetest.Root(), "deploy", "helm", "dubebox", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Config map[string]string `yaml:"config"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.Config["GOMEMLIMIT"] == "" {
		t.Fatal("values.yaml sets no GOMEMLIMIT")
	}
	return []string{"GOMEMLIMIT=" + v.Config["GOMEMLIMIT"]}
}

// bigValue is a value of n bytes, '<' and '>', which an HTML-escaping
// encoder would make six bytes each (the service's does not).
func bigValue(n int) string {
	return strings.Repeat("<>", n/2)
}

// valueBody is a PUT's body for value, as a client writes it: '<' and '>'
// as they are (Go's encoding/json would escape them).
func valueBody(value string) string {
	return `{"value":"` + value + `"}`
}

func hostileWorkloads() []hostile {
	const mb = 1_000_000
	return []hostile{
		{"hash", "a hash grown to 30 MB by 30 legal writes (1,000 fields of 1 KB each), then read whole, a page at a time, by 8 clients at once, 3 times each",
			func(t *testing.T, pl plan, base string) {
				t.Helper()
				for w := range 30 {
					fields := map[string]string{}
					for i := range 1000 {
						fields[fmt.Sprintf("f%d-%d", w, i)] = strings.Repeat("h", 1000)
					}
					body, _ := json.Marshal(map[string]any{"fields": fields})
					mustDo(t, http.MethodPut, base+"/v1/hash/grow", string(body), 200)
				}
				parallel(8, func(int) {
					for range 3 {
						cursor := ""
						for {
							url := base + "/v1/hash/grow?limit=1000"
							if cursor != "" {
								url += "&cursor=" + cursor
							}
							var page struct {
								NextCursor string `json:"next_cursor"`
							}
							_ = json.Unmarshal([]byte(mustDo(t, http.MethodGet, url, "", 200)), &page)
							if cursor = page.NextCursor; cursor == "" {
								break
							}
						}
					}
				})
			}},
		{"big values", "16 clients writing and reading 1,000,000-byte values of '<' and '>' (the default MAX_VALUE_BYTES allows 1 MiB)",
			func(t *testing.T, pl plan, base string) {
				t.Helper()
				body := valueBody(bigValue(mb))
				until := time.Now().Add(max(pl.runFor/2, time.Second))
				parallel(16, func(c int) {
					key := fmt.Sprintf("%s/v1/kv/big%d", base, c)
					for time.Now().Before(until) {
						mustDo(t, http.MethodPut, key, body, 200, 503, 504)
						mustDo(t, http.MethodGet, key, "", 200, 404, 503, 504)
					}
				})
			}},
		{"batch", "100 keys of 1 MiB values of '<' and '>', read by 16 clients at once, 5 times each, with a batch read naming all 100 (past MAX_PAGE_BYTES the keys come back unprocessed)",
			func(t *testing.T, pl plan, base string) {
				t.Helper()
				body := valueBody(bigValue(1 << 20))
				var keys []string
				for i := range 100 {
					k := fmt.Sprintf("batch%d", i)
					keys = append(keys, k)
					mustDo(t, http.MethodPut, base+"/v1/kv/"+k, body, 200)
				}
				req, _ := json.Marshal(map[string]any{"keys": keys})
				parallel(16, func(int) {
					for range 5 {
						mustDo(t, http.MethodPost, base+"/v1/kv:batchGet", string(req), 200, 503, 504)
					}
				})
			}},
		{"list", "a list of 20 values of 1 MiB, read a page of up to 1,000 values at a time by 16 clients at once, 5 times each",
			func(t *testing.T, pl plan, base string) {
				t.Helper()
				body := `{"values":["` + bigValue(1<<20) + `"]}`
				for range 20 {
					mustDo(t, http.MethodPost, base+"/v1/list/big/push", body, 200)
				}
				parallel(16, func(int) {
					for range 5 {
						for off := 0; off < 20; {
							var page struct {
								NextOffset *int `json:"next_offset"`
							}
							_ = json.Unmarshal([]byte(mustDo(t, http.MethodGet, fmt.Sprintf("%s/v1/list/big?offset=%d&limit=1000", base, off), "", 200, 503, 504)), &page)
							if page.NextOffset == nil {
								break
							}
							off = *page.NextOffset
						}
					}
				})
			}},
		{"flood", "200 clients at once, each PUTting a 1,000,000-byte value (past MAX_INFLIGHT_REQUESTS they are refused before their bodies are read)",
			func(t *testing.T, pl plan, base string) {
				t.Helper()
				body := valueBody(bigValue(mb))
				parallel(200, func(c int) {
					for range 3 {
						mustDo(t, http.MethodPut, fmt.Sprintf("%s/v1/kv/flood%d", base, c), body, 200, 503, 504)
					}
				})
			}},
		{"streams", "MAX_SSE_STREAMS (256) streams, each on a channel of its own and never read, while 2 clients publish four MAX_MESSAGE_BYTES (64 KiB) messages to every channel (past the instance's budget for held messages: the streams that fall behind are dropped)",
			func(t *testing.T, pl plan, base string) {
				t.Helper()
				addr := strings.TrimPrefix(base, "http://")
				const streams = 256
				var conns []net.Conn
				for i := range streams {
					d := net.Dialer{Timeout: 2 * time.Second}
					c, err := d.DialContext(context.Background(), "tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					conns = append(conns, c)
					_, _ = fmt.Fprintf(c, "GET /v1/channels/hostile%d/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n", i)
				}
				defer func() {
					for _, c := range conns {
						_ = c.Close()
					}
				}()
				time.Sleep(time.Second)
				body := `{"message":"` + strings.Repeat("m", 64<<10-1) + `"}`
				parallel(2, func(w int) {
					for i := w; i < 4*streams; i += 2 {
						mustDo(t, http.MethodPost, fmt.Sprintf("%s/v1/channels/hostile%d/messages", base, i%streams), body, 200, 503, 504)
					}
				})
			}},
		{"slow headers", "2,000 connections, no token, each sending a header line of 1,000,000 bytes and never finishing it, held for 3 s",
			func(t *testing.T, pl plan, base string) {
				t.Helper()
				holdUnfinished(t, base, 2000, func(c net.Conn) {
					_, _ = c.Write([]byte("GET /v1/kv/k HTTP/1.1\r\nHost: x\r\nX-Pad: "))
					_, _ = c.Write(bytes.Repeat([]byte("a"), mb))
				})
			}},
		{"slow bodies", "200 connections each sending a PUT announcing 2 MiB of body, sending all but its last byte and stalling, held for 3 s",
			func(t *testing.T, pl plan, base string) {
				t.Helper()
				const n = 2 << 20
				holdUnfinished(t, base, 200, func(c net.Conn) {
					_, _ = fmt.Fprintf(c, "PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{\"value\":\"", n)
					_, _ = c.Write(bytes.Repeat([]byte("a"), n-12))
				})
			}},
	}
}

// holdUnfinished opens conns connections at once, each starting a request
// with start and then stalling, and holds them for 3 s before closing.
func holdUnfinished(t *testing.T, base string, conns int, start func(net.Conn)) {
	t.Helper()
	addr := strings.TrimPrefix(base, "http://")
	var mu sync.Mutex
	var open []net.Conn
	parallel(conns, func(int) {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(context.Background(), "tcp", addr)
		if err != nil {
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(3 * time.Second))
		start(c)
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
	})
	time.Sleep(3 * time.Second)
	for _, c := range open {
		_ = c.Close()
	}
}

// parallel runs f(0..n-1) at once and waits for them all.
func parallel(n int, f func(int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

var hostileClient = &http.Client{Timeout: 30 * time.Second}

// mustDo sends one request and fails the test unless its status is one of
// want; it returns the body.
func mustDo(t *testing.T, method, url, body string, want ...int) string {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hostileClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return ""
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	for _, w := range want {
		if resp.StatusCode == w {
			return string(b)
		}
	}
	t.Errorf("%s %s: %d %.200s", method, url, resp.StatusCode, b)
	return string(b)
}
