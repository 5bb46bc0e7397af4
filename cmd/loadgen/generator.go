package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// kind says what a request was, for the hit ratio.
type kind int

const (
	kindWrite kind = iota
	kindRead
	kindBad
)

type generator struct {
	cfg    config
	client *http.Client
	base   string
	addr   string // host:port of an http:// target, for the workers' own connections
	token  string
	value  string
	shards []*shard
}

func newGenerator(cfg config, client *http.Client) *generator {
	token := cfg.token
	if token == "" {
		token = os.Getenv("LOADGEN_TOKEN")
	}
	g := &generator{
		cfg: cfg, client: client, token: token,
		base:  strings.TrimSuffix(cfg.url, "/"),
		value: strings.Repeat("v", cfg.valueLen),
	}
	if u, err := url.Parse(g.base); err == nil && u.Scheme == "http" {
		g.addr = hostPort(u)
	}
	for range cfg.workers {
		g.shards = append(g.shards, newShard())
	}
	return g
}

// worker holds one goroutine's random sources and, for an http:// target,
// its own connection.
type worker struct {
	g    *generator
	rnd  *rand.Rand
	zipf *rand.Zipf
	st   *shard
	conn *conn
}

func (g *generator) newWorker(i int) *worker {
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i))) //nolint:gosec // load shape, not secrets.
	w := &worker{g: g, rnd: rnd, zipf: rand.NewZipf(rnd, g.cfg.zipfS, 1, g.cfg.keys-1), st: g.shards[i]}
	if g.addr != "" {
		w.conn = newConn(g.addr, g.cfg.timeout)
	}
	return w
}

// run sends traffic until ctx ends, printing a live line every report
// interval, and returns the summary.
func (g *generator) run(ctx context.Context, out io.Writer) summary {
	start := time.Now()
	var wg sync.WaitGroup
	var ticks chan time.Time
	if g.cfg.rate > 0 {
		ticks = make(chan time.Time, 100000)
		go g.schedule(ctx, ticks)
	}
	for i := range g.cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := g.newWorker(i)
			if w.conn != nil {
				defer w.conn.close()
			}
			if ticks == nil {
				for ctx.Err() == nil {
					w.one(ctx, time.Now())
				}
				return
			}
			for {
				select {
				case <-ctx.Done():
					return
				case at, ok := <-ticks:
					if !ok {
						return
					}
					w.one(ctx, at)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(g.cfg.report)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-done:
			return g.collect(time.Since(start), true)
		case now := <-tick.C:
			iv := g.collect(now.Sub(last), false)
			last = now
			fmt.Fprintf(out, "%6.0fs %s\n", time.Since(start).Seconds(), iv.line())
		}
	}
}

// schedule emits the send times of an open loop: request i is due at
// start + i/rate whether or not earlier ones were answered, and its latency
// is measured from then, so a stalled server shows in the figures instead
// of slowing the load down.
func (g *generator) schedule(ctx context.Context, ticks chan<- time.Time) {
	defer close(ticks)
	start := time.Now()
	interval := time.Duration(float64(time.Second) / g.cfg.rate)
	for i := int64(0); ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		select {
		case ticks <- due:
		case <-ctx.Done():
			return
		}
	}
}

// one sends one request, chosen by mode and the mix, and records it.
func (w *worker) one(ctx context.Context, scheduled time.Time) {
	method, path, body, k := w.pick()
	code := w.g.sendOn(ctx, w.conn, method, path, body)
	if ctx.Err() != nil && code == 0 {
		return // cut off by the end of the run, not by the server
	}
	w.st.record(time.Since(scheduled), code, k)
}

func (w *worker) key() string {
	return strconv.FormatUint(w.zipf.Uint64(), 10)
}

func (w *worker) ttlJSON() string {
	if w.rnd.Float64() < w.g.cfg.noTTL {
		return ""
	}
	lo, hi := w.g.cfg.ttlMin.Seconds(), w.g.cfg.ttlMax.Seconds()
	return `,"ttl_seconds":` + strconv.Itoa(int(lo+w.rnd.Float64()*(hi-lo)))
}

func (w *worker) pick() (method, path, body string, k kind) {
	cfg := w.g.cfg
	p := cfg.prefix
	switch cfg.mode {
	case "get":
		return http.MethodGet, "/v1/kv/" + p + w.key(), "", kindRead
	case "put":
		return http.MethodPut, "/v1/kv/" + p + w.key(), `{"value":"` + w.g.value + `"}`, kindWrite
	}
	if w.rnd.Float64() < cfg.bad {
		return w.bad()
	}
	hash := w.rnd.Float64() < cfg.hash
	read := w.rnd.Float64() < cfg.read
	switch {
	case hash && read:
		if w.rnd.IntN(2) == 0 {
			return http.MethodGet, "/v1/hash/" + p + "h" + w.key(), "", kindRead
		}
		return http.MethodGet, "/v1/hash/" + p + "h" + w.key() + "/name", "", kindRead
	case hash:
		return http.MethodPut, "/v1/hash/" + p + "h" + w.key(),
			`{"fields":{"name":"` + w.g.value + `","visits":"1"}` + w.ttlJSON() + `}`, kindWrite
	case read:
		return http.MethodGet, "/v1/kv/" + p + w.key(), "", kindRead
	default:
		return http.MethodPut, "/v1/kv/" + p + w.key(), `{"value":"` + w.g.value + `"` + w.ttlJSON() + `}`, kindWrite
	}
}

// bad returns one of the requests a careless client sends.
func (w *worker) bad() (method, path, body string, k kind) {
	p := w.g.cfg.prefix
	switch w.rnd.IntN(4) {
	case 0:
		return http.MethodPut, "/v1/kv/" + p + w.key(), `{"value":`, kindBad // 400
	case 1:
		return http.MethodGet, "/v1/nothing/" + p + w.key(), "", kindBad // 404
	case 2:
		return http.MethodPatch, "/v1/kv/" + p + w.key(), "", kindBad // 405
	default:
		return http.MethodGet, "/v1/kv/" + p + "h" + w.key(), "", kindBad // 409 when a hash is there
	}
}

// send does one request through the shared client and returns its status,
// or 0 when there was no answer (refused, reset, timed out).
func (g *generator) send(ctx context.Context, method, path, body string) int {
	return g.sendOn(ctx, nil, method, path, body)
}

// sendOn does one request on c, or through the shared client when c is nil.
func (g *generator) sendOn(ctx context.Context, c *conn, method, path, body string) int {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.base+path, r) //nolint:gosec // the URL is the operator's -url: sending to it is the tool's job.
	if err != nil {
		return 0
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if g.token != "" {
		req.Header.Set("Authorization", "Bearer "+g.token)
	}
	if c != nil {
		code, _ := c.do(ctx, req)
		return code
	}
	resp, err := g.client.Do(req) //nolint:gosec // as above.
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// preloadKeys writes every key of the key space once, without TTL, so that
// a GET benchmark reads existing keys.
func (g *generator) preloadKeys(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, g.cfg.workers)
	next := make(chan uint64, 1024)
	go func() {
		defer close(next)
		for k := range g.cfg.keys {
			next <- k
		}
	}()
	body := `{"value":"` + g.value + `"}`
	for range g.cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				path := "/v1/kv/" + g.cfg.prefix + strconv.FormatUint(k, 10)
				code := g.send(ctx, http.MethodPut, path, body)
				// 503 is the server shedding load (more workers than its
				// MAX_INFLIGHT_REQUESTS): back off and try again, as a
				// client should, for a few seconds at most.
				for wait := 10 * time.Millisecond; code == http.StatusServiceUnavailable && wait < 5*time.Second && ctx.Err() == nil; wait *= 2 {
					time.Sleep(wait)
					code = g.send(ctx, http.MethodPut, path, body)
				}
				if code != http.StatusOK {
					errc <- fmt.Errorf("preload PUT %s answered %d", path, code)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	return errors.Join(<-errc)
}

// hostPort is u's host with the port made explicit.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}
