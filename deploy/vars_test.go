// Package deploy holds the deployment templates (deploy/ecs, deploy/helm) and
// the tests that check them against the service they deploy: its variables,
// its port, its health checks and its image's user. It is a module of its
// own so that the service's module does not carry the AWS SDK, Helm and the
// Kubernetes API.
package deploy

import (
	"encoding/json"
	"net"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/config"
	"sigs.k8s.io/yaml"
)

// service is what the templates must agree with, read from the service's own
// sources rather than repeated here.
type service struct {
	vars        map[string]config.Var
	port        string   // the container port: HTTP_ADDR's default
	healthcheck []string // the image's HEALTHCHECK command
	shutdown    time.Duration
	jobs        map[string]string // prometheus.yml: job name to its target's port
}

// The routes a load balancer and an orchestrator probe. They are part of the
// service's contract (README, docs/operations.md).
const (
	readinessPath = "/readyz"
	livenessPath  = "/healthz"
)

func readService(t *testing.T) service {
	t.Helper()
	s := service{vars: map[string]config.Var{}, jobs: map[string]string{}}
	for _, v := range config.Vars() {
		s.vars[v.Name] = v
	}
	_, port, err := net.SplitHostPort(s.vars["HTTP_ADDR"].Default)
	if err != nil {
		t.Fatalf("HTTP_ADDR's default: %v", err)
	}
	s.port = port
	if s.shutdown, err = time.ParseDuration(s.vars["SHUTDOWN_TIMEOUT"].Default); err != nil {
		t.Fatalf("SHUTDOWN_TIMEOUT's default: %v", err)
	}

	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^HEALTHCHECK .*\bCMD (\[.*\])$`).FindSubmatch(dockerfile)
	if m == nil {
		t.Fatal("Dockerfile: no HEALTHCHECK ... CMD [...] line")
	}
	if err := json.Unmarshal(m[1], &s.healthcheck); err != nil {
		t.Fatalf("Dockerfile HEALTHCHECK: %v", err)
	}

	var prom promConfig
	readYAML(t, "../prometheus.yml", &prom)
	for _, job := range prom.ScrapeConfigs {
		_, port, _ := net.SplitHostPort(job.StaticConfigs[0].Targets[0])
		s.jobs[job.JobName] = port
	}
	return s
}

// promConfig is the part of a Prometheus configuration the tests read, in
// prometheus.yml and in the collectors' configurations.
type promConfig struct {
	ScrapeConfigs []struct {
		JobName       string `json:"job_name"`
		StaticConfigs []struct {
			Targets []string `json:"targets"`
		} `json:"static_configs"`
	} `json:"scrape_configs"`
}

// checkVars asserts that a template accounts for every variable the service
// reads, exactly once, and for none it does not: set is what the template sets
// (as a plain value or from a secret store), left what it leaves at the
// default. Secret variables must come from a secret store.
func (s service) checkVars(t *testing.T, where string, plain, secret, left []string) {
	t.Helper()
	seen := map[string]string{}
	note := func(kind string, names []string) {
		for _, name := range names {
			v, ok := s.vars[name]
			switch {
			case !ok:
				t.Errorf("%s %s %s, which the service does not read (internal/config)", where, kind, name)
			case seen[name] != "":
				t.Errorf("%s names %s twice: %s and %s", where, name, seen[name], kind)
			case v.Secret && kind == "sets in plain text":
				t.Errorf("%s sets the secret %s in plain text; take it from a secret", where, name)
			}
			seen[name] = kind
		}
	}
	note("sets in plain text", plain)
	note("sets from a secret", secret)
	note("leaves at the default", left)
	var missing []string
	for name := range s.vars {
		if seen[name] == "" {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%s neither sets nor lists as left at the default: %s", where, strings.Join(missing, ", "))
	}
}

// keys returns a map's keys, sorted.
func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// readYAML decodes a YAML file through its JSON form, as Kubernetes does.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
