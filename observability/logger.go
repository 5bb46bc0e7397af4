// Package observability wires DubeBox's telemetry: the zap logger, the
// Prometheus registry and collectors, the OpenTelemetry tracer provider, the
// go-redis hook that measures every command, and the Gin middleware that
// measures every request. Nothing here is global: run builds each piece and
// hands it to the code that needs it.
package observability

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger returns a logger that writes JSON lines (or, with format
// "console", human-readable lines) at level and above to w.
func NewLogger(w io.Writer, level zapcore.Level, format string) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	// Durations are milliseconds with a fraction: most Redis calls take
	// well under one.
	enc.EncodeDuration = func(d time.Duration, pe zapcore.PrimitiveArrayEncoder) {
		pe.AppendFloat64(float64(d) / float64(time.Millisecond))
	}
	var encoder zapcore.Encoder
	if format == "console" {
		enc.EncodeLevel = zapcore.CapitalColorLevelEncoder
		encoder = zapcore.NewConsoleEncoder(enc)
	} else {
		encoder = zapcore.NewJSONEncoder(enc)
	}
	ws := zapcore.AddSync(w)
	if f, ok := w.(*os.File); ok {
		// A plain file (stdout) is written to without a lock per line by zap;
		// Lock makes concurrent writes safe without buffering them.
		ws = zapcore.Lock(f)
	}
	core := zapcore.NewCore(encoder, ws, level)
	return zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.DPanicLevel), zap.ErrorOutput(ws))
}

// RedisLogger adapts zap to go-redis's internal logger (dial failures, pool
// trouble), so that those lines are JSON like every other line. go-redis
// keeps one logger per process: run installs this with redis.SetLogger.
type RedisLogger struct{ log *zap.Logger }

// NewRedisLogger returns the adapter, logging at warn under "redis.client".
func NewRedisLogger(log *zap.Logger) RedisLogger {
	return RedisLogger{log: log.Named("redis.client").WithOptions(zap.AddCallerSkip(1))}
}

// Printf implements go-redis's internal.Logging.
func (l RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...), TraceFields(ctx)...)
}
