// Package observability holds DubeBox's telemetry providers: the zap logger,
// the Prometheus registry and collectors, the OpenTelemetry tracer provider
// and the go-redis hook that measures every command. The HTTP middleware that
// measures every request (beside the router, in internal/api) reports to.
// run builds each piece and hands it to the code that needs it; the one
// process-wide piece is go-redis's logger (see RedisLogger).
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
// "console", human-readable lines) at level and above to w, and the function
// that flushes it; call that last, before exiting.
//
// Lines are buffered (up to 256 KiB, flushed every second and at a line at
// warn level or above): one write per access line was a system call per
// request, about 5% of the CPU of a GET. A crash can lose up to a second of
// info lines; warnings, errors and panics are flushed at once.
func NewLogger(w io.Writer, level zapcore.Level, format string) (*zap.Logger, func()) {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	// Durations are milliseconds with a fraction: most Redis calls take
	// well under one. Only measured times (duration, the slowest Redis
	// call) are logged so, as the reference says; settings are logged as
	// Go writes them ("5s"), with their unit.
	enc.EncodeDuration = func(d time.Duration, pe zapcore.PrimitiveArrayEncoder) {
		pe.AppendFloat64(float64(d) / float64(time.Millisecond))
	}
	var encoder zapcore.Encoder
	if format == "console" {
		// Colours only on a terminal: in a file they are escape codes.
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
		if isTerminal(w) {
			enc.EncodeLevel = zapcore.CapitalColorLevelEncoder
		}
		encoder = zapcore.NewConsoleEncoder(enc)
	} else {
		encoder = zapcore.NewJSONEncoder(enc)
	}
	buffered := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(w), Size: 256 << 10, FlushInterval: time.Second}
	core := zapcore.NewCore(encoder, buffered, level)
	log := zap.New(flushOnError{core, buffered}, zap.AddCaller(), zap.AddStacktrace(zapcore.DPanicLevel), zap.ErrorOutput(buffered))
	return log, func() { _ = buffered.Stop() }
}

// isTerminal reports whether w is a character device (a terminal), as
// tools that colour their output check.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// flushOnError is a core that flushes the buffer after every line at warn
// level or above (a failed request's line is at warn), so that what explains
// a failure is never left in memory.
type flushOnError struct {
	zapcore.Core
	buf *zapcore.BufferedWriteSyncer
}

func (c flushOnError) With(fields []zapcore.Field) zapcore.Core {
	return flushOnError{c.Core.With(fields), c.buf}
}

func (c flushOnError) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c flushOnError) Write(e zapcore.Entry, fields []zapcore.Field) error {
	err := c.Core.Write(e, fields)
	if e.Level >= zapcore.WarnLevel {
		_ = c.buf.Sync()
	}
	return err
}

// RedisLogger adapts zap to go-redis's internal logger (dial failures, pool
// trouble), so that those lines are JSON like every other line.
//
// go-redis v9 has one logger per process (redis.SetLogger) and no option to
// give each client its own, so run installs this once; in the in-process
// tests, where several runs share a process, the last one installed receives
// every client's lines. They are written at debug: each of them repeats the
// cause of a failed request, which that request's own line already reports
// at warn, so that one failure is one line.
type RedisLogger struct{ log *zap.Logger }

// NewRedisLogger returns the adapter, logging at debug under "redis.client".
func NewRedisLogger(log *zap.Logger) RedisLogger {
	return RedisLogger{log: log.Named("redis.client").WithOptions(zap.AddCallerSkip(1))}
}

// Printf implements go-redis's internal.Logging.
func (l RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ce := l.log.Check(zapcore.DebugLevel, ""); ce != nil {
		ce.Message = fmt.Sprintf(format, v...)
		ce.Write(TraceFields(ctx)...)
	}
}
