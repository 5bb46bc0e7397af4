package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/api"
	"github.com/dubebox/dubebox/internal/config"
	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/store"
	"github.com/dubebox/dubebox/observability"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// benchHandler is the real router over the package's Redis with all
// telemetry on: every request sampled (spans batched to a no-op exporter), the
// access log encoded as JSON and discarded, metrics recorded.
func benchHandler(b *testing.B, sampled bool) (http.Handler, redis.UniversalClient, string) {
	b.Helper()
	rdb := redis.NewUniversalClient(store.Tune(&redis.UniversalOptions{Addrs: []string{redistest.Addr(b)}}, time.Second))
	prefix := redistest.Prefix(b)
	b.Cleanup(func() { redistest.DeletePrefix(b, rdb, prefix); _ = rdb.Close() })
	sampler := sdktrace.NeverSample()
	if sampled {
		sampler = sdktrace.AlwaysSample()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	m := observability.NewMetrics("bench", store.ReadOps)
	enc := zap.NewProductionEncoderConfig()
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(nopWriter{}), zapcore.InfoLevel))
	if err := observability.InstrumentRedis(rdb, tp, m, log); err != nil {
		b.Fatal(err)
	}
	cfg := config.Default()
	cfg.Store.KeyPrefix, cfg.Store.Timeout, cfg.Store.Near.NearSize = prefix, time.Second, 0
	st := store.Open(b.Context(), rdb, cfg.Store, m, log)
	h := api.New(cfg.API, api.Deps{Store: st, Log: log, Metrics: m, TracerProvider: tp})
	return h, rdb, prefix
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

func benchRequests(b *testing.B, h http.Handler, method, path, body string) {
	b.Helper()
	b.ReportAllocs()
	// The instance has no token, so it answers a request to localhost
	// alone, as it would on a developer's machine.
	target := "http://localhost:5000" + path
	for b.Loop() {
		var r *http.Request
		if body != "" {
			r = httptest.NewRequest(method, target, strings.NewReader(body))
		} else {
			r = httptest.NewRequest(method, target, nil)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body.String())
		}
	}
}

func BenchmarkGetTelemetryOn(b *testing.B) {
	h, rdb, prefix := benchHandler(b, true)
	rdb.Set(b.Context(), prefix+"k", strings.Repeat("v", 64), 0)
	benchRequests(b, h, "GET", "/v1/kv/k", "")
}

func BenchmarkGetTelemetryOff(b *testing.B) {
	h, rdb, prefix := benchHandler(b, false)
	rdb.Set(b.Context(), prefix+"k", strings.Repeat("v", 64), 0)
	benchRequests(b, h, "GET", "/v1/kv/k", "")
}

func BenchmarkPutTelemetryOn(b *testing.B) {
	h, _, _ := benchHandler(b, true)
	benchRequests(b, h, "PUT", "/v1/kv/k", `{"value":"`+strings.Repeat("v", 64)+`"}`)
}

// BenchmarkTelemetryOn is the middleware path alone (GET /healthz touches
// no Redis) with every request traced, the access line encoded and metrics
// recorded with exemplars.
func BenchmarkTelemetryOn(b *testing.B) {
	h, _, _ := benchHandler(b, true)
	benchRequests(b, h, "GET", "/healthz", "")
}

// BenchmarkTelemetryOff is the same path unsampled: the difference is what
// telemetry costs a request.
func BenchmarkTelemetryOff(b *testing.B) {
	h, _, _ := benchHandler(b, false)
	benchRequests(b, h, "GET", "/healthz", "")
}
