package api

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestServerSpansMatchOtelgin sends the same requests through serverSpans
// and through otelgin v0.65, which it replaced, and wants the same span
// from both: name, kind, status, parent and every attribute.
func TestServerSpansMatchOtelgin(t *testing.T) {
	t.Parallel()
	prop := propagation.TraceContext{}
	engine := func(mw gin.HandlerFunc) *gin.Engine {
		r := gin.New()
		if err := r.SetTrustedProxies([]string{"10.0.0.0/8"}); err != nil {
			t.Fatal(err)
		}
		r.Use(mw)
		r.GET("/v1/kv/:key", func(c *gin.Context) { c.String(http.StatusOK, "hello") })
		r.HEAD("/v1/kv/:key", func(c *gin.Context) { c.Status(http.StatusNoContent) })
		r.Handle("PURGE", "/v1/kv/:key", func(c *gin.Context) { c.Status(http.StatusAccepted) })
		r.PUT("/fail", func(c *gin.Context) { c.String(http.StatusServiceUnavailable, "down") })
		return r
	}
	tests := []struct {
		name, method, target, host, remote, proto string
		header                                    map[string]string
	}{
		{name: "GET with a user agent", method: "GET", target: "/v1/kv/a", host: "localhost:5000", remote: "127.0.0.1:40000",
			header: map[string]string{"User-Agent": "curl/8"}},
		{name: "through a trusted proxy", method: "GET", target: "/v1/kv/a", host: "api.example.com", remote: "10.1.2.3:1234",
			header: map[string]string{"X-Forwarded-For": "203.0.113.9, 10.1.2.3"}},
		{name: "untrusted X-Forwarded-For", method: "GET", target: "/v1/kv/a", host: "api.example.com:443", remote: "192.0.2.1:5",
			header: map[string]string{"X-Forwarded-For": "203.0.113.9"}},
		{name: "continuing a trace", method: "GET", target: "/v1/kv/a?x=1", host: "[::1]:8080", remote: "[::1]:5555",
			header: map[string]string{"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
		{name: "HEAD", method: "HEAD", target: "/v1/kv/a", host: "localhost", remote: "127.0.0.1:1"},
		{name: "a method HTTP does not define", method: "PURGE", target: "/v1/kv/a", host: "localhost:80", remote: "127.0.0.1:1"},
		{name: "a lower-case method", method: "get", target: "/v1/kv/a", host: "localhost:5000", remote: "127.0.0.1:1"},
		{name: "no route", method: "GET", target: "/nowhere", host: "localhost:5000", remote: "127.0.0.1:1"},
		{name: "a 503", method: "PUT", target: "/fail", host: "localhost:5000", remote: "127.0.0.1:1", proto: "HTTP/2.0"},
	}
	for _, service := range []string{"dubebox", "", "dubebox:9000"} {
		ours, theirs := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
		ourTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(ours))
		theirTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(theirs))
		a := engine(serverSpans(service, ourTP, prop))
		b := engine(otelgin.Middleware(service, otelgin.WithTracerProvider(theirTP), otelgin.WithPropagators(prop),
			otelgin.WithMeterProvider(noop.NewMeterProvider())))
		for _, tt := range tests {
			for _, h := range []http.Handler{a, b} {
				req := httptest.NewRequest(tt.method, tt.target, nil)
				req.Host, req.RemoteAddr = tt.host, tt.remote
				if tt.proto != "" {
					req.Proto = tt.proto
				}
				for k, v := range tt.header {
					req.Header.Set(k, v)
				}
				h.ServeHTTP(httptest.NewRecorder(), req)
			}
		}
		got, want := ours.Ended(), theirs.Ended()
		if len(got) != len(tests) || len(want) != len(tests) {
			t.Fatalf("service %q: %d and %d spans, want %d each", service, len(got), len(want), len(tests))
		}
		for i, tt := range tests {
			g, w := got[i], want[i]
			if g.Name() != w.Name() || g.SpanKind() != w.SpanKind() || g.Status() != w.Status() ||
				g.Parent().SpanID() != w.Parent().SpanID() || g.Parent().TraceID() != w.Parent().TraceID() {
				t.Errorf("service %q, %s: span %q %v %v parent %v; otelgin's %q %v %v parent %v", service, tt.name,
					g.Name(), g.SpanKind(), g.Status(), g.Parent().SpanID(), w.Name(), w.SpanKind(), w.Status(), w.Parent().SpanID())
			}
			if ga, wa := attrs(g.Attributes()), attrs(w.Attributes()); !maps.Equal(ga, wa) {
				t.Errorf("service %q, %s: attributes\n%v\nwant otelgin's\n%v", service, tt.name, ga, wa)
			}
		}
	}
}

func attrs(kvs []attribute.KeyValue) map[attribute.Key]string {
	m := make(map[attribute.Key]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.Type().String() + ":" + kv.Value.String()
	}
	return m
}
