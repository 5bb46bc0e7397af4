// Command baseline is what `make bench` measures DubeBox against, on the same
// machine and Redis in the same run, so that the results file can say how
// far a target is from what this machine allows at all. It is not part of
// the service.
//
// BASELINE_MODE picks one of four servers on HTTP_ADDR:
//
//   - nethttp: net/http alone answering GET /v1/kv/{key} with the answer a
//     near-cache hit gives (the key, a 64-byte value, its TTL), no Redis,
//     no router: the floor a read from memory cannot go under.
//   - hello: Gin answering GET /v1/kv/:key with a constant JSON document,
//     no Redis: the ceiling of the HTTP stack alone.
//   - bare: Gin and go-redis, GET /v1/kv/:key (GET) and PUT /v1/kv/:key
//     (SET), no telemetry at all.
//   - defaults: the same handlers with the straightforward telemetry the
//     issue describes, every piece left at its defaults: otelgin, redisotel
//     (statements and caller on), a zap production logger writing one
//     access line per request, and a Prometheus histogram with the trace id
//     as exemplar; spans go to OTEL_EXPORTER_OTLP_ENDPOINT with the OTLP
//     HTTP exporter, all sampled.
//
// Every mode answers GET /healthz, so the harness can wait for it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Getenv("BASELINE_MODE"), os.Getenv("HTTP_ADDR"), os.Getenv("REDIS_ADDR"))
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, mode, addr, redisAddr string) error {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	var h http.Handler = r
	switch mode {
	case "nethttp":
		h = bareHandler()
	case "hello":
		r.GET("/v1/kv/:key", func(c *gin.Context) {
			c.JSON(http.StatusOK, gin.H{"key": c.Param("key"), "value": "hello"})
		})
	case "bare", "defaults":
		rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
		defer func() { _ = rdb.Close() }()
		if mode == "defaults" {
			shutdown, err := withDefaults(ctx, r, rdb)
			if err != nil {
				return err
			}
			defer shutdown()
		}
		kv(r, rdb)
	default:
		return fmt.Errorf("BASELINE_MODE=%q: want hello, bare or defaults", mode)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// bareHandler answers what DubeBox answers from its near cache, written
// by hand: the same bytes, none of the work.
func bareHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	value := strings.Repeat("v", 64)
	type answer struct {
		Key        string `json:"key"`
		Value      string `json:"value"`
		TTLSeconds int64  `json:"ttl_seconds"`
	}
	mux.HandleFunc("GET /v1/kv/{key}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		//nolint:gosec // JSON, escaped by encoding/json, answered as application/json.
		_ = json.NewEncoder(w).Encode(answer{Key: r.PathValue("key"), Value: value, TTLSeconds: -1})
	})
	return mux
}

// kv is the straightforward string API: GET reads, PUT writes, keys under
// the "dubebox:" prefix as the service keeps them.
func kv(r *gin.Engine, rdb *redis.Client) {
	r.GET("/v1/kv/:key", func(c *gin.Context) {
		v, err := rdb.Get(c.Request.Context(), "dubebox:"+c.Param("key")).Result()
		switch {
		case errors.Is(err, redis.Nil):
			c.JSON(http.StatusNotFound, gin.H{"error": "not found"})
		case err != nil:
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": "unavailable"})
		default:
			c.JSON(http.StatusOK, gin.H{"key": c.Param("key"), "value": v})
		}
	})
	r.PUT("/v1/kv/:key", func(c *gin.Context) {
		var body struct {
			Value string `json:"value"`
		}
		if err := c.ShouldBindJSON(&body); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": "bad body"})
			return
		}
		if err := rdb.Set(c.Request.Context(), "dubebox:"+c.Param("key"), body.Value, 0).Err(); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": "unavailable"})
			return
		}
		c.JSON(http.StatusOK, gin.H{"key": c.Param("key"), "value": body.Value})
	})
}

// withDefaults adds the straightforward telemetry to r and rdb.
func withDefaults(ctx context.Context, r *gin.Engine, rdb *redis.Client) (func(), error) {
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	if err := redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(tp)); err != nil {
		return nil, err
	}
	log, err := zap.NewProduction()
	if err != nil {
		return nil, err
	}
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds", Help: "Time to answer.", Buckets: prometheus.DefBuckets,
	}, []string{"method", "route"})
	prometheus.NewRegistry().MustRegister(latency)
	r.Use(otelgin.Middleware("baseline", otelgin.WithTracerProvider(tp)), func(c *gin.Context) {
		start := time.Now()
		c.Next()
		d := time.Since(start)
		sc := trace.SpanContextFromContext(c.Request.Context())
		latency.WithLabelValues(c.Request.Method, c.FullPath()).(prometheus.ExemplarObserver).
			ObserveWithExemplar(d.Seconds(), prometheus.Labels{"trace_id": sc.TraceID().String()})
		log.Info("request", zap.String("method", c.Request.Method), zap.String("route", c.FullPath()),
			zap.String("path", c.Request.URL.Path), zap.Int("status", c.Writer.Status()), zap.Duration("duration", d),
			zap.String("trace_id", sc.TraceID().String()), zap.String("span_id", sc.SpanID().String()))
	})
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx)
		_ = log.Sync()
	}, nil
}
