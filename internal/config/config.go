// Package config reads DubeBox's settings from the environment, applies the
// documented defaults and validates every value once at start-up, so that a
// bad setting stops the process with a message naming the variable instead of
// failing later under traffic.
//
// Every setting is one tagged field of Config or of a package's config that
// Config holds (api.Config, store.Config, observability.TracingConfig):
//
//	env:"NAME"        the variable (read by github.com/caarlos0/env)
//	envDefault:"..."  its default
//	secret:"true"     masked in the log; secret:"url" logs the URL redacted
//	valid:"..."       what Load accepts: "lo..hi" or "lo.." for numbers,
//	                  "positive" or "optional" (zero allowed) for durations,
//	                  "addr" (host:port), "oneof=a|b" (case-insensitive),
//	                  "level" (debug to error); ",optional" lets "" through
//	log:"-"           not logged on its own: folded into another setting
//
// So adding a setting is adding a field, and the start-up log, the defaults
// and the list of variables (Vars) are all read from the same tags.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/dubebox/dubebox/internal/api"
	"github.com/dubebox/dubebox/internal/setting"
	"github.com/dubebox/dubebox/internal/store"
	"github.com/dubebox/dubebox/observability"
	"go.uber.org/zap/zapcore"
)

// Config is every setting the service reads, grouped as the packages take
// them. It is built once by Load and then passed by value.
type Config struct {
	HTTP    HTTP
	Log     Log
	Store   store.Config
	API     api.Config
	Tracing observability.TracingConfig

	// GCPercent is the garbage collector's GOGC, -1 for off. The Go runtime
	// reads GOGC itself; the service only changes the default (see
	// DefaultGCPercent).
	GCPercent GCPercent `env:"GOGC" envDefault:"200"`
	// MemoryLimit is the garbage collector's soft limit, GOMEMLIMIT, which
	// the Go runtime reads itself: the service only checks it at start and
	// logs it. A deployment with a memory limit sets it below that limit,
	// so that the collector works harder before the pod is killed.
	MemoryLimit MemoryLimit `env:"GOMEMLIMIT"`

	// The OTLP exporters read their endpoints themselves; Load only needs
	// to know whether one is set, to pick the exporter's default.
	OTLPEndpoint       string `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	OTLPTracesEndpoint string `env:"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"`

	// The original Flask tutorial's variables, used when neither REDIS_URL
	// nor REDIS_ADDR is set; logged as the REDIS_ADDR they make.
	RedisHost string `env:"REDIS_HOST" envDefault:"localhost" log:"-"`
	RedisPort int    `env:"REDIS_PORT" envDefault:"6379" valid:"1..65535" log:"-"`
}

// HTTP is the server's own settings.
type HTTP struct {
	ListenAddr        string        `env:"HTTP_ADDR" envDefault:":5000" valid:"addr"`
	ReadHeaderTimeout time.Duration `env:"HTTP_READ_HEADER_TIMEOUT" envDefault:"5s" valid:"positive"`
	ReadTimeout       time.Duration `env:"HTTP_READ_TIMEOUT" envDefault:"30s" valid:"positive"`
	WriteTimeout      time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"30s" valid:"positive"`
	IdleTimeout       time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"120s" valid:"positive"`
	ShutdownTimeout   time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" valid:"positive"`
	// PprofAddr serves net/http/pprof, which has no authentication: on a
	// loopback address only (reach it with kubectl port-forward or ssh).
	PprofAddr string `env:"PPROF_ADDR" valid:"loopback,optional"`
	// MetricsAddr, when set, serves /metrics on an address of its own
	// instead of the API's, so that a public listener does not publish
	// the service's internals (its Redis nodes' addresses among them).
	MetricsAddr string `env:"METRICS_ADDR" valid:"addr,optional"`
	// MaxConnections bounds the connections the server holds at once,
	// before any of them has sent a header: past it, new connections wait
	// in the kernel's queue until one closes. With the header cap it
	// bounds what clients without a token can make the server hold.
	MaxConnections int `env:"MAX_CONNECTIONS" envDefault:"1024" valid:"1..1048576"`
}

// Log is where and how the service logs.
type Log struct {
	Level  zapcore.Level `env:"LOG_LEVEL" envDefault:"info" valid:"level"`
	Format string        `env:"LOG_FORMAT" envDefault:"json" valid:"oneof=json|console"`
}

// DefaultGCPercent is GOGC when the environment does not set it. At Go's
// default of 100 the collector ran about 75 times a second under the
// benchmark's load, as the live heap is only a few MiB, and took a tenth of
// the server's CPU; at 200 the server spends about 12% less CPU per request
// and its peak RSS stays lower (docs/reference.md#performance has the
// figures).
const DefaultGCPercent = 200

// GCPercent is GOGC: a percentage of at least 1, or "off" (-1).
type GCPercent int

// UnmarshalText reads GOGC as the runtime accepts it.
func (g *GCPercent) UnmarshalText(b []byte) error {
	if string(b) == "off" {
		*g = -1
		return nil
	}
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 1 || n > 1<<20 {
		return errors.New("want a whole number from 1 to 1048576, or off")
	}
	*g = GCPercent(n)
	return nil
}

// MemoryLimit is GOMEMLIMIT as the Go runtime reads it: a number of bytes
// with an optional unit (B, KiB, MiB, GiB, TiB), or "off"; "" for none.
type MemoryLimit string

// UnmarshalText checks GOMEMLIMIT as the runtime would accept it.
func (m *MemoryLimit) UnmarshalText(b []byte) error {
	s := string(b)
	if s == "off" {
		*m = MemoryLimit(s)
		return nil
	}
	num := strings.TrimRight(s, "BKMGTi")
	unit := s[len(num):]
	n, err := strconv.ParseUint(num, 10, 63)
	if err != nil || n == 0 || !slices.Contains([]string{"", "B", "KiB", "MiB", "GiB", "TiB"}, unit) {
		return errors.New("want a number of bytes with an optional unit (B, KiB, MiB, GiB, TiB), such as 200MiB, or off")
	}
	*m = MemoryLimit(s)
	return nil
}

// Error reports a setting that cannot be used. Its message always starts
// with the variable's name so that an operator knows what to fix.
type Error = setting.Error

// IsConfigError reports whether err came from Load, so that main can exit
// with the usage status 2 instead of the runtime failure status 1.
func IsConfigError(err error) bool {
	var ce *Error
	return errors.As(err, &ce)
}

// Load reads the configuration through getenv (os.Getenv in production, a map
// in tests), applies the defaults, validates every value and fills what is
// derived from other settings. It returns the first invalid setting as an
// *Error.
func Load(getenv func(string) string) (Config, error) {
	var c Config
	settings := walk(&c)
	environ := map[string]string{}
	for _, s := range settings {
		if v := getenv(s.name); v != "" {
			environ[s.name] = v
		}
	}
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		return Config{}, parseError(err, settings, environ)
	}
	for _, s := range walk(&c) {
		if reason := s.check(); reason != "" {
			return Config{}, s.fail(reason)
		}
	}
	if err := c.resolve(environ); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Default is the configuration with every variable unset: the defaults,
// for tests and tools that build the service's pieces themselves.
func Default() Config {
	c, err := Load(func(string) string { return "" })
	if err != nil {
		panic("config: the defaults do not validate: " + err.Error())
	}
	return c
}

// resolve fills the settings that follow from others and checks the rules
// that span several variables: each package's own (its config's Validate)
// and those across packages. environ is the variables that were set.
func (c *Config) resolve(environ map[string]string) error {
	if err := c.onlyLoopbackWithoutToken(environ["HTTP_ADDR"] != ""); err != nil {
		return err
	}
	if err := c.Store.Validate(); err != nil {
		return err
	}
	switch {
	case c.Store.Topology() != "single":
		// REDIS_ADDR and the tutorial's host and port play no part.
		c.Store.Addr = ""
	case c.Store.URL != "":
		if err := c.applyRedisURL(); err != nil {
			return err
		}
	case c.Store.Addr == "":
		c.Store.Addr = net.JoinHostPort(c.RedisHost, strconv.Itoa(c.RedisPort))
	}
	c.Store.Resolve()
	c.API.Resolve()
	if err := c.API.Validate(); err != nil {
		return err
	}
	endpoint := c.OTLPTracesEndpoint != "" || c.OTLPEndpoint != ""
	switch {
	case c.Tracing.Exporter == "" && endpoint:
		c.Tracing.Exporter = "otlp"
	case c.Tracing.Exporter == "":
		c.Tracing.Exporter = "none"
	case c.Tracing.Exporter == "otlp" && !endpoint:
		return &Error{Var: "OTEL_TRACES_EXPORTER", Value: "otlp", Reason: "needs OTEL_EXPORTER_OTLP_ENDPOINT"}
	}
	return nil
}

// onlyLoopbackWithoutToken keeps an instance without API_TOKEN off the
// network: it listens on loopback (its default :5000 becomes
// 127.0.0.1:5000), and an address other than loopback that was asked for
// explicitly is refused, unless ALLOW_NO_AUTH=true says the operator means
// it.
func (c *Config) onlyLoopbackWithoutToken(explicit bool) error {
	if c.API.APIToken != "" || c.API.AllowNoAuth || LoopbackAddr(c.HTTP.ListenAddr) {
		return nil
	}
	if explicit {
		return &Error{Var: "HTTP_ADDR", Value: c.HTTP.ListenAddr,
			Reason: "without API_TOKEN the service listens on loopback only: set API_TOKEN, listen on 127.0.0.1, or set ALLOW_NO_AUTH=true to serve every interface without authentication"}
	}
	_, port, _ := net.SplitHostPort(c.HTTP.ListenAddr)
	c.HTTP.ListenAddr = net.JoinHostPort("127.0.0.1", port)
	return nil
}

// LoopbackAddr reports whether a host:port listens on loopback only.
func LoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// applyRedisURL takes the address, credentials, database and TLS from
// REDIS_URL. The raw value may hold a password, so it is never echoed back.
func (c *Config) applyRedisURL() error {
	u, err := url.Parse(c.Store.URL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return &Error{Var: "REDIS_URL", Reason: "want redis://[user:password@]host:port[/db] or rediss://..."}
	}
	c.Store.TLS = u.Scheme == "rediss"
	c.Store.Addr = u.Host
	if u.Port() == "" {
		c.Store.Addr = net.JoinHostPort(u.Hostname(), "6379")
	}
	if u.User != nil {
		if name := u.User.Username(); name != "" {
			c.Store.Username = name
		}
		if pw, ok := u.User.Password(); ok {
			c.Store.Password = pw
		}
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return &Error{Var: "REDIS_URL", Reason: "the path must be a database number"}
		}
		c.Store.DB = n
	}
	return nil
}

// Fields returns the configuration in force for the start-up log line, one
// entry per variable, with secrets masked and REDIS_URL's credentials
// redacted.
func (c Config) Fields() map[string]any {
	out := map[string]any{}
	for _, s := range walk(&c) {
		if s.log {
			out[s.name] = s.logValue()
		}
	}
	return out
}

// Var describes one environment variable the service reads.
type Var struct {
	Name    string
	Default string
	Secret  bool
}

// Vars lists every variable the service reads, once each, in the order of
// Config: what deployment templates and their tests check against.
func Vars() []Var {
	var out []Var
	seen := map[string]bool{}
	for _, s := range walk(&Config{}) {
		if !seen[s.name] {
			seen[s.name] = true
			out = append(out, Var{Name: s.name, Default: s.def, Secret: s.secret != ""})
		}
	}
	return out
}

// variable is one tagged field of a Config, found by walk: one setting.
type variable struct {
	field  string // the Go field's name, which env's errors report
	name   string
	def    string
	secret string
	valid  string
	log    bool
	value  reflect.Value
}

// walk lists the tagged fields of c and of the structs it holds.
func walk(c *Config) []variable {
	var out []variable
	var visit func(v reflect.Value)
	visit = func(v reflect.Value) {
		t := v.Type()
		for i := range t.NumField() {
			f, fv := t.Field(i), v.Field(i)
			name := f.Tag.Get("env")
			if name == "" {
				if f.Type.Kind() == reflect.Struct && f.IsExported() {
					visit(fv)
				}
				continue
			}
			def, _ := f.Tag.Lookup("envDefault")
			out = append(out, variable{
				field: f.Name, name: name, def: def,
				secret: f.Tag.Get("secret"), valid: f.Tag.Get("valid"),
				log: f.Tag.Get("log") != "-", value: fv,
			})
		}
	}
	visit(reflect.ValueOf(c).Elem())
	return out
}

func (s variable) fail(reason string) *Error {
	e := &Error{Var: s.name, Reason: reason}
	if s.secret == "" {
		e.Value = fmt.Sprint(s.logValue())
	}
	return e
}

func (s variable) logValue() any {
	v := s.value.Interface()
	switch {
	case s.secret == "url" && s.value.String() != "":
		if u, err := url.Parse(s.value.String()); err == nil {
			return u.Redacted()
		}
		return "********"
	case s.secret != "":
		if s.value.IsZero() {
			return ""
		}
		return "********"
	}
	if str, ok := v.(fmt.Stringer); ok {
		return str.String()
	}
	return v
}

// check validates the parsed value against the field's valid tag and says
// what is wrong, or "" when it is fine.
func (s variable) check() string {
	rule, optional := strings.CutSuffix(s.valid, ",optional")
	v := s.value
	switch {
	case rule == "":
		return ""
	case rule == "addr":
		if optional && v.String() == "" {
			return ""
		}
		if _, port, err := net.SplitHostPort(v.String()); err != nil || !validPort(port) {
			return "want host:port (the host may be empty, as in :5000)"
		}
	case rule == "loopback":
		if optional && v.String() == "" {
			return ""
		}
		if !LoopbackAddr(v.String()) {
			return "want a loopback host:port, such as 127.0.0.1:6060: it has no authentication"
		}
	case rule == "addrs":
		for i := range v.Len() {
			if host, port, err := net.SplitHostPort(v.Index(i).String()); err != nil || host == "" || !validPort(port) {
				return "want host:port,host:port,..."
			}
		}
	case strings.HasPrefix(rule, "oneof="):
		allowed := strings.Split(strings.TrimPrefix(rule, "oneof="), "|")
		got := strings.ToLower(v.String())
		v.SetString(got)
		if (optional && got == "") || slices.Contains(allowed, got) {
			return ""
		}
		return "want one of " + strings.Join(allowed, ", ")
	case rule == "level":
		if l, _ := v.Interface().(zapcore.Level); l < zapcore.DebugLevel || l > zapcore.ErrorLevel {
			return "want debug, info, warn or error"
		}
	case rule == "positive" || rule == "optional":
		d := time.Duration(v.Int())
		if d < 0 || (d == 0 && rule == "positive") || d > time.Duration(math.MaxInt32)*time.Second {
			return "want a positive Go duration such as 500ms or 10s"
		}
	case strings.Contains(rule, ".."):
		return checkRange(v, rule)
	}
	return ""
}

// checkRange checks a number against "lo..hi" or "lo..".
func checkRange(v reflect.Value, rule string) string {
	lo, hi, _ := strings.Cut(rule, "..")
	switch v.Kind() {
	case reflect.Float64:
		f, min := v.Float(), mustFloat(lo)
		if math.IsNaN(f) || math.IsInf(f, 0) || f < min || (hi != "" && f > mustFloat(hi)) {
			if hi != "" {
				return "want a number from " + lo + " to " + hi
			}
			return "want a number of at least " + lo + ", 0 for off"
		}
	default:
		n := v.Int()
		if n < int64(mustFloat(lo)) || (hi != "" && n > int64(mustFloat(hi))) {
			return fmt.Sprintf("want a whole number from %s to %s", lo, hi)
		}
	}
	return ""
}

func mustFloat(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		panic("config: bad bound in a valid tag: " + s)
	}
	return f
}

// parseError names the variable behind the first value env could not parse.
func parseError(err error, settings []variable, environ map[string]string) error {
	var pe env.ParseError
	if !errors.As(err, &pe) {
		return &Error{Var: "environment", Reason: err.Error()}
	}
	for _, s := range settings {
		if s.field != pe.Name {
			continue
		}
		e := &Error{Var: s.name, Reason: parseReason(s, pe)}
		if s.secret == "" {
			e.Value = environ[s.name]
		}
		return e
	}
	return &Error{Var: pe.Name, Reason: pe.Err.Error()}
}

func parseReason(s variable, pe env.ParseError) string {
	switch {
	case pe.Type == reflect.TypeFor[time.Duration]():
		return "want a positive Go duration such as 500ms or 10s"
	case pe.Type == reflect.TypeFor[zapcore.Level]():
		return "want debug, info, warn or error"
	case pe.Type == reflect.TypeFor[GCPercent](), pe.Type == reflect.TypeFor[MemoryLimit]():
		return pe.Err.Error()
	case pe.Type.Kind() == reflect.Bool:
		return "want true or false"
	case pe.Type.Kind() == reflect.Float64:
		lo, hi, _ := strings.Cut(s.valid, "..")
		if hi != "" {
			return "want a number from " + lo + " to " + hi
		}
		return "want a number of at least " + lo + ", 0 for off"
	case pe.Type.Kind() == reflect.Int:
		lo, hi, _ := strings.Cut(s.valid, "..")
		return fmt.Sprintf("want a whole number from %s to %s", lo, hi)
	}
	return pe.Err.Error()
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}
