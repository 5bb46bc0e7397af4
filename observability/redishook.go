package observability

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
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
// Metrics, by command and node, and logs it: at debug normally; past
// SlowRedisCall it is counted on the line of the request it served (see
// WithSlowCalls), or logged at warn when it served none. Add it after
// redisotel's hook so that it runs inside the command's span: it then
// names the operation and the node on that span, and its exemplars and
// log lines carry the trace id. It never looks at arguments, so values
// cannot leak through it.
type RedisHook struct {
	metrics *Metrics
	log     *zap.Logger
	// node is the address of the Redis node this hook's client talks to:
	// the label that tells one node's commands from another's. For a client
	// behind Sentinel it is the primary last dialed, which a failover
	// changes (see DialHook).
	node atomic.Pointer[string]
	// learn says the node is learned from the connections dialed.
	learn bool
}

// NewRedisHook returns a hook that records into m and logs to log, for a
// client of the node at addr ("" when it is learned from the dials).
func NewRedisHook(m *Metrics, log *zap.Logger, addr string) *RedisHook {
	h := &RedisHook{metrics: m, log: log.Named("redis"), learn: addr == ""}
	h.node.Store(&addr)
	return h
}

var _ redis.Hook = (*RedisHook)(nil)

// DialHook implements redis.Hook. A client behind Sentinel dials whichever
// node is the primary (go-redis hands the hook the placeholder address
// "FailoverClient"; the connection knows the real one): the node label
// follows it. (The store notices the failover itself and reports it.)
func (h *RedisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil || !h.learn {
			return conn, err
		}
		remote := conn.RemoteAddr().String()
		setServer(trace.SpanFromContext(ctx), remote)
		h.node.Store(&remote)
		return conn, nil
	}
}

// setServer puts a node's address on a span as server.address and
// server.port.
func setServer(span trace.Span, node string) {
	if host, port, err := net.SplitHostPort(node); err == nil {
		p, _ := strconv.Atoi(port)
		span.SetAttributes(semconv.ServerAddress(host), semconv.ServerPort(p))
	}
}

// nodeLabel is the node label of this hook's commands. It is read once the
// command has run, so that the node is known even for a client's first
// command; a learning hook also puts it on the command's span, where
// redisotel could not.
func (h *RedisHook) nodeLabel(span trace.Span) string {
	node := *h.node.Load()
	if h.learn {
		setServer(span, node)
	}
	return node
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
		node := h.nodeLabel(span)
		h.metrics.redisExemplars.observe(ctx, h.metrics.redisDuration.WithLabelValues(name, node), d.Seconds())
		h.count(name, node, err)
		h.logCall(ctx, name, 1, d, err)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook for pipelines and MULTI/EXEC:
// every command is counted with its own status, and the round trip is timed
// once under the command label "pipeline".
func (h *RedisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		span := trace.SpanFromContext(ctx)
		span.SetAttributes(semconv.DBOperationName("pipeline"))
		start := time.Now()
		err := next(ctx, cmds)
		d := time.Since(start)
		node := h.nodeLabel(span)
		h.metrics.redisExemplars.observe(ctx, h.metrics.redisDuration.WithLabelValues("pipeline", node), d.Seconds())
		for _, c := range cmds {
			h.count(c.Name(), node, c.Err())
		}
		h.logCall(ctx, "pipeline", len(cmds), d, err)
		return err
	}
}

func (h *RedisHook) count(name, node string, err error) {
	h.metrics.redisCommands.WithLabelValues(name, status(err), node).Inc()
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

// logCall writes one line per call at debug. A call slower than
// SlowRedisCall is counted on its request's line when it served one, and
// otherwise (a probe, the near cache's tracking) logged at warn. A failed
// call is not logged at a higher level here: the request it served writes
// the one line that explains the failure (with its status, request id and
// trace id), and a Redis error a client caused (WRONGTYPE, say) is a 4xx
// that only the access log needs. Classifying replies is the store's work.
func (h *RedisHook) logCall(ctx context.Context, name string, n int, d time.Duration, err error) {
	level := zapcore.DebugLevel
	if d > SlowRedisCall {
		if slow, ok := ctx.Value(slowCallsKey{}).(*SlowCalls); ok {
			slow.add(name, d)
		} else {
			level = zapcore.WarnLevel
		}
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
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		// On every node, inside its redisotel span, rather than on the
		// cluster client: each node's commands carry its address, and a
		// command sent to a node directly (the store's writes that wait
		// for replicas) is counted too, and never twice.
		c.OnNewNode(func(node *redis.Client) { node.AddHook(NewRedisHook(m, log, node.Options().Addr)) })
	case *redis.Client:
		addr := c.Options().Addr
		if _, _, err := net.SplitHostPort(addr); err != nil {
			// Behind Sentinel: the primary is learned from the dials.
			addr = ""
		}
		c.AddHook(NewRedisHook(m, log, addr))
	default:
		return fmt.Errorf("redis metrics: %T not supported", rdb)
	}
	return m.Register(NewPoolCollector(rdb.PoolStats))
}

// SlowCalls gathers the Redis calls of one request that were slower than
// SlowRedisCall, for the request's own log line.
type SlowCalls struct {
	mu      sync.Mutex
	n       int
	slowest time.Duration
	command string
}

type slowCallsKey struct{}

// WithSlowCalls returns a context whose Redis calls, when slow, are
// gathered in the returned SlowCalls rather than logged on lines of their
// own: one request, one line.
func WithSlowCalls(ctx context.Context) (context.Context, *SlowCalls) {
	s := &SlowCalls{}
	return context.WithValue(ctx, slowCallsKey{}, s), s
}

func (s *SlowCalls) add(command string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if d > s.slowest {
		s.slowest, s.command = d, command
	}
}

// Count is how many slow calls the request made.
func (s *SlowCalls) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Slowest is the slowest call's command and duration.
func (s *SlowCalls) Slowest() (string, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.command, s.slowest
}
