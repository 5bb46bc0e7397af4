package observability

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// SlowRedisCall is the duration past which a Redis call is logged at warn.
const SlowRedisCall = 100 * time.Millisecond

// RedisHook is a go-redis hook that counts and times every command into
// Metrics and logs it: at debug normally, at warn past SlowRedisCall. Add it after redisotel's hook so that it runs inside the
// command's span: it then names the operation on that span and its exemplars
// and log lines carry the trace id. It never looks at arguments, so values
// cannot leak through it.
type RedisHook struct {
	metrics *Metrics
	log     *zap.Logger
}

// NewRedisHook returns a hook that records into m and logs to log.
func NewRedisHook(m *Metrics, log *zap.Logger) *RedisHook {
	return &RedisHook{metrics: m, log: log.Named("redis")}
}

var _ redis.Hook = (*RedisHook)(nil)

// DialHook implements redis.Hook; dials are left to redisotel's span.
func (h *RedisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

// ProcessHook implements redis.Hook for single commands.
func (h *RedisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := cmd.Name()
		span := trace.SpanFromContext(ctx)
		span.SetAttributes(semconv.DBOperationName(name))
		start := time.Now()
		err := next(ctx, cmd)
		d := time.Since(start)
		h.metrics.redisExemplars.observe(ctx, h.metrics.RedisDuration.WithLabelValues(name), d.Seconds())
		h.count(name, err)
		h.logCall(ctx, name, 1, d, err)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook for pipelines and MULTI/EXEC:
// every command is counted with its own status, and the round trip is timed
// once under the command label "pipeline".
func (h *RedisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		trace.SpanFromContext(ctx).SetAttributes(semconv.DBOperationName("pipeline"))
		start := time.Now()
		err := next(ctx, cmds)
		d := time.Since(start)
		h.metrics.redisExemplars.observe(ctx, h.metrics.RedisDuration.WithLabelValues("pipeline"), d.Seconds())
		for _, c := range cmds {
			h.count(c.Name(), c.Err())
		}
		h.logCall(ctx, "pipeline", len(cmds), d, err)
		return err
	}
}

func (h *RedisHook) count(name string, err error) {
	h.metrics.RedisCommands.WithLabelValues(name, status(err)).Inc()
}

func status(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, redis.Nil):
		return "nil"
	default:
		return "error"
	}
}

// logCall writes one line per call: at debug, or at warn past SlowRedisCall.
// A failed call is not logged at a higher level here: the request it served
// writes the one line that explains the failure (with its status, request id
// and trace id), and a Redis error a client caused (WRONGTYPE, say) is a 4xx
// that only the access log needs. Classifying replies is the store's work.
func (h *RedisHook) logCall(ctx context.Context, name string, n int, d time.Duration, err error) {
	level := zapcore.DebugLevel
	if d > SlowRedisCall {
		level = zapcore.WarnLevel
	}
	ce := h.log.Check(level, "redis call")
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.String("command", name),
		zap.Duration("duration", d),
		zap.String("status", status(err)),
	}
	if n > 1 {
		fields = append(fields, zap.Int("commands", n))
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		fields = append(fields, zap.Error(err))
	}
	ce.Write(AppendTraceFields(fields, ctx)...)
}

// TraceFields returns the trace_id and span_id of ctx's span as log fields,
// or nothing when there is no valid span.
func TraceFields(ctx context.Context) []zap.Field {
	return AppendTraceFields(nil, ctx)
}

// AppendTraceFields appends the trace_id and span_id of ctx's span to
// fields, without a slice of its own on the request path.
func AppendTraceFields(fields []zap.Field, ctx context.Context) []zap.Field {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return fields
	}
	return append(fields,
		zap.String("trace_id", sc.TraceID().String()),
		zap.String("span_id", sc.SpanID().String()),
	)
}

// InstrumentRedis adds tracing (redisotel, a client span per command or
// pipeline, without statements so that values never reach a span), then the
// metrics and logging hook inside it, and registers the pool collector.
func InstrumentRedis(rdb redis.UniversalClient, tp trace.TracerProvider, m *Metrics, log *zap.Logger) error {
	if err := redisotel.InstrumentTracing(rdb,
		redisotel.WithTracerProvider(tp),
		redisotel.WithDBStatement(false),
		// The caller's file and line cost a stack walk per command and tell
		// nothing here: every command comes from the store.
		redisotel.WithCallerEnabled(false),
	); err != nil {
		return fmt.Errorf("redis tracing: %w", err)
	}
	hook := NewRedisHook(m, log)
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		// On every node, inside its redisotel span, rather than on the
		// cluster client: a command sent to a node directly (the store's
		// writes that wait for replicas) is then counted too, and never
		// twice.
		cc.OnNewNode(func(node *redis.Client) { node.AddHook(hook) })
	} else {
		rdb.AddHook(hook)
	}
	return m.Registry.Register(NewPoolCollector(rdb.PoolStats))
}
