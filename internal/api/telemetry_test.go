package api_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/servicetest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const secret = "TOP-SECRET-VALUE-7d1f"

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// TestSpans checks the server span, its Redis child span and their
// attributes, that an incoming traceparent is continued (the test client
// stands for a trusted proxy), and that no value reaches a span.
func TestSpans(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", func(c *apiConfig, _ *apiDeps) { c.TrustedProxies = []string{"192.0.2.7"} })
	if w := e.do(t, "PUT", "/v1/kv/k", `{"value":"`+secret+`"}`); w.Code != 200 {
		t.Fatal(w.Body.String())
	}
	if w := e.do(t, "GET", "/set/k2/"+secret, ""); w.Code != 200 {
		t.Fatal(w.Body.String())
	}
	if w := e.do(t, "GET", "/metrics", ""); w.Code != 200 {
		t.Fatal(w.Code)
	}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if w := e.do(t, "GET", "/v1/kv/k", "", "traceparent", parent); w.Code != 200 {
		t.Fatal(w.Body.String())
	}
	spans := e.spans.Ended()
	for _, s := range spans {
		if s.Name() == "GET /metrics" {
			t.Errorf("a scrape of /metrics was traced")
		}
	}

	var server, child sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
			continue
		}
		switch s.SpanKind() {
		case trace.SpanKindServer:
			server = s
		case trace.SpanKindClient:
			child = s
		}
	}
	if server == nil || child == nil {
		t.Fatalf("want a server span and a client span in the incoming trace, got %d spans", len(spans))
	}
	if got, want := server.Name(), "GET /v1/kv/:key"; got != want {
		t.Errorf("server span name: got %q, want %q", got, want)
	}
	if got := server.Parent().SpanID().String(); got != "00f067aa0ba902b7" {
		t.Errorf("server span parent: got %s, want the incoming span", got)
	}
	if child.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Errorf("redis span's parent is not the server span")
	}
	ca := attrs(child)
	for k, want := range map[attribute.Key]string{
		"db.system":         "redis",
		"db.operation.name": "pipeline",
		"server.address":    "127.0.0.1",
	} {
		if got := ca[k].AsString(); got != want {
			t.Errorf("redis span %s: got %q, want %q", k, got, want)
		}
	}
	if ca["server.port"].AsInt64() == 0 {
		t.Errorf("redis span has no server.port")
	}
	if ca["db.redis.num_cmd"].AsInt64() != 2 {
		t.Errorf("pipeline span counts %d commands, want 2", ca["db.redis.num_cmd"].AsInt64())
	}
	if got := attrs(server)["http.route"].AsString(); got != "/v1/kv/:key" {
		t.Errorf("http.route: got %q", got)
	}

	for _, s := range spans {
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.String(), secret) {
				t.Errorf("span %q attribute %s holds the value", s.Name(), kv.Key)
			}
		}
		for _, ev := range s.Events() {
			for _, kv := range ev.Attributes {
				if strings.Contains(kv.Value.String(), secret) {
					t.Errorf("span %q event attribute %s holds the value", s.Name(), kv.Key)
				}
			}
		}
	}
}

// TestMetrics checks the request, cache and Redis counters, the in-flight
// gauge and the exemplars of the latency histogram.
func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.do(t, "PUT", "/v1/kv/k", `{"value":"v"}`)
	e.do(t, "GET", "/v1/kv/k", "")
	e.do(t, "GET", "/v1/kv/k", "")
	e.do(t, "GET", "/v1/kv/missing", "")
	e.do(t, "GET", "/get/missing", "")
	e.do(t, "GET", "/no/such/route/"+secret, "")

	m := e.metrics
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"GET kv 200", requests(t, m, "GET", "/v1/kv/:key", "200"), 2},
		{"GET kv 404", requests(t, m, "GET", "/v1/kv/:key", "404"), 1},
		{"PUT kv 200", requests(t, m, "PUT", "/v1/kv/:key", "200"), 1},
		{"unmatched 404", requests(t, m, "GET", "unmatched", "404"), 1},
		{"get hits", sample(t, m, "dubebox_cache_lookups_total", "operation", "get", "result", "hit"), 2},
		{"get misses", sample(t, m, "dubebox_cache_lookups_total", "operation", "get", "result", "miss"), 2},
		{"redis set ok", sample(t, m, "dubebox_redis_commands_total", "command", "set", "status", "ok", "node", e.node) +
			sample(t, m, "dubebox_redis_commands_total", "command", "set", "status", "nil", "node", e.node), 1},
		{"redis get nil", sample(t, m, "dubebox_redis_commands_total", "command", "get", "status", "nil", "node", e.node), 2},
		{"redis get ok", sample(t, m, "dubebox_redis_commands_total", "command", "get", "status", "ok", "node", e.node), 2},
		{"in flight", sample(t, m, "dubebox_http_requests_in_flight"), 0},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}

	families, err := m.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exemplars := 0
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if strings.Contains(l.GetValue(), secret) || strings.Contains(l.GetValue(), "/no/such") {
					t.Errorf("metric %s has a raw path or value in a label: %s", f.GetName(), l.GetValue())
				}
			}
			if f.GetName() == "dubebox_http_request_duration_seconds" || f.GetName() == "dubebox_redis_command_duration_seconds" {
				exemplars += countExemplars(t, mt.GetHistogram())
			}
		}
	}
	if exemplars == 0 {
		t.Errorf("no trace_id exemplars on the latency histograms")
	}
	for _, name := range []string{"dubebox_redis_pool_hits_total", "dubebox_build_info", "go_goroutines", "process_resident_memory_bytes"} {
		if n, err := testutil.GatherAndCount(prometheus.GathererFunc(m.Gather), name); err != nil || n == 0 {
			t.Errorf("%s is not exported (%d, %v)", name, n, err)
		}
	}
}

func countExemplars(t *testing.T, h *dto.Histogram) int {
	t.Helper()
	n := 0
	for _, b := range h.GetBucket() {
		ex := b.GetExemplar()
		if ex == nil {
			continue
		}
		for _, l := range ex.GetLabel() {
			if l.GetName() == "trace_id" && len(l.GetValue()) == 32 {
				n++
			}
		}
	}
	return n
}

// TestAccessLog checks the fields of the access line, that it carries the
// trace of the request, and that a value in the tutorial's /set path is redacted.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	w := e.do(t, "GET", "/set/k/"+secret, "", "X-Request-ID", "rid-1")
	if w.Code != 200 {
		t.Fatal(w.Body.String())
	}
	lines := e.logs.FilterMessage("request").All()
	if len(lines) != 1 {
		t.Fatalf("want 1 access line, got %d", len(lines))
	}
	f := lines[0].ContextMap()
	want := map[string]any{
		"method": "GET", "route": "/set/:key/:value", "path": "/set/k/[redacted]",
		"status": int64(200), "client_ip": "192.0.2.7", "request_id": "rid-1",
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("access log %s: got %v, want %v", k, f[k], v)
		}
	}
	for _, k := range []string{"duration", "bytes", "trace_id", "span_id"} {
		if _, ok := f[k]; !ok {
			t.Errorf("access log has no %s", k)
		}
	}
	var server sdktrace.ReadOnlySpan
	for _, s := range e.spans.Ended() {
		if s.SpanKind() == trace.SpanKindServer {
			server = s
		}
	}
	if server == nil || f["trace_id"] != server.SpanContext().TraceID().String() {
		t.Errorf("access log trace_id %v is not the server span's", f["trace_id"])
	}
	if got := attrs(server)["url.path"].AsString(); got != "/set/k/[redacted]" {
		t.Errorf("span url.path: got %q", got)
	}
	for _, l := range e.logs.All() {
		for k, v := range l.ContextMap() {
			if strings.Contains(toString(v), secret) {
				t.Errorf("log %q field %s holds the value", l.Message, k)
			}
		}
	}
	sets := e.logs.FilterMessage("redis call").FilterField(zap.String("command", "set")).All()
	if len(sets) != 1 || sets[0].Level != zapcore.DebugLevel || sets[0].ContextMap()["trace_id"] != f["trace_id"] {
		t.Errorf("want one debug line for the SET in the request's trace, got %v", sets)
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// TestRedisTrouble checks the answers when Redis is gone, stalled, full or
// answers something unexpected, and that the service recovers by itself.
func TestRedisTrouble(t *testing.T) {
	t.Parallel()

	t.Run("gone then back", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		e := newEnv(t, srv.Addr)
		srv.Kill()
		for _, p := range []string{"/v1/kv/k", "/readyz"} {
			w := e.do(t, "GET", p, "")
			if w.Code != http.StatusServiceUnavailable || errorCode(t, w) != "unavailable" || w.Header().Get("Retry-After") == "" {
				t.Errorf("%s with Redis gone: %d %s %v", p, w.Code, w.Body.String(), w.Header())
			}
		}
		if l := e.logs.FilterMessage("request failed").All(); len(l) == 0 || l[0].Level != zapcore.WarnLevel {
			t.Errorf("want a warn line with the cause, got %v", l)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		// Readiness reuses its check for a second (TestReadinessIsShared).
		time.Sleep(1100 * time.Millisecond)
		if w := e.do(t, "GET", "/readyz", ""); w.Code != 200 {
			t.Errorf("readyz after Redis came back: %d %s", w.Code, w.Body.String())
		}
		if w := e.do(t, "PUT", "/v1/kv/k", `{"value":"v"}`); w.Code != 200 {
			t.Errorf("PUT after Redis came back: %d %s", w.Code, w.Body.String())
		}
	})

	t.Run("stalled", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		e := newEnv(t, srv.Addr)
		e.do(t, "GET", "/readyz", "") // open a pooled connection first
		if err := srv.Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Resume() })
		start := time.Now()
		w := e.do(t, "GET", "/v1/kv/k", "")
		if w.Code != http.StatusGatewayTimeout || errorCode(t, w) != "timeout" {
			t.Errorf("GET with Redis stalled: %d %s", w.Code, w.Body.String())
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("took %v, want about REDIS_TIMEOUT (300ms)", took)
		}
		// One line for the failure: the slow Redis call that made it is
		// on that line, not on one of its own.
		var loud []observer.LoggedEntry
		for _, l := range e.logs.All() {
			if l.Level >= zapcore.WarnLevel && l.ContextMap()["request_id"] != nil || l.Message == "redis call" && l.Level >= zapcore.WarnLevel {
				loud = append(loud, l)
			}
		}
		if len(loud) != 1 || loud[0].Message != "request failed" {
			t.Fatalf("want one line at warn for the timed-out GET, got %v", loud)
		}
		ctx := loud[0].ContextMap()
		if ctx["status"] != int64(504) || ctx["slow_redis_calls"] == nil || ctx["trace_id"] == nil || ctx["path"] != "/v1/kv/k" {
			t.Errorf("the line lacks its status, slow Redis calls, trace id or path: %v", ctx)
		}
		if !strings.Contains(w.Body.String(), "may still have been applied") {
			t.Errorf("a 504 does not say a write may have been applied: %s", w.Body.String())
		}
	})

	t.Run("client hangs up", func(t *testing.T) {
		t.Parallel()
		// Redis is paused, so every request is still waiting on it when
		// its client gives up: that is the client's doing, recorded as
		// 499, not a Redis outage (503) or a timeout (504), and logged at
		// info.
		srv := redistest.Start(t)
		e := newEnv(t, srv.Addr)
		hs := httptest.NewServer(e.h)
		t.Cleanup(hs.Close)
		e.do(t, "GET", "/readyz", "")
		if err := srv.Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Resume() })
		client := &http.Client{Timeout: 50 * time.Millisecond}
		for _, r := range []struct{ method, path, body string }{
			{"PUT", "/v1/hash/hot", `{"fields":{"f":"v"}}`},
			{"PUT", "/v1/kv/k", `{"value":"v"}`},
			{"GET", "/v1/kv/k", ""},
			{"POST", "/v1/list/q/push", `{"values":["a"]}`},
		} {
			req, _ := http.NewRequestWithContext(t.Context(), r.method, hs.URL+r.path, strings.NewReader(r.body))
			if resp, err := client.Do(req); err == nil {
				_ = resp.Body.Close()
				t.Fatalf("%s %s answered %d while Redis is paused", r.method, r.path, resp.StatusCode)
			}
		}
		deadline := time.Now().Add(2 * time.Second)
		for e.logs.FilterField(zap.Int("status", 499)).Len() < 4 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		for _, r := range [][2]string{{"PUT", "/v1/hash/:key"}, {"PUT", "/v1/kv/:key"}, {"GET", "/v1/kv/:key"}, {"POST", "/v1/list/:key/push"}} {
			if got := requests(t, e.metrics, r[0], r[1], "499"); got != 1 {
				t.Errorf("%s %s: %v requests counted 499, want 1", r[0], r[1], got)
			}
			for _, code := range []string{"503", "504"} {
				if got := requests(t, e.metrics, r[0], r[1], code); got != 0 {
					t.Errorf("%s %s: a client hanging up was counted %s", r[0], r[1], code)
				}
			}
		}
		for _, l := range e.logs.All() {
			if l.Level >= zapcore.WarnLevel {
				t.Errorf("a client hanging up was logged at %v: %s %v", l.Level, l.Message, l.ContextMap())
			}
		}
	})

	t.Run("full", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t, "--maxmemory", "1", "--maxmemory-policy", "noeviction")
		e := newEnv(t, srv.Addr)
		for _, wr := range servicetest.Writes {
			w := e.do(t, wr.Method, wr.Path, wr.Body)
			if w.Code != wr.FullStatus {
				t.Errorf("%s %s with Redis full: %d %s, want %d", wr.Method, wr.Path, w.Code, w.Body.String(), wr.FullStatus)
			}
			if wr.FullStatus == http.StatusInsufficientStorage && w.Code == wr.FullStatus && errorCode(t, w) != "insufficient_storage" {
				t.Errorf("%s %s: code %s", wr.Method, wr.Path, errorCode(t, w))
			}
		}
		if w := e.do(t, "GET", "/v1/kv/k", ""); w.Code != http.StatusNotFound {
			t.Errorf("GET with Redis full: %d, want reads to keep working", w.Code)
		}
	})

	t.Run("one failed request is one line", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		e := newEnv(t, srv.Addr)
		srv.Kill()
		w := e.do(t, "PUT", "/v1/hash/k", `{"fields":{"f":"v"}}`)
		if w.Code != http.StatusServiceUnavailable {
			t.Fatalf("PUT with Redis gone: %d %s", w.Code, w.Body.String())
		}
		var loud []string
		for _, l := range e.logs.All() {
			if l.Level >= zapcore.WarnLevel {
				loud = append(loud, l.Message)
			}
		}
		if len(loud) != 1 || loud[0] != "request failed" {
			t.Fatalf("want one line at warn or above, got %q", loud)
		}
		l := e.logs.FilterMessage("request failed").All()[0]
		ctx := l.ContextMap()
		if l.Level != zapcore.WarnLevel || ctx["request_id"] != w.Header().Get("X-Request-ID") || ctx["trace_id"] == nil ||
			ctx["route"] != "/v1/hash/:key" || ctx["status"] != int64(503) || ctx["path"] != "/v1/hash/k" {
			t.Errorf("the line lacks its level, request id, trace id, route, status or path: %v %v", l.Level, ctx)
		}
		if n := e.logs.FilterMessage("request").Len(); n != 0 {
			t.Errorf("the failed request wrote an access line besides its failure line")
		}
	})

	t.Run("unexpected reply is a bare 500", func(t *testing.T) {
		t.Parallel()
		// A Redis without GET answers "ERR unknown command", which the
		// store does not expect.
		srv := redistest.Start(t, "--rename-command", "GET", "")
		e := newEnv(t, srv.Addr)
		w := e.do(t, "GET", "/v1/kv/k", "")
		if w.Code != http.StatusInternalServerError || errorCode(t, w) != "internal" {
			t.Fatalf("got %d %s", w.Code, w.Body.String())
		}
		if strings.Contains(w.Body.String(), "unknown command") {
			t.Errorf("500 leaks internals: %s", w.Body.String())
		}
		l := e.logs.FilterMessage("request failed").All()
		if len(l) != 1 || l[0].Level != zapcore.ErrorLevel || !strings.Contains(toString(l[0].ContextMap()["error"]), "unknown command") {
			t.Errorf("want the full error logged at error, got %v", l)
		}
	})

	t.Run("panic", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, "", withPanic())
		w := e.do(t, "GET", "/v1/kv/k", "")
		if w.Code != http.StatusInternalServerError || errorCode(t, w) != "internal" {
			t.Fatalf("got %d %s", w.Code, w.Body.String())
		}
		// One line for the whole failure, at error, with the panic, its
		// stack, the status and every id that leads to it.
		var loud []observer.LoggedEntry
		for _, l := range e.logs.All() {
			if l.Level >= zapcore.WarnLevel {
				loud = append(loud, l)
			}
		}
		if len(loud) != 1 || loud[0].Message != "request failed" || loud[0].Level != zapcore.ErrorLevel {
			t.Fatalf("want one line at error for the panic, got %v", loud)
		}
		ctx := loud[0].ContextMap()
		if !strings.Contains(toString(ctx["stack"]), "panicky.Get") || ctx["panic"] != "boom in the store" {
			t.Errorf("the line lacks the panic or its stack: %v", ctx)
		}
		if ctx["status"] != int64(500) || ctx["route"] != "/v1/kv/:key" || ctx["path"] != "/v1/kv/k" ||
			ctx["request_id"] != w.Header().Get("X-Request-ID") || ctx["trace_id"] == nil {
			t.Errorf("the line lacks its status, route, path, request id or trace id: %v", ctx)
		}
		if n := e.logs.FilterFieldKey("request_id").Len(); n != 1 {
			t.Errorf("the panic wrote %d lines, want 1: %v", n, e.logs.All())
		}
		if got := requests(t, e.metrics, "GET", "/v1/kv/:key", "500"); got != 1 {
			t.Errorf("the panic is not counted as a 500: %v", got)
		}
		for _, s := range e.spans.Ended() {
			if s.SpanKind() == trace.SpanKindServer && s.Status().Code != codes.Error {
				t.Errorf("server span status %v, want error", s.Status())
			}
		}
	})
}

// TestRedisTelemetryNamesTheNode checks, on every topology, that each Redis
// span carries the data node it went to (not a Sentinel, not go-redis's
// "FailoverClient") and that the Redis metrics carry it as their node
// label.
func TestRedisTelemetryNamesTheNode(t *testing.T) {
	//nolint:thelper // a test body, run once per topology.
	onEveryTopology(t, func(t *testing.T, tp redistest.Topology, e *env) {
		for i := range 10 {
			e.do(t, "PUT", fmt.Sprintf("/v1/kv/k%d", i), `{"value":"v"}`)
			e.do(t, "GET", fmt.Sprintf("/v1/kv/k%d", i), "")
		}
		nodes := map[string]bool{}
		for _, n := range tp.Nodes {
			nodes[n] = true
		}
		seen := map[string]bool{}
		for _, s := range e.spans.Ended() {
			if s.SpanKind() != trace.SpanKindClient || !strings.HasPrefix(s.Name(), "redis.") && s.Name() != "set" && s.Name() != "get" {
				continue
			}
			a := attrs(s)
			addr := net.JoinHostPort(a["server.address"].AsString(), strconv.FormatInt(a["server.port"].AsInt64(), 10))
			if !nodes[addr] {
				t.Errorf("span %q names %s, not one of the data nodes %v", s.Name(), addr, tp.Nodes)
			}
			seen[addr] = true
		}
		if len(seen) == 0 {
			t.Fatal("no Redis client span")
		}
		labelled := map[string]bool{}
		mfs, err := e.metrics.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "dubebox_redis_commands_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "node" {
						labelled[l.GetValue()] = true
					}
				}
			}
		}
		for n := range labelled {
			if !nodes[n] {
				t.Errorf("dubebox_redis_commands_total has node=%q, not a data node of %v", n, tp.Nodes)
			}
		}
		if tp.Name == "cluster" && len(labelled) < 3 {
			t.Errorf("on a Cluster the commands went to %d primaries, want all 3: %v", len(labelled), labelled)
		}
	})
}
