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
	"unicode/utf8"

	"github.com/dubebox/dubebox/observability"
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// RequestIDHeader carries the request id in and out.
const RequestIDHeader = "X-Request-ID"

// failureKey holds the *failure that respond or recoverPanics noted, for
// the request's one log line.
const failureKey = "dubebox.failure"

// UnmatchedRoute is the route label of a request that matched no route, so
// that random paths cannot grow the number of metric series.
const UnmatchedRoute = "unmatched"

// maxLoggedPath bounds the path written to a log line or a span: a client
// chooses it, and a megabyte of it would be a megabyte of log.
const maxLoggedPath = 1024

// failure is why a request failed, for its log line: the error underneath,
// the level it deserves, and for a panic its value and stack.
type failure struct {
	err   error
	level zapcore.Level
	panic string
	stack []byte
}

// recoverPanics answers a panic with a 500 in the API's error shape. It
// runs inside the tracing middleware, so the panic is recorded on the
// request's span, and inside the access log, which writes the request's
// one line with the panic's value and stack.
func (h *handler) recoverPanics(c *gin.Context) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		if p == http.ErrAbortHandler { //nolint:errorlint // net/http compares it the same way.
			panic(p)
		}
		span := trace.SpanFromContext(c.Request.Context())
		span.SetStatus(codes.Error, "panic")
		span.AddEvent("panic", trace.WithAttributes(semconv.ExceptionMessage(fmt.Sprint(p))))
		c.Set(failureKey, &failure{level: zapcore.ErrorLevel, panic: fmt.Sprint(p), stack: debug.Stack(),
			err: fmt.Errorf("panic: %v", p)})
		h.answer(c, Error{Code: CodeInternal, Message: internalMessage})
	}()
	c.Next()
}

// assignRequestID keeps a sane incoming X-Request-ID (1 to 128 characters of
// letters, digits and -_.:) and otherwise makes one, then echoes it on the
// response so that a user can quote it when reporting a problem.
func assignRequestID(c *gin.Context) {
	id := c.GetHeader(RequestIDHeader)
	if !saneRequestID(id) {
		id = newRequestID()
	}
	c.Header(RequestIDHeader, id)
	c.Next()
}

// requestID returns the id assignRequestID gave the request. It is read
// back from the answer's header, not kept in the context's keys: the
// first key costs each request a map.
func requestID(c *gin.Context) string {
	return c.Writer.Header().Get(RequestIDHeader)
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

// accessLog writes the request's one line, after it is answered: its
// method, route template, path (the :value of the tutorial's /set replaced
// by [redacted], and cut to maxLoggedPath), status, duration, bytes,
// client ip, request id and trace and span ids. A request that failed for
// a reason not the client's (500, 503, 504, 507) writes it as "request
// failed", at warn (error for a 500), with the error underneath; a panic
// adds its value and stack. Redis calls slower than
// observability.SlowRedisCall are counted on the line, which is then at
// warn at least (unless the client hung up), rather than logged on lines
// of their own: one request, one line. A client that hung up is recorded
// as 499, at info.
//
// Access lines carry no caller: it would always name this file, and finding
// it costs a stack walk per request. Their fields go in a pooled slice, as
// zap hands them to the core through an interface and they would otherwise
// be allocated for every request.
func (h *handler) accessLog() gin.HandlerFunc {
	log := h.log.Named("http").WithOptions(zap.WithCaller(false))
	pool := sync.Pool{New: func() any { s := make([]zap.Field, 0, 16); return &s }}
	return func(c *gin.Context) {
		start := time.Now()
		ctx, slow := observability.WithSlowCalls(c.Request.Context())
		c.Request = c.Request.WithContext(ctx)
		defer func() {
			status := c.Writer.Status()
			path := loggablePath(c)
			if path != c.Request.URL.Path {
				// otelgin put the raw path on the span; replace it too.
				trace.SpanFromContext(ctx).SetAttributes(semconv.URLPath(path))
			}
			msg, level := "request", zapcore.InfoLevel
			f, _ := c.Value(failureKey).(*failure)
			if f != nil {
				msg, level = "request failed", f.level
			}
			if slow.Count() > 0 && status != StatusClientClosedRequest {
				// A client that hung up is no news, even if it left
				// because Redis was slow: the Redis metrics tell that.
				level = max(level, zapcore.WarnLevel)
			}
			ce := log.Check(level, msg)
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
			if f != nil {
				fields = append(fields, zap.Error(f.err))
				if f.panic != "" {
					fields = append(fields, zap.String("panic", f.panic), zap.ByteString("stack", f.stack))
				}
			}
			if n := slow.Count(); n > 0 {
				cmd, d := slow.Slowest()
				fields = append(fields, zap.Int("slow_redis_calls", n),
					zap.String("slowest_redis_command", cmd), zap.Duration("slowest_redis_duration", d))
			}
			fields = observability.AppendTraceFields(fields, ctx)
			ce.Write(fields...)
			clear(fields)
			*fp = fields[:0]
			pool.Put(fp)
		}()
		c.Next()
	}
}

// httpMetrics counts and times every request by method, route template and
// status, and tracks requests in flight.
func httpMetrics(m *observability.Metrics) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		m.RequestStarted()
		panicked := true
		defer func() {
			m.RequestEnded()
			status := c.Writer.Status()
			if panicked {
				// recoverPanics, outside, is about to answer 500.
				status = http.StatusInternalServerError
			}
			if c.GetBool(streamKey) {
				m.CountStream(c.Request.Method, route(c), status)
				return
			}
			m.ObserveRequest(c.Request.Context(), c.Request.Method, route(c), status, time.Since(start))
		}()
		c.Next()
		panicked = false
	}
}

func route(c *gin.Context) string {
	if r := c.FullPath(); r != "" {
		return r
	}
	return UnmatchedRoute
}

// loggablePath is the request path safe to log, cut to maxLoggedPath: the
// tutorial's route /set/:key/:value carries a value in its path, which is
// replaced when that route matched.
func loggablePath(c *gin.Context) string {
	path := c.Request.URL.Path
	if c.FullPath() == "/set/:key/:value" {
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
		path = strings.Join(parts, "/")
	}
	return truncate(path, maxLoggedPath)
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
