//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dubebox/dubebox/internal/servicetest"
	"github.com/goccy/go-yaml"
)

// TestPromtool runs Prometheus's own checks on the config, the alert rules
// and their unit tests.
func TestPromtool(t *testing.T) {
	promtool := servicetest.Need(t, "promtool", aptHint)
	top := servicetest.Root()
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "observability/alerts/alerts.yml"},
		{"test", "rules", "observability/alerts/alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = top
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			continue
		}
		t.Logf("promtool %s: ok", strings.Join(args, " "))
	}
}

type composeFile struct {
	Version  any                       `yaml:"version"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Command     any               `yaml:"command"`
	Build       any               `yaml:"build"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   any               `yaml:"depends_on"`
	Healthcheck map[string]any    `yaml:"healthcheck"`
	Restart     string            `yaml:"restart"`
	User        string            `yaml:"user"`
	ReadOnly    bool              `yaml:"read_only"`
	CapDrop     []string          `yaml:"cap_drop"`
	SecurityOpt []string          `yaml:"security_opt"`
	Profiles    []string          `yaml:"profiles"`
}

// TestComposeFile validates docker-compose.yml with Debian's docker-compose
// and then checks what that parser does not: pinned images, mounted files
// that exist, declared volumes, Redis kept off the host, and the API's
// hardening.
func TestComposeFile(t *testing.T) {
	dc := servicetest.Need(t, "docker-compose", aptHint)
	top := servicetest.Root()
	// An empty env file stands in for a checkout where make up has not
	// written .env yet.
	noEnv := filepath.Join(t.TempDir(), "empty.env")
	if err := os.WriteFile(noEnv, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"docker-compose.yml", "docker-compose.cluster.yml"} {
		// Without the secrets that make up writes into .env the file must
		// refuse to start rather than run Redis and the API open.
		bare := exec.Command(dc, "-f", file, "--env-file", noEnv, "config", "-q")
		bare.Dir = top
		bare.Env = withoutSecrets(os.Environ())
		if out, err := bare.CombinedOutput(); err == nil || !strings.Contains(string(out), "API_TOKEN") && !strings.Contains(string(out), "REDIS_PASSWORD") {
			t.Errorf("docker-compose -f %s config without API_TOKEN and REDIS_PASSWORD: err %v, want a refusal naming them\n%s", file, err, out)
		}
		cmd := exec.Command(dc, "-f", file, "--env-file", noEnv, "config", "-q")
		cmd.Dir = top
		cmd.Env = append(withoutSecrets(os.Environ()), "API_TOKEN=test-token-0123456789", "REDIS_PASSWORD=test-password-0123456789")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker-compose -f %s config -q: %v\n%s", file, err, out)
		}
	}
	cluster, err := os.ReadFile(filepath.Join(top, "docker-compose.cluster.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if c := string(cluster); strings.Contains(c, "--requirepass") || !strings.Contains(c, `"127.0.0.1:5000:5000"`) ||
		!strings.Contains(c, "REDIS_CLUSTER_ADDRS") || !strings.Contains(c, "deploy/compose/haproxy.cfg") ||
		!strings.Contains(c, "user: redis") || !strings.Contains(c, "API_TOKEN: ${API_TOKEN:?") {
		t.Errorf("docker-compose.cluster.yml: want the password off the command line, the load balancer on 127.0.0.1:5000, REDIS_CLUSTER_ADDRS, the haproxy config, Redis as its own user and a required API_TOKEN")
	}

	b, err := os.ReadFile(filepath.Join(top, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatal(err)
	}
	if cf.Version != nil {
		t.Errorf("the Compose specification has no version key")
	}
	for _, name := range []string{"api", "redis", "redis-exporter", "prometheus", "grafana", "jaeger"} {
		if _, ok := cf.Services[name]; !ok {
			t.Errorf("service %s is missing", name)
		}
	}
	pinned := regexp.MustCompile(`^[\w./-]+:v?\d+(\.\d+)*(-[\w.]+)?$`)
	published := map[string]string{}
	for name, s := range cf.Services {
		if s.Build == nil && !pinned.MatchString(s.Image) {
			t.Errorf("service %s: image %q is not pinned to a version", name, s.Image)
		}
		for _, p := range s.Ports {
			// Every port is published on the loopback address only.
			host, rest, _ := strings.Cut(p, ":")
			if host != "127.0.0.1" {
				t.Errorf("service %s publishes %q on every address; want 127.0.0.1:host:container", name, p)
			}
			published[strings.SplitN(rest, ":", 2)[0]] = name
		}
		for _, v := range s.Volumes {
			src := strings.SplitN(v, ":", 2)[0]
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(top, src)); err != nil {
					t.Errorf("service %s mounts %s, which does not exist", name, src)
				}
			} else if _, ok := cf.Volumes[src]; !ok {
				t.Errorf("service %s uses volume %s, which is not declared", name, src)
			}
		}
	}
	for port, svc := range map[string]string{"5000": "api", "3000": "grafana", "9090": "prometheus", "16686": "jaeger"} {
		if published[port] != svc {
			t.Errorf("port %s is published by %q, want %s", port, published[port], svc)
		}
	}
	if len(cf.Services["redis"].Ports) != 0 {
		t.Errorf("redis publishes %v on the host; it must stay on the private network", cf.Services["redis"].Ports)
	}
	api := cf.Services["api"]
	if !api.ReadOnly || len(api.CapDrop) != 1 || api.CapDrop[0] != "ALL" ||
		len(api.SecurityOpt) != 1 || api.SecurityOpt[0] != "no-new-privileges:true" || api.Restart != "unless-stopped" {
		t.Errorf("api lacks its hardening: read_only %v cap_drop %v security_opt %v restart %q", api.ReadOnly, api.CapDrop, api.SecurityOpt, api.Restart)
	}
	if api.Environment["REDIS_ADDR"] != "redis:6379" || !strings.Contains(api.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"], "jaeger:4318") {
		t.Errorf("api environment: %v", api.Environment)
	}
	if !strings.Contains(string(mustJSON(t, api.DependsOn)), "service_healthy") || api.Healthcheck == nil {
		t.Errorf("api must wait for a healthy redis and have a healthcheck")
	}
	if r := cf.Services["redis"]; r.User != "redis" || !r.ReadOnly || len(r.CapDrop) != 1 || r.CapDrop[0] != "ALL" ||
		len(r.SecurityOpt) != 1 || r.SecurityOpt[0] != "no-new-privileges:true" {
		t.Errorf("redis lacks its hardening: user %q read_only %v cap_drop %v security_opt %v", r.User, r.ReadOnly, r.CapDrop, r.SecurityOpt)
	}
	redisCmd := string(mustJSON(t, cf.Services["redis"]))
	for _, want := range []string{"requirepass", "--maxmemory", "--maxmemory-policy", "--appendonly yes", "redis-cli ping"} {
		if !strings.Contains(redisCmd, want) {
			t.Errorf("redis service lacks %s", want)
		}
	}
	if strings.Contains(redisCmd, "--requirepass") {
		t.Errorf("the Redis password is on redis-server's command line, where ps shows it")
	}
	if lg, ok := cf.Services["loadgen"]; !ok || len(lg.Profiles) != 1 || lg.Profiles[0] != "load" {
		t.Errorf("loadgen must exist under the load profile")
	}
	promSvc := string(mustJSON(t, cf.Services["prometheus"]))
	if !strings.Contains(promSvc, "exemplar-storage") {
		t.Errorf("prometheus runs without exemplar storage")
	}
	t.Logf("docker-compose.yml: %d services, %d volumes checked", len(cf.Services), len(cf.Volumes))
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGrafanaFiles checks the provisioning: datasources with the fixed uids
// the dashboard uses, exemplars linked to Jaeger, no __inputs, and
// $__rate_interval in every rate.
func TestGrafanaFiles(t *testing.T) {
	top := servicetest.Root()
	var ds struct {
		Datasources []struct {
			UID      string         `yaml:"uid"`
			Type     string         `yaml:"type"`
			JSONData map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	b, err := os.ReadFile(filepath.Join(top, "grafana/provisioning/datasources/datasources.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	uids := map[string]string{}
	for _, d := range ds.Datasources {
		uids[d.UID] = d.Type
		if d.Type == "prometheus" && !strings.Contains(string(mustJSON(t, d.JSONData)), `"datasourceUid":"jaeger"`) {
			t.Errorf("the Prometheus datasource's exemplars do not link to the jaeger datasource")
		}
	}
	if uids["prometheus"] != "prometheus" || uids["jaeger"] != "jaeger" {
		t.Errorf("want datasources with uids prometheus and jaeger, got %v", uids)
	}
	if _, err := os.Stat(filepath.Join(top, "grafana/provisioning/dashboards/dashboards.yml")); err != nil {
		t.Error(err)
	}
	raw, err := os.ReadFile(filepath.Join(top, "grafana/dashboards/dubebox.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	if strings.Contains(s, "__inputs") || strings.Contains(s, "${DS_") {
		t.Errorf("the dashboard uses import inputs instead of fixed datasource uids")
	}
	for _, m := range regexp.MustCompile(`"uid":\s*"([^"]+)"`).FindAllStringSubmatch(s, -1) {
		if m[1] != "dubebox" && uids[m[1]] == "" {
			t.Errorf("the dashboard names datasource uid %q, which is not provisioned", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`rate\([^\[]*\[([^\]]+)\]`).FindAllStringSubmatch(s, -1) {
		if m[1] != "$__rate_interval" {
			t.Errorf("a rate() uses [%s], want [$__rate_interval]", m[1])
		}
	}
	n := validateDashboards(t, filepath.Join(top, "grafana", "dashboards"))
	t.Logf("e2e: %d dashboard(s) decode strictly and validate with the Grafana Foundation SDK", n)
}

// TestMakeHelp checks that make help lists every Makefile target that has
// a description (a "## " comment), whatever characters its name holds.
func TestMakeHelp(t *testing.T) {
	mk := servicetest.Need(t, "make", "install make (Debian: apt-get install -y make)")
	top := servicetest.Root()
	src, err := os.ReadFile(filepath.Join(top, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mk, "--no-print-directory", "help")
	cmd.Dir = top
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			listed[f[0]] = true
		}
	}
	described := regexp.MustCompile(`(?m)^([^\s:#=]+):[^=\n]*## `).FindAllStringSubmatch(string(src), -1)
	if len(described) < 10 {
		t.Fatalf("found only %d described targets in the Makefile", len(described))
	}
	for _, m := range described {
		if !listed[m[1]] {
			t.Errorf("make help leaves out %s", m[1])
		}
	}
}

// withoutSecrets drops the compose secrets from env, so a developer's own
// exported API_TOKEN cannot make the refusal test pass or fail.
func withoutSecrets(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "API_TOKEN=") && !strings.HasPrefix(kv, "REDIS_PASSWORD=") {
			out = append(out, kv)
		}
	}
	return out
}
