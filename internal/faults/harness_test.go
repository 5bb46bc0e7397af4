//go:build faults

package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/servicetest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "dubebox")
	if err := servicetest.Build(dir, "./cmd/dubebox"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// service is the built dubebox binary, run as a process of its own.
type service struct {
	t    *testing.T
	proc *servicetest.Process
	addr string
	base string
}

func start(t *testing.T, redisAddr string, env ...string) *service {
	t.Helper()
	p, base := servicetest.StartDubebox(t, binary, redisAddr, append([]string{"LOG_LEVEL=info"}, env...)...)
	return &service{t: t, proc: p, addr: strings.TrimPrefix(base, "http://"), base: base}
}

var quick = &http.Client{Timeout: 5 * time.Second}

func get(url string) (int, string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := quick.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// metric reads one sample from /metrics: a name, or a name with its labels
// as Prometheus writes them.
func (s *service) metric(name string) float64 {
	s.t.Helper()
	_, body, err := get(s.base + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	s.t.Fatalf("no %s in /metrics", name)
	return 0
}

// logLine returns the service's log line for the request whose error body
// is body (by its request id), to say why it failed.
func (s *service) logLine(body string) string {
	var e struct {
		RequestID string `json:"request_id"`
	}
	if json.Unmarshal([]byte(body), &e) != nil || e.RequestID == "" {
		return ""
	}
	b, _ := os.ReadFile(s.proc.Log)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `"request_id":"`+e.RequestID+`"`) {
			return l
		}
	}
	return ""
}

func (s *service) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.proc.Cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// rec is one request of a load: when it started and ended, and its answer.
type rec struct {
	start, end time.Time
	method     string
	path       string
	value      string
	status     int
	body       string
	err        error
}

func (r rec) took() time.Duration { return r.end.Sub(r.start) }

// load sends requests from workers until ctx ends and records every one.
type load struct {
	mu   sync.Mutex
	recs []rec
	wg   sync.WaitGroup
}

type next func(worker, i int) (method, path, body, value string)

func runLoad(ctx context.Context, base string, workers int, pick next) *load {
	l := &load{}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			for i := 0; ctx.Err() == nil; i++ {
				method, path, body, value := pick(w, i)
				r := rec{start: time.Now(), method: method, path: path, value: value}
				var rd io.Reader
				if body != "" {
					rd = strings.NewReader(body)
				}
				req, err := http.NewRequestWithContext(context.Background(), method, base+path, rd)
				if err != nil {
					r.err = err
				} else {
					resp, err := client.Do(req)
					if err != nil {
						r.err = err
					} else {
						b, _ := io.ReadAll(resp.Body)
						_ = resp.Body.Close()
						r.status, r.body = resp.StatusCode, string(b)
					}
				}
				r.end = time.Now()
				l.mu.Lock()
				l.recs = append(l.recs, r)
				l.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *load) wait() []rec {
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Slice(l.recs, func(i, j int) bool { return l.recs[i].start.Before(l.recs[j].start) })
	return l.recs
}

// tally counts records by status ("error" for no answer) and finds the
// slowest.
func tally(rs []rec) (map[string]int, time.Duration) {
	m := map[string]int{}
	var worst time.Duration
	for _, r := range rs {
		if r.err != nil {
			m["no answer"]++
		} else {
			m[strconv.Itoa(r.status)]++
		}
		worst = max(worst, r.took())
	}
	return m, worst
}

func between(rs []rec, from, to time.Time) []rec {
	var out []rec
	for _, r := range rs {
		if !r.start.Before(from) && r.start.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// isJSONError reports whether body is the API's error shape with code.
func isJSONError(body string, codes ...string) bool {
	for _, c := range codes {
		if strings.HasPrefix(body, `{"error":{"code":"`+c+`"`) && strings.Contains(body, `"request_id":"`) {
			return true
		}
	}
	return false
}

// mixed is a steady load of writes of unique values and reads of them.
func mixed(worker, i int) (method, path, body, value string) {
	key := fmt.Sprintf("w%d-%d", worker, i/2)
	if i%2 == 0 {
		v := fmt.Sprintf("value-%d-%d", worker, i)
		return http.MethodPut, "/v1/kv/" + key, `{"value":"` + v + `"}`, v
	}
	return http.MethodGet, "/v1/kv/" + key, "", ""
}
