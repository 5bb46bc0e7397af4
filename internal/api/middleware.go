package api

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/dubebox/dubebox/observability"
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// RequestIDHeader carries the request id in and out.
const RequestIDHeader = "X-Request-ID"

const requestIDKey = "dubebox.request_id"

// UnmatchedRoute is the route label of a request that matched no route, so
// that random paths cannot grow the number of metric series.
const UnmatchedRoute = "unmatched"

// recoverPanics answers a panic with a 500 in the API's error shape and logs
// it with its stack. It is the outermost middleware, so it also catches
// panics in the middleware below it; those record the request as a 500
// themselves (see finish).
func (h *handler) recoverPanics() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler { //nolint:errorlint // net/http compares it the same way.
				panic(p)
			}
			h.log.Error("panic while serving a request",
				zap.String("panic", fmt.Sprint(p)),
				zap.ByteString("stack", debug.Stack()),
				zap.String("request_id", requestID(c)),
				zap.String("method", c.Request.Method),
				zap.String("route", route(c)),
			)
			h.respond(c, &Error{Code: CodeInternal, Message: internalMessage})
		}()
		c.Next()
	}
}

// assignRequestID keeps a sane incoming X-Request-ID (1 to 128 characters of
// letters, digits and -_.:) and otherwise makes one, then echoes it on the
// response so that a user can quote it when reporting a problem.
func assignRequestID(c *gin.Context) {
	id := c.GetHeader(RequestIDHeader)
	if !saneRequestID(id) {
		id = newRequestID()
	}
	c.Set(requestIDKey, id)
	c.Header(RequestIDHeader, id)
	c.Next()
}

// requestID returns the id assignRequestID gave the request.
func requestID(c *gin.Context) string {
	return c.GetString(requestIDKey)
}

func saneRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		ok := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
			b == '-' || b == '_' || b == '.' || b == ':'
		if !ok {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux since Go 1.24.
	return hex.EncodeToString(b[:])
}

// accessLog writes one line per request, after it is answered, with its
// method, route template, path (the :value of the tutorial's /set replaced
// by [redacted]), status, duration, bytes, client ip, request id and trace
// and span ids. It runs inside the tracing middleware, so the ids are there.
//
// Access lines carry no caller: it would always name this file, and finding
// it costs a stack walk per request. Their fields go in a pooled slice, as
// zap hands them to the core through an interface and they would otherwise
// be allocated for every request.
func accessLog(log *zap.Logger) gin.HandlerFunc {
	log = log.Named("http").WithOptions(zap.WithCaller(false))
	pool := sync.Pool{New: func() any { s := make([]zap.Field, 0, 12); return &s }}
	return func(c *gin.Context) {
		start := time.Now()
		ctx := c.Request.Context()
		panicked := true
		defer func() {
			status := finish(c, panicked)
			span := trace.SpanFromContext(ctx)
			if panicked {
				// otelgin ends the span while the panic passes; mark it here.
				span.SetStatus(codes.Error, "panic")
			}
			path := loggablePath(c)
			if path != c.Request.URL.Path {
				// otelgin put the raw path on the span; replace it too.
				span.SetAttributes(semconv.URLPath(path))
			}
			ce := log.Check(zap.InfoLevel, "request")
			if ce == nil {
				return
			}
			fp := pool.Get().(*[]zap.Field)
			fields := append((*fp)[:0],
				zap.String("method", c.Request.Method),
				zap.String("route", route(c)),
				zap.String("path", path),
				zap.Int("status", status),
				zap.Duration("duration", time.Since(start)),
				zap.Int("bytes", max(c.Writer.Size(), 0)),
				zap.String("client_ip", c.ClientIP()),
				zap.String("request_id", requestID(c)),
			)
			fields = observability.AppendTraceFields(fields, ctx)
			ce.Write(fields...)
			clear(fields)
			*fp = fields[:0]
			pool.Put(fp)
		}()
		c.Next()
		panicked = false
	}
}

// httpMetrics counts and times every request by method, route template and
// status, and tracks requests in flight.
func httpMetrics(m *observability.Metrics) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		m.HTTPInFlight.Inc()
		panicked := true
		defer func() {
			m.HTTPInFlight.Dec()
			m.ObserveRequest(c.Request.Context(), c.Request.Method, route(c), finish(c, panicked), time.Since(start))
		}()
		c.Next()
		panicked = false
	}
}

// finish returns the status a request was answered with: 500 when a panic is
// on its way to recoverPanics, which will write that 500.
func finish(c *gin.Context, panicked bool) int {
	if panicked {
		return http.StatusInternalServerError
	}
	return c.Writer.Status()
}

func route(c *gin.Context) string {
	if r := c.FullPath(); r != "" {
		return r
	}
	return UnmatchedRoute
}

// loggablePath is the request path safe to log: the tutorial's route
// /set/:key/:value carries a value in its path, which is replaced.
func loggablePath(c *gin.Context) string {
	if c.Param("value") == "" {
		return c.Request.URL.Path
	}
	parts := strings.Split(c.FullPath(), "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") {
			if p == ":value" {
				parts[i] = "[redacted]"
			} else {
				parts[i] = c.Param(p[1:])
			}
		}
	}
	return strings.Join(parts, "/")
}
