package observability_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/dubebox/dubebox/observability"
	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// telemetryRouter is a Gin router with the service's telemetry middleware in
// its order and a handler that runs one command through the Redis hook, as
// a GET does, but with no Redis behind it: what is measured is the
// telemetry path alone.
func telemetryRouter(b *testing.B, on bool) http.Handler {
	b.Helper()
	gin.SetMode(gin.ReleaseMode)
	sampler := sdktrace.NeverSample()
	level := zapcore.WarnLevel
	if on {
		sampler, level = sdktrace.AlwaysSample(), zapcore.InfoLevel
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(discard{}), level))
	m := observability.NewMetrics("bench")
	hook := observability.NewRedisHook(m, log)
	process := hook.ProcessPipelineHook(func(context.Context, []redis.Cmder) error { return nil })
	tracer := tp.Tracer("redis")

	r := gin.New()
	r.Use(
		observability.Recover(log, func(c *gin.Context) { c.AbortWithStatus(500) }),
		observability.AssignRequestID(),
		otelgin.Middleware("dubebox", otelgin.WithTracerProvider(tp), otelgin.WithPropagators(observability.Propagator()),
			otelgin.WithMeterProvider(noop.NewMeterProvider())),
		observability.AccessLog(log),
		observability.HTTPMetrics(m),
	)
	r.GET("/v1/kv/:key", func(c *gin.Context) {
		ctx, span := tracer.Start(c.Request.Context(), "redis.pipeline get pttl")
		cmds := []redis.Cmder{redis.NewStringCmd(ctx, "get", c.Param("key")), redis.NewDurationCmd(ctx, 1, "pttl", c.Param("key"))}
		_ = process(ctx, cmds)
		span.End()
		m.Lookup("get", true)
		c.JSON(http.StatusOK, gin.H{"key": c.Param("key"), "value": "v", "ttl_seconds": -1})
	})
	return r
}

func benchTelemetry(b *testing.B, on bool) {
	b.Helper()
	h := telemetryRouter(b, on)
	req := httptest.NewRequest(http.MethodGet, "/v1/kv/k", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkTelemetryOn is the request path with every request traced, the
// access line encoded and metrics recorded with exemplars.
func BenchmarkTelemetryOn(b *testing.B) { benchTelemetry(b, true) }

// BenchmarkTelemetryOff is the same path unsampled and with logs at warn:
// the difference is what telemetry costs a request.
func BenchmarkTelemetryOff(b *testing.B) { benchTelemetry(b, false) }
