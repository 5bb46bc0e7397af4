// Package config reads DubeBox's settings from the environment, applies the
// documented defaults and validates every value once at start-up, so that a
// bad setting stops the process with a message naming the variable instead of
// failing later under traffic.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
)

// Config is every setting the service reads. It is built once by Load and
// then passed by value to the constructors that need a part of it.
type Config struct {
	HTTPAddr              string
	HTTPReadHeaderTimeout time.Duration
	HTTPReadTimeout       time.Duration
	HTTPWriteTimeout      time.Duration
	HTTPIdleTimeout       time.Duration
	ShutdownTimeout       time.Duration
	PprofAddr             string
	// GCPercent is the garbage collector's GOGC, -1 for off. The Go runtime
	// reads GOGC itself; the service only changes the default (see Load).
	GCPercent int

	RedisAddr        string
	RedisUsername    string
	RedisPassword    string
	RedisDB          int
	RedisTLS         bool
	RedisTimeout     time.Duration
	RedisPoolSize    int
	RedisPoolTimeout time.Duration
	redisURL         *url.URL

	KeyPrefix      string
	MaxKeyBytes    int
	MaxValueBytes  int
	MaxHeaderBytes int
	APIToken       string
	APIReadToken   string
	RateLimitRPS   float64
	RateLimitBurst int

	LogLevel  zapcore.Level
	LogFormat string

	ServiceName   string
	TraceExporter string
	OTLPEndpoint  string
	OTLPProtocol  string
	// SpanBatchSize is how many spans go in one export: the standard
	// OTEL_BSP_MAX_EXPORT_BATCH_SIZE, with a default of the service's own.
	SpanBatchSize int
}

// Error reports a setting that cannot be used. Its message always starts
// with the variable's name so that an operator knows what to fix.
type Error struct {
	Var    string
	Value  string
	Reason string
}

func (e *Error) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Var, e.Reason)
	}
	return fmt.Sprintf("%s=%q: %s", e.Var, e.Value, e.Reason)
}

// Load reads the configuration through getenv (os.Getenv in production, a map
// in tests). It returns the first invalid setting as an *Error.
func Load(getenv func(string) string) (Config, error) {
	r := reader{getenv: getenv}
	c := Config{
		HTTPAddr:              r.addr("HTTP_ADDR", ":5000"),
		HTTPReadHeaderTimeout: r.duration("HTTP_READ_HEADER_TIMEOUT", 5*time.Second),
		HTTPReadTimeout:       r.duration("HTTP_READ_TIMEOUT", 30*time.Second),
		HTTPWriteTimeout:      r.duration("HTTP_WRITE_TIMEOUT", 30*time.Second),
		HTTPIdleTimeout:       r.duration("HTTP_IDLE_TIMEOUT", 120*time.Second),
		ShutdownTimeout:       r.duration("SHUTDOWN_TIMEOUT", 10*time.Second),
		PprofAddr:             r.optionalAddr("PPROF_ADDR"),
		GCPercent:             r.gcPercent(),
		RedisTimeout:          r.duration("REDIS_TIMEOUT", 500*time.Millisecond),
		RedisPoolSize:         r.integer("REDIS_POOL_SIZE", 0, 0, 100000),
		RedisPoolTimeout:      r.duration("REDIS_POOL_TIMEOUT", 0),
		KeyPrefix:             r.str("KEY_PREFIX", "dubebox:"),
		MaxKeyBytes:           r.integer("MAX_KEY_BYTES", 512, 1, 1<<20),
		MaxValueBytes:         r.integer("MAX_VALUE_BYTES", 1<<20, 1, 512<<20),
		MaxHeaderBytes:        r.integer("MAX_HEADER_BYTES", 16<<10, 1<<10, 1<<20),
		APIToken:              getenv("API_TOKEN"),
		APIReadToken:          getenv("API_READ_TOKEN"),
		RateLimitRPS:          r.float("RATE_LIMIT_RPS", 0),
		LogLevel:              r.level("LOG_LEVEL"),
		LogFormat:             r.oneOf("LOG_FORMAT", "json", "json", "console"),
		ServiceName:           r.str("OTEL_SERVICE_NAME", "dubebox"),
		OTLPEndpoint:          firstSet(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT")),
		OTLPProtocol: r.oneOf("OTEL_EXPORTER_OTLP_PROTOCOL",
			"http/protobuf", "http/protobuf", "grpc"),
		// The SDK's default is 512. Marshalling that many spans is one burst
		// of CPU that requests queue behind: under the benchmark's open-loop
		// load at half the maximum, batches of 128 cut the p99 from 8-12 ms
		// to 6-7 ms at the same throughput (bench/results.md). The SDK queues
		// at most 2048 spans.
		SpanBatchSize: r.integer("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 128, 1, 2048),
	}
	if c.RedisPoolTimeout == 0 {
		// go-redis waits ReadTimeout+1s for a pooled connection by default;
		// tying it to REDIS_TIMEOUT keeps the bound a user configured.
		c.RedisPoolTimeout = c.RedisTimeout
	}
	r.redis(&c)
	c.RateLimitBurst = r.integer("RATE_LIMIT_BURST", max(1, int(math.Ceil(c.RateLimitRPS))), 1, 1<<20)
	if c.APIReadToken != "" && c.APIToken == "" {
		r.fail("API_READ_TOKEN", "", "needs API_TOKEN too: with only a read token nobody could write")
	}
	if c.APIReadToken != "" && c.APIReadToken == c.APIToken {
		r.fail("API_READ_TOKEN", "", "must differ from API_TOKEN")
	}
	c.TraceExporter = r.oneOf("OTEL_TRACES_EXPORTER", defaultExporter(c.OTLPEndpoint), "otlp", "console", "none")
	if c.TraceExporter == "otlp" && c.OTLPEndpoint == "" {
		r.fail("OTEL_TRACES_EXPORTER", "otlp", "needs OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if r.err != nil {
		return Config{}, r.err
	}
	return c, nil
}

func defaultExporter(endpoint string) string {
	if endpoint != "" {
		return "otlp"
	}
	return "none"
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// redis fills the connection settings. REDIS_URL wins when set; otherwise
// REDIS_ADDR, and when that is unset too the seed's REDIS_HOST and
// REDIS_PORT, so that the Flask tutorial's Compose file keeps working.
func (r *reader) redis(c *Config) {
	c.RedisPassword = r.getenv("REDIS_PASSWORD")
	c.RedisUsername = r.getenv("REDIS_USERNAME")
	c.RedisDB = r.integer("REDIS_DB", 0, 0, 1<<16)
	if raw := r.getenv("REDIS_URL"); raw != "" {
		r.redisURL(c, raw)
		return
	}
	if addr := r.getenv("REDIS_ADDR"); addr != "" {
		c.RedisAddr = r.addr("REDIS_ADDR", "")
		return
	}
	host := r.str("REDIS_HOST", "localhost")
	port := r.integer("REDIS_PORT", 6379, 1, 65535)
	c.RedisAddr = net.JoinHostPort(host, strconv.Itoa(port))
}

func (r *reader) redisURL(c *Config, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		// The raw value may hold a password, so it is not echoed back.
		r.fail("REDIS_URL", "", "want redis://[user:password@]host:port[/db] or rediss://...")
		return
	}
	c.redisURL = u
	c.RedisTLS = u.Scheme == "rediss"
	c.RedisAddr = u.Host
	if u.Port() == "" {
		c.RedisAddr = net.JoinHostPort(u.Hostname(), "6379")
	}
	if u.User != nil {
		if name := u.User.Username(); name != "" {
			c.RedisUsername = name
		}
		if pw, ok := u.User.Password(); ok {
			c.RedisPassword = pw
		}
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			r.fail("REDIS_URL", "", "the path must be a database number")
			return
		}
		c.RedisDB = n
	}
}

// Fields returns the effective configuration for the start-up log line, with
// the password, the token and the URL's credentials masked.
func (c Config) Fields() map[string]any {
	redisURL := ""
	if c.redisURL != nil {
		redisURL = c.redisURL.Redacted()
	}
	return map[string]any{
		"HTTP_ADDR":                      c.HTTPAddr,
		"HTTP_READ_HEADER_TIMEOUT":       c.HTTPReadHeaderTimeout.String(),
		"HTTP_READ_TIMEOUT":              c.HTTPReadTimeout.String(),
		"HTTP_WRITE_TIMEOUT":             c.HTTPWriteTimeout.String(),
		"HTTP_IDLE_TIMEOUT":              c.HTTPIdleTimeout.String(),
		"SHUTDOWN_TIMEOUT":               c.ShutdownTimeout.String(),
		"PPROF_ADDR":                     c.PprofAddr,
		"GOGC":                           c.GCPercent,
		"REDIS_ADDR":                     c.RedisAddr,
		"REDIS_URL":                      redisURL,
		"REDIS_USERNAME":                 c.RedisUsername,
		"REDIS_PASSWORD":                 mask(c.RedisPassword),
		"REDIS_DB":                       c.RedisDB,
		"REDIS_TLS":                      c.RedisTLS,
		"REDIS_TIMEOUT":                  c.RedisTimeout.String(),
		"REDIS_POOL_SIZE":                c.RedisPoolSize,
		"REDIS_POOL_TIMEOUT":             c.RedisPoolTimeout.String(),
		"KEY_PREFIX":                     c.KeyPrefix,
		"MAX_KEY_BYTES":                  c.MaxKeyBytes,
		"MAX_VALUE_BYTES":                c.MaxValueBytes,
		"MAX_HEADER_BYTES":               c.MaxHeaderBytes,
		"API_TOKEN":                      mask(c.APIToken),
		"API_READ_TOKEN":                 mask(c.APIReadToken),
		"RATE_LIMIT_RPS":                 c.RateLimitRPS,
		"RATE_LIMIT_BURST":               c.RateLimitBurst,
		"LOG_LEVEL":                      c.LogLevel.String(),
		"LOG_FORMAT":                     c.LogFormat,
		"OTEL_SERVICE_NAME":              c.ServiceName,
		"OTEL_TRACES_EXPORTER":           c.TraceExporter,
		"OTEL_EXPORTER_OTLP_ENDPOINT":    c.OTLPEndpoint,
		"OTEL_EXPORTER_OTLP_PROTOCOL":    c.OTLPProtocol,
		"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": c.SpanBatchSize,
	}
}

func mask(secret string) string {
	if secret == "" {
		return ""
	}
	return "********"
}

// reader collects the first error so that Load reads like a list of settings.
type reader struct {
	getenv func(string) string
	err    error
}

func (r *reader) fail(name, value, reason string) {
	if r.err == nil {
		r.err = &Error{Var: name, Value: value, Reason: reason}
	}
}

func (r *reader) str(name, def string) string {
	if v := r.getenv(name); v != "" {
		return v
	}
	return def
}

func (r *reader) oneOf(name, def string, allowed ...string) string {
	v := strings.ToLower(r.str(name, def))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.fail(name, v, "want one of "+strings.Join(allowed, ", "))
	return def
}

func (r *reader) integer(name string, def, minimum, maximum int) int {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < minimum || n > maximum {
		r.fail(name, v, fmt.Sprintf("want a whole number from %d to %d", minimum, maximum))
		return def
	}
	return n
}

// DefaultGCPercent is GOGC when the environment does not set it. At Go's
// default of 100 the collector ran about 75 times a second under the
// benchmark's load, as the live heap is only a few MiB, and took a tenth of
// the server's CPU; at 200 the server spends about 12% less CPU per request
// and its peak RSS stays under 50 MiB (bench/results.md).
const DefaultGCPercent = 200

// gcPercent reads GOGC: a percentage of at least 1, or "off" as the runtime
// accepts it.
func (r *reader) gcPercent() int {
	if r.getenv("GOGC") == "off" {
		return -1
	}
	return r.integer("GOGC", DefaultGCPercent, 1, 1<<20)
}

func (r *reader) float(name string, def float64) float64 {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		r.fail(name, v, "want a number of requests per second, 0 for no limit")
		return def
	}
	return f
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > time.Duration(math.MaxInt32)*time.Second {
		r.fail(name, v, "want a positive Go duration such as 500ms or 10s")
		return def
	}
	return d
}

func (r *reader) addr(name, def string) string {
	v := r.str(name, def)
	if _, port, err := net.SplitHostPort(v); err != nil || !validPort(port) {
		r.fail(name, v, "want host:port (the host may be empty, as in :5000)")
	}
	return v
}

func (r *reader) optionalAddr(name string) string {
	if r.getenv(name) == "" {
		return ""
	}
	return r.addr(name, "")
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}

func (r *reader) level(name string) zapcore.Level {
	v := r.str(name, "info")
	lvl, err := zapcore.ParseLevel(v)
	if err != nil || lvl < zapcore.DebugLevel || lvl > zapcore.ErrorLevel {
		r.fail(name, v, "want debug, info, warn or error")
		return zapcore.InfoLevel
	}
	return lvl
}

// IsConfigError reports whether err came from Load, so that main can exit
// with the usage status 2 instead of the runtime failure status 1.
func IsConfigError(err error) bool {
	var ce *Error
	return errors.As(err, &ce)
}
