package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/api"
	"github.com/dubebox/dubebox/internal/config"
	"github.com/dubebox/dubebox/internal/contract"
	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/store"
	"github.com/dubebox/dubebox/observability"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// env is the real router over a real Redis, with every piece of telemetry
// recorded where a test can read it.
type env struct {
	h       http.Handler
	rdb     redis.UniversalClient
	prefix  string
	metrics *observability.Metrics
	spans   *tracetest.SpanRecorder
	logs    *observer.ObservedLogs
	// node is the Redis node of a single-server env, as metrics label it.
	node string
	// store is the router's store, unless an option replaced it.
	store *store.Store
}

type (
	apiConfig = api.Config
	apiDeps   = api.Deps
	option    = func(*api.Config, *api.Deps)
)

func withToken(tok string) option {
	return func(c *api.Config, _ *api.Deps) { c.APIToken = tok }
}

// withPanic makes the store's Get panic, to test the recovery path.
func withPanic() option {
	return func(_ *api.Config, d *api.Deps) { d.Store = panicky{d.Store} }
}

type panicky struct{ api.Store }

func (panicky) Get(context.Context, string) (store.String, error) { panic("boom in the store") }

func sleepMS(ms int) { time.Sleep(time.Duration(ms) * time.Millisecond) }

// newEnv builds the router over the package's Redis, or over addr when it
// is given (a private redis-server the test can break).
func newEnv(t testing.TB, addr string, opts ...option) *env {
	t.Helper()
	if addr != "" {
		// A private server may be dead by the end: nothing to clean.
		return build(t, redistest.Server{Addr: addr}.Topology(), false, nil, opts...)
	}
	return build(t, redistest.Single(t), true, nil, opts...)
}

// newNearEnv builds the router with the near cache on, over a private
// redis-server at addr (tracking is per server).
func newNearEnv(t testing.TB, addr string, opts ...option) *env {
	t.Helper()
	near := func(c *store.Config) {
		c.Near = store.NearConfig{NearSize: 1000, NearMaxBytes: 1 << 20, NearTTL: 5 * time.Second}
	}
	return build(t, redistest.Server{Addr: addr}.Topology(), false, near, opts...)
}

// newEnvStore builds the router over a Redis topology with the store's
// settings changed by smod.
func newEnvStore(t testing.TB, tp redistest.Topology, smod func(*store.Config), opts ...option) *env {
	t.Helper()
	return build(t, tp, true, smod, opts...)
}

// newEnvOn builds the router over a Redis topology (single, Cluster or
// Sentinel).
func newEnvOn(t testing.TB, tp redistest.Topology, opts ...option) *env {
	t.Helper()
	return build(t, tp, true, nil, opts...)
}

// onEveryTopology runs test in parallel subtests, one per Redis topology,
// each with its own env.
func onEveryTopology(t *testing.T, test func(t *testing.T, tp redistest.Topology, e *env)) {
	t.Helper()
	t.Parallel()
	for _, tp := range redistest.Topologies(t) {
		t.Run(tp.Name, func(t *testing.T) {
			t.Parallel()
			test(t, tp, newEnvOn(t, tp))
		})
	}
}

func build(t testing.TB, tp redistest.Topology, shared bool, smod func(*store.Config), opts ...option) *env {
	t.Helper()
	metrics := observability.NewMetrics("test", store.ReadOps)
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	spans := tracetest.NewSpanRecorder()
	tp2 := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp2.Shutdown(t.Context()) })

	timeout := 300 * time.Millisecond
	prefix := redistest.Prefix(t)
	rdb := redis.NewUniversalClient(store.Tune(tp.Options(), timeout))
	if err := observability.InstrumentRedis(rdb, tp2, metrics, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if shared {
			redistest.DeletePrefix(t, rdb, prefix)
		}
		_ = rdb.Close()
	})
	defaults := config.Default()
	cfg := defaults.API
	cfg.Version, cfg.ServiceName, cfg.MaxKeyBytes, cfg.MaxValueBytes = "test", "dubebox", 32, 1024
	// The tests' requests name example.com, which a token-less instance
	// answers only with ALLOW_NO_AUTH; TestBrowserGuard tests without it.
	cfg.AllowNoAuth = true
	scfg := defaults.Store
	scfg.KeyPrefix, scfg.Timeout, scfg.Near.NearSize = prefix, timeout, 0
	if smod != nil {
		smod(&scfg)
	}
	st := store.Open(t.Context(), rdb, scfg, metrics, log)
	deps := api.Deps{Store: st, Log: log, Metrics: metrics, TracerProvider: tp2}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	h := api.New(cfg, deps)
	return &env{h: h, rdb: rdb, prefix: prefix, metrics: metrics, spans: spans, logs: logs, node: tp.Nodes[0], store: st}
}

// do sends one request through the router. headers are name, value pairs.
func (e *env) do(t testing.TB, method, path, body string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequestWithContext(t.Context(), method, path, r)
	req.RemoteAddr = "192.0.2.7:4321"
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	checkAgainstOpenAPI(t, req, []byte(body), w)
	record(t, req, body)
	return w
}

// doFrom sends a GET from another client address.
func (e *env) doFrom(t testing.TB, remote, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, path, nil)
	req.RemoteAddr = remote
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	checkAgainstOpenAPI(t, req, nil, w)
	record(t, req, "")
	return w
}

// corpus is where the route tests' requests are written when
// DUBEBOX_CONTRACT_CORPUS names a file: make contract replays them through
// a validator this project did not write (internal/contract).
var corpus = sync.OnceValues(func() (*corpusFile, error) {
	path := os.Getenv("DUBEBOX_CONTRACT_CORPUS")
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &corpusFile{enc: json.NewEncoder(f)}, nil
})

type corpusFile struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// maxReplayedBody is the largest body the contract's instance reads
// (MAX_VALUE_BYTES=1024: twice that and 64 KiB); it refuses a larger one
// before reading it and closes the connection under the replay's upload,
// which then cannot read the 413. Such requests are checked here, against
// the document, and not replayed.
const maxReplayedBody = 2*1024 + 64<<10

// record writes one request to the corpus, if there is one. The Host and
// the client's address are the replay's own.
func record(t testing.TB, req *http.Request, body string) {
	t.Helper()
	c, err := corpus()
	if err != nil {
		t.Fatalf("DUBEBOX_CONTRACT_CORPUS: %v", err)
	}
	if c == nil || len(body) > maxReplayedBody {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.enc.Encode(contract.Request{Method: req.Method, Target: req.RequestURI, Header: req.Header, Body: body}); err != nil {
		t.Fatalf("DUBEBOX_CONTRACT_CORPUS: %v", err)
	}
}

// decode parses a JSON response body into a generic map.
func decode(t testing.TB, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %q", err, w.Body.String())
	}
	return m
}

// errorCode checks the error shape and returns its code.
func errorCode(t testing.TB, w *httptest.ResponseRecorder) string {
	t.Helper()
	m := decode(t, w)
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %s", w.Body.String())
	}
	code, _ := e["code"].(string)
	msg, _ := e["message"].(string)
	if code == "" || msg == "" {
		t.Fatalf("error without code or message: %s", w.Body.String())
	}
	if rid, _ := m["request_id"].(string); rid == "" || rid != w.Header().Get("X-Request-ID") {
		t.Fatalf("request_id %q does not match X-Request-ID %q", rid, w.Header().Get("X-Request-ID"))
	}
	return code
}

// sample reads one series of a metric from m: name and its label pairs,
// 0 when the series does not exist yet.
func sample(t testing.TB, m *observability.Metrics, name string, labels ...string) float64 {
	t.Helper()
	families, err := m.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, mt := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range mt.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue series
				}
			}
			switch {
			case mt.GetCounter() != nil:
				return mt.GetCounter().GetValue()
			case mt.GetGauge() != nil:
				return mt.GetGauge().GetValue()
			case mt.GetHistogram() != nil:
				return float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// requests is dubebox_http_requests_total for one method, route and code.
func requests(t testing.TB, m *observability.Metrics, method, route, code string) float64 {
	t.Helper()
	return sample(t, m, "dubebox_http_requests_total", "method", method, "route", route, "code", code)
}
