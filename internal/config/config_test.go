package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/config"
	"go.uber.org/zap/zapcore"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		// Without API_TOKEN, the default :5000 becomes loopback only.
		{"HTTP_ADDR", c.HTTP.ListenAddr, "127.0.0.1:5000"},
		{"REDIS_ADDR", c.Store.Addr, "localhost:6379"},
		{"REDIS_TIMEOUT", c.Store.Timeout, 500 * time.Millisecond},
		{"REDIS_POOL_TIMEOUT", c.Store.PoolTimeout, 500 * time.Millisecond},
		{"KEY_PREFIX", c.Store.KeyPrefix, "dubebox:"},
		{"MAX_KEY_BYTES", c.API.MaxKeyBytes, 512},
		{"MAX_VALUE_BYTES", c.API.MaxValueBytes, 1048576},
		{"LOG_LEVEL", c.Log.Level, zapcore.InfoLevel},
		{"LOG_FORMAT", c.Log.Format, "json"},
		{"SHUTDOWN_TIMEOUT", c.HTTP.ShutdownTimeout, 10 * time.Second},
		{"OTEL_SERVICE_NAME", c.Tracing.ServiceName, "dubebox"},
		{"OTEL_TRACES_EXPORTER", c.Tracing.Exporter, "none"},
		{"API_TOKEN", c.API.APIToken, ""},
		{"RATE_LIMIT_RPS", c.API.RateLimitRPS, 0.0},
		{"RATE_LIMIT_BURST", c.API.RateLimitBurst, 0},
		{"REDIS_POOL_SIZE", c.Store.PoolSize, 10 * runtime.GOMAXPROCS(0)},
		{"MAX_HEADER_BYTES", c.API.MaxHeaderBytes, 16384},
		{"HTTP_READ_HEADER_TIMEOUT", c.HTTP.ReadHeaderTimeout, 5 * time.Second},
		{"HTTP_WRITE_TIMEOUT", c.HTTP.WriteTimeout, 30 * time.Second},
		{"GOGC", c.GCPercent, config.GCPercent(200)},
		{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", c.Tracing.BatchSize, 128},
		{"OTEL_TRACES_SAMPLER", c.Tracing.Sampler, "parentbased_traceidratio"},
		{"OTEL_TRACES_SAMPLER_ARG", c.Tracing.SamplerArg, 0.1},
		{"NEAR_CACHE_SIZE", c.Store.Near.NearSize, 10000},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestRedisAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		env      map[string]string
		addr     string
		user     string
		password string
		db       int
		tls      bool
	}{
		{name: "REDIS_ADDR", env: map[string]string{"REDIS_ADDR": "cache:6380"}, addr: "cache:6380"},
		{name: "seed host and port", env: map[string]string{"REDIS_HOST": "redis", "REDIS_PORT": "6390"}, addr: "redis:6390"},
		{name: "seed host only", env: map[string]string{"REDIS_HOST": "redis"}, addr: "redis:6379"},
		{name: "REDIS_ADDR wins over the tutorial's", env: map[string]string{"REDIS_ADDR": "a:1", "REDIS_HOST": "b"}, addr: "a:1"},
		{name: "password and db", env: map[string]string{"REDIS_PASSWORD": "pw", "REDIS_DB": "3"}, addr: "localhost:6379", password: "pw", db: 3},
		{name: "URL", env: map[string]string{"REDIS_URL": "redis://u:p@r.example:7000/2"}, addr: "r.example:7000", user: "u", password: "p", db: 2},
		{name: "URL without port", env: map[string]string{"REDIS_URL": "rediss://r.example"}, addr: "r.example:6379", tls: true},
		{name: "URL wins over REDIS_ADDR", env: map[string]string{"REDIS_URL": "redis://x:1", "REDIS_ADDR": "y:2"}, addr: "x:1"},
	}
	for _, tc := range tests {
		c, err := config.Load(env(tc.env))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if c.Store.Addr != tc.addr || c.Store.Username != tc.user || c.Store.Password != tc.password || c.Store.DB != tc.db || c.Store.TLS != tc.tls {
			t.Errorf("%s: got %s user=%q pw=%q db=%d tls=%v", tc.name, c.Store.Addr, c.Store.Username, c.Store.Password, c.Store.DB, c.Store.TLS)
		}
	}
}

// TestInvalid checks that every bad value is refused with the variable's
// name first, and that a secret in a bad URL is not echoed.
func TestInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"bad http addr", map[string]string{"HTTP_ADDR": "5000", "API_TOKEN": "token-long-enough"}, "HTTP_ADDR"},
		{"bad redis addr", map[string]string{"REDIS_ADDR": "nope"}, "REDIS_ADDR"},
		{"bad port", map[string]string{"REDIS_PORT": "99999"}, "REDIS_PORT"},
		{"bad db", map[string]string{"REDIS_DB": "-1"}, "REDIS_DB"},
		{"bad timeout", map[string]string{"REDIS_TIMEOUT": "500"}, "REDIS_TIMEOUT"},
		{"zero timeout", map[string]string{"REDIS_TIMEOUT": "0s"}, "REDIS_TIMEOUT"},
		{"bad pool size", map[string]string{"REDIS_POOL_SIZE": "many"}, "REDIS_POOL_SIZE"},
		{"bad pool timeout", map[string]string{"REDIS_POOL_TIMEOUT": "-1s"}, "REDIS_POOL_TIMEOUT"},
		{"bad key bytes", map[string]string{"MAX_KEY_BYTES": "0"}, "MAX_KEY_BYTES"},
		{"bad value bytes", map[string]string{"MAX_VALUE_BYTES": "1e6"}, "MAX_VALUE_BYTES"},
		{"bad level", map[string]string{"LOG_LEVEL": "verbose"}, "LOG_LEVEL"},
		{"fatal level", map[string]string{"LOG_LEVEL": "fatal"}, "LOG_LEVEL"},
		{"bad format", map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT"},
		{"bad shutdown", map[string]string{"SHUTDOWN_TIMEOUT": "soon"}, "SHUTDOWN_TIMEOUT"},
		{"bad exporter", map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"},
		{"otlp without endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, "OTEL_TRACES_EXPORTER"},
		{"bad protocol", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"bad pprof", map[string]string{"PPROF_ADDR": "x"}, "PPROF_ADDR"},
		{"bad GOGC", map[string]string{"GOGC": "lots"}, "GOGC"},
		{"span batch over the queue", map[string]string{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4096"}, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"},
		{"zero GOGC", map[string]string{"GOGC": "0"}, "GOGC"},
		{"unknown sampler", map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"},
		{"ratio over 1", map[string]string{"OTEL_TRACES_SAMPLER_ARG": "10"}, "OTEL_TRACES_SAMPLER_ARG"},
		{"bad rate", map[string]string{"RATE_LIMIT_RPS": "fast"}, "RATE_LIMIT_RPS"},
		{"negative rate", map[string]string{"RATE_LIMIT_RPS": "-1"}, "RATE_LIMIT_RPS"},
		{"bad burst", map[string]string{"RATE_LIMIT_RPS": "5", "RATE_LIMIT_BURST": "-1"}, "RATE_LIMIT_BURST"},
		{"bad tls", map[string]string{"REDIS_TLS": "maybe"}, "REDIS_TLS"},
		{"read token alone", map[string]string{"API_READ_TOKEN": "read-token-long-enough"}, "API_READ_TOKEN"},
		{"read token same as token", map[string]string{"API_TOKEN": "token-long-enough", "API_READ_TOKEN": "token-long-enough"}, "API_READ_TOKEN"},
		{"read token same as the old token", map[string]string{"API_TOKEN": "new-token-long-enough,old-token-long-enough", "API_READ_TOKEN": "old-token-long-enough"}, "API_READ_TOKEN"},
		{"short token", map[string]string{"API_TOKEN": "a"}, "API_TOKEN"},
		{"three tokens", map[string]string{"API_TOKEN": "token-long-enough-1,token-long-enough-2,token-long-enough-3"}, "API_TOKEN"},
		{"token with a space", map[string]string{"API_TOKEN": "token long enough really"}, "API_TOKEN"},
		{"short read token", map[string]string{"API_TOKEN": "token-long-enough", "API_READ_TOKEN": "r"}, "API_READ_TOKEN"},
		{"no token on every interface", map[string]string{"HTTP_ADDR": ":5000"}, "HTTP_ADDR"},
		{"no token on an address", map[string]string{"HTTP_ADDR": "10.1.2.3:5000"}, "HTTP_ADDR"},
		{"pprof on every interface", map[string]string{"PPROF_ADDR": ":6060"}, "PPROF_ADDR"},
		{"bad trusted proxies", map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8,nope"}, "TRUSTED_PROXIES"},
		{"bad metrics addr", map[string]string{"METRICS_ADDR": "9100"}, "METRICS_ADDR"},
		{"bad GOMEMLIMIT", map[string]string{"GOMEMLIMIT": "lots"}, "GOMEMLIMIT"},
		{"tiny header limit", map[string]string{"MAX_HEADER_BYTES": "10"}, "MAX_HEADER_BYTES"},
		{"bad read header timeout", map[string]string{"HTTP_READ_HEADER_TIMEOUT": "1"}, "HTTP_READ_HEADER_TIMEOUT"},
		{"bad write timeout", map[string]string{"HTTP_WRITE_TIMEOUT": "-2s"}, "HTTP_WRITE_TIMEOUT"},
		{"bad url scheme", map[string]string{"REDIS_URL": "http://u:hunter2@h:1"}, "REDIS_URL"},
		{"bad url db", map[string]string{"REDIS_URL": "redis://u:hunter2@h:1/x"}, "REDIS_URL"},
		{"cluster and sentinel", map[string]string{"REDIS_CLUSTER_ADDRS": "a:1", "REDIS_SENTINEL_ADDRS": "b:2", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINEL_ADDRS"},
		{"cluster and addr", map[string]string{"REDIS_ADDR": "a:1", "REDIS_CLUSTER_ADDRS": "b:2"}, "REDIS_CLUSTER_ADDRS"},
		{"sentinel and url", map[string]string{"REDIS_URL": "redis://h:1", "REDIS_SENTINEL_ADDRS": "b:2", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINEL_ADDRS"},
		{"sentinel without master", map[string]string{"REDIS_SENTINEL_ADDRS": "b:2"}, "REDIS_SENTINEL_MASTER"},
		{"master without sentinels", map[string]string{"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINEL_ADDRS"},
		{"cluster db", map[string]string{"REDIS_CLUSTER_ADDRS": "a:1", "REDIS_DB": "2"}, "REDIS_DB"},
		{"bad cluster addr", map[string]string{"REDIS_CLUSTER_ADDRS": "a:1,nope"}, "REDIS_CLUSTER_ADDRS"},
		{"replicas on single", map[string]string{"REDIS_READ_FROM_REPLICAS": "true"}, "REDIS_READ_FROM_REPLICAS"},
	}
	for _, tc := range tests {
		_, err := config.Load(env(tc.env))
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.want) || !config.IsConfigError(err) {
			t.Errorf("%s: got %q, want it to start with %s", tc.name, err, tc.want)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error echoes a password: %q", tc.name, err)
		}
	}
}

func TestFieldsMaskSecrets(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{
		"REDIS_URL": "redis://user:hunter2@h:1/0", "API_TOKEN": "tok-secret-long-enough", "API_READ_TOKEN": "tok-read-secret-long-enough",
	}))
	if err != nil {
		t.Fatal(err)
	}
	f := c.Fields()
	for k, v := range f {
		s, _ := v.(string)
		if strings.Contains(s, "hunter2") || strings.Contains(s, "tok-") {
			t.Errorf("%s shows a secret: %q", k, s)
		}
	}
	if f["API_TOKEN"] != "********" || f["REDIS_PASSWORD"] != "********" {
		t.Errorf("secrets not shown as set: %v %v", f["API_TOKEN"], f["REDIS_PASSWORD"])
	}
	if f["REDIS_URL"] != "redis://user:xxxxx@h:1/0" {
		t.Errorf("REDIS_URL: got %v", f["REDIS_URL"])
	}
}

func TestRateLimitBurstDefault(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{"RATE_LIMIT_RPS": "2.5"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.API.RateLimitRPS != 2.5 || c.API.RateLimitBurst != 3 {
		t.Errorf("got %v req/s burst %d, want 2.5 and 3", c.API.RateLimitRPS, c.API.RateLimitBurst)
	}
}

func TestOTLPExporterDefault(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tracing.Exporter != "otlp" || c.OTLPEndpoint != "http://jaeger:4318" {
		t.Errorf("got exporter %q endpoint %q", c.Tracing.Exporter, c.OTLPEndpoint)
	}
}

// TestLogShowsWhatIsInForce checks that the start-up log's values are the
// ones the service runs with, not the raw variables: a pool size of 0 is
// go-redis's 10 per CPU, a burst is 0 while the limit is off, and the pool
// wait follows REDIS_TIMEOUT.
func TestLogShowsWhatIsInForce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		name string
		want any
	}{
		{nil, "REDIS_POOL_SIZE", 10 * runtime.GOMAXPROCS(0)},
		{map[string]string{"REDIS_POOL_SIZE": "7"}, "REDIS_POOL_SIZE", 7},
		{nil, "RATE_LIMIT_BURST", 0},
		{map[string]string{"RATE_LIMIT_BURST": "9"}, "RATE_LIMIT_BURST", 0},
		{map[string]string{"RATE_LIMIT_RPS": "2.5"}, "RATE_LIMIT_BURST", 3},
		{map[string]string{"REDIS_TIMEOUT": "2s"}, "REDIS_POOL_TIMEOUT", "2s"},
		{map[string]string{"REDIS_HOST": "cache", "REDIS_PORT": "7000"}, "REDIS_ADDR", "cache:7000"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://j:4318"}, "OTEL_TRACES_EXPORTER", "otlp"},
		{nil, "OTEL_TRACES_EXPORTER", "none"},
		{map[string]string{"LOG_FORMAT": "CONSOLE"}, "LOG_FORMAT", "console"},
		{nil, "GOGC", 200},
		{map[string]string{"GOGC": "off"}, "GOGC", -1},
	}
	for _, tc := range tests {
		c, err := config.Load(env(tc.env))
		if err != nil {
			t.Fatalf("%v: %v", tc.env, err)
		}
		got := c.Fields()[tc.name]
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%v: log shows %s=%v, want %v", tc.env, tc.name, got, tc.want)
		}
	}
}

// TestVarsListEveryVariableOnce checks the single list of variables: every
// variable Load reads is in it once, with its default and whether it is a
// secret, and the log names the same variables (less those folded into
// another).
func TestVarsListEveryVariableOnce(t *testing.T) {
	t.Parallel()
	vars := config.Vars()
	byName := map[string]config.Var{}
	for _, v := range vars {
		if _, dup := byName[v.Name]; dup {
			t.Errorf("%s is listed twice", v.Name)
		}
		byName[v.Name] = v
	}
	for _, name := range []string{"HTTP_ADDR", "REDIS_ADDR", "REDIS_URL", "REDIS_PASSWORD", "API_TOKEN", "GOGC", "OTEL_SERVICE_NAME", "REDIS_HOST"} {
		if _, ok := byName[name]; !ok {
			t.Errorf("%s is not listed", name)
		}
	}
	for _, name := range []string{"REDIS_PASSWORD", "API_TOKEN", "API_READ_TOKEN", "REDIS_URL"} {
		if !byName[name].Secret {
			t.Errorf("%s is not marked secret", name)
		}
	}
	if d := byName["HTTP_ADDR"].Default; d != ":5000" {
		t.Errorf("HTTP_ADDR default: %q", d)
	}
	fields := config.Default().Fields()
	for name := range fields {
		if _, ok := byName[name]; !ok {
			t.Errorf("the log shows %s, which is not listed", name)
		}
	}
	if len(fields) != len(vars)-2 { // REDIS_HOST and REDIS_PORT are logged as REDIS_ADDR
		t.Errorf("the log shows %d variables, the list has %d", len(fields), len(vars))
	}
}

// TestTopologies checks the client options each topology's variables make.
func TestTopologies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env        map[string]string
		topology   string
		addrs      []string
		master     string
		cluster    bool
		readOnly   bool
		randomly   bool
		sentinelPW string
	}{
		{env: nil, topology: "single", addrs: []string{"localhost:6379"}},
		{env: map[string]string{"REDIS_CLUSTER_ADDRS": "n1:7000,n2:7001", "REDIS_READ_FROM_REPLICAS": "true"},
			topology: "cluster", addrs: []string{"n1:7000", "n2:7001"}, cluster: true, readOnly: true},
		{env: map[string]string{"REDIS_SENTINEL_ADDRS": "s1:26379,s2:26379", "REDIS_SENTINEL_MASTER": "mymaster", "REDIS_SENTINEL_PASSWORD": "spw"},
			topology: "sentinel", addrs: []string{"s1:26379", "s2:26379"}, master: "mymaster", sentinelPW: "spw"},
		{env: map[string]string{"REDIS_SENTINEL_ADDRS": "s1:26379", "REDIS_SENTINEL_MASTER": "m", "REDIS_READ_FROM_REPLICAS": "true"},
			topology: "sentinel", addrs: []string{"s1:26379"}, master: "m", randomly: true},
	}
	for _, tc := range tests {
		c, err := config.Load(env(tc.env))
		if err != nil {
			t.Fatalf("%v: %v", tc.env, err)
		}
		o := c.Store.Options()
		if c.Store.Topology() != tc.topology || !slices.Equal(o.Addrs, tc.addrs) || o.MasterName != tc.master ||
			o.IsClusterMode != tc.cluster || o.ReadOnly != tc.readOnly || o.RouteRandomly != tc.randomly || o.SentinelPassword != tc.sentinelPW {
			t.Errorf("%v: topology %s, options %+v", tc.env, c.Store.Topology(), o)
		}
		if tc.topology != "single" && c.Fields()["REDIS_ADDR"] != "" {
			t.Errorf("%v: the log shows REDIS_ADDR=%v, which is not in force", tc.env, c.Fields()["REDIS_ADDR"])
		}
		if tc.sentinelPW != "" && c.Fields()["REDIS_SENTINEL_PASSWORD"] != "********" {
			t.Errorf("the sentinel password is not masked: %v", c.Fields()["REDIS_SENTINEL_PASSWORD"])
		}
	}
}

// TestListenWithoutToken checks where a token-less instance listens: on
// loopback (its default becomes 127.0.0.1), on any address it is told with
// a token or with ALLOW_NO_AUTH=true, and a rotation's two tokens pass.
func TestListenWithoutToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "127.0.0.1:5000"},
		{map[string]string{"HTTP_ADDR": "127.0.0.1:8080"}, "127.0.0.1:8080"},
		{map[string]string{"HTTP_ADDR": "[::1]:8080"}, "[::1]:8080"},
		{map[string]string{"API_TOKEN": "token-long-enough"}, ":5000"},
		{map[string]string{"API_TOKEN": "new-token-long-enough,old-token-long-enough", "HTTP_ADDR": "0.0.0.0:80"}, "0.0.0.0:80"},
		{map[string]string{"ALLOW_NO_AUTH": "true", "HTTP_ADDR": ":5000"}, ":5000"},
	} {
		c, err := config.Load(env(tc.env))
		if err != nil || c.HTTP.ListenAddr != tc.want {
			t.Errorf("%v: listens on %q (%v), want %s", tc.env, c.HTTP.ListenAddr, err, tc.want)
		}
	}
}

// TestReferenceDescribesEveryVariable checks the configuration table of
// docs/reference.md against Vars: each variable has a row (a row may name
// several, as `A`, `B`), and each row names only variables the service
// reads.
func TestReferenceDescribesEveryVariable(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "reference.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| (`[A-Z0-9_]+`(?:, `[A-Z0-9_]+`)*) \\|")
	name := regexp.MustCompile("`([A-Z0-9_]+)`")
	described := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		for _, n := range name.FindAllStringSubmatch(m[1], -1) {
			described[n[1]] = true
		}
	}
	read := map[string]bool{}
	for _, v := range config.Vars() {
		read[v.Name] = true
		if !described[v.Name] {
			t.Errorf("%s is read but has no row in docs/reference.md's configuration table", v.Name)
		}
	}
	for n := range described {
		if !read[n] {
			t.Errorf("docs/reference.md's table describes %s, which the service does not read", n)
		}
	}
}

// TestRangeMessages: a refused number is told the range its variable takes.
func TestRangeMessages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, value, want string }{
		{"OTEL_TRACES_SAMPLER_ARG", "2", "want a number from 0 to 1"},
		{"OTEL_TRACES_SAMPLER_ARG", "-1", "want a number from 0 to 1"},
		{"OTEL_TRACES_SAMPLER_ARG", "half", "want a number from 0 to 1"},
		{"RATE_LIMIT_RPS", "-1", "want a number of at least 0, 0 for off"},
		{"RATE_LIMIT_RPS", "fast", "want a number of at least 0, 0 for off"},
	} {
		_, err := config.Load(func(k string) string {
			if k == tc.name {
				return tc.value
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: %v, want %q", tc.name, tc.value, err, tc.want)
		}
	}
}
