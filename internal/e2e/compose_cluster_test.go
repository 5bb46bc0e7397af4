//go:build compose

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/servicetest"
)

// composeCluster brings up docker-compose.cluster.yml, six Redis nodes
// joined into a Cluster, two API instances and a load balancer that
// health-checks their /readyz, and checks it from the load balancer's port:
// the README's curls, writes on every primary, and an API instance stopped
// without a request failing.
//
//nolint:thelper // a test body, run as a subtest of TestCompose.
func composeCluster(t *testing.T, e *engine, top string) {
	file := filepath.Join(top, "docker-compose.cluster.yml")
	p := newProject(t, e, composeProject+"cluster", file)
	start := time.Now()
	if _, err := p.compose(t.Context(), "up", "-d", "--build"); err != nil {
		t.Fatal(err)
	}
	services := runnableServices(t, file)
	waitHealthy(t, e, p.name, services)
	// The load balancer admits an instance once its /readyz says the
	// Cluster is ok.
	if err := servicetest.WaitHTTP(apiURL+"/readyz", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("compose cluster: %d services up in %v", len(services), time.Since(start).Round(time.Second))

	checkReadmeCurls(t, e, top, apiURL, true)

	client := &http.Client{Timeout: 3 * time.Second}
	do := func(method, path, body string) int {
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(t.Context(), method, apiURL+path, r)
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 90 {
		if code := do(http.MethodPut, fmt.Sprintf("/v1/kv/spread%d", i), `{"value":"v"}`); code != 200 {
			t.Fatalf("PUT through the load balancer: %d", code)
		}
	}
	// Each instance's /metrics names the nodes its commands went to.
	primaries := map[string]bool{}
	for range 4 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, apiURL+"/metrics", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, `dubebox_redis_commands_total{command="set"`) {
				if _, rest, ok := strings.Cut(line, `node="`); ok {
					node, _, _ := strings.Cut(rest, `"`)
					primaries[node] = true
				}
			}
		}
	}
	if len(primaries) != 3 {
		t.Errorf("writes went to %d nodes, want the 3 primaries: %v", len(primaries), primaries)
	}

	// One instance stopped: the load balancer sends everything to the
	// other, and no request fails.
	if _, err := p.compose(t.Context(), "stop", "api-1"); err != nil {
		t.Fatal(err)
	}
	codes := map[int]int{}
	for i := range 60 {
		codes[do(http.MethodGet, fmt.Sprintf("/v1/kv/spread%d", i%90), "")]++
		time.Sleep(50 * time.Millisecond)
	}
	if codes[200] != 60 {
		t.Errorf("with api-1 stopped, the load balancer answered %v, want 60×200", codes)
	}
	if _, err := p.compose(t.Context(), "start", "api-1"); err != nil {
		t.Fatal(err)
	}
	left := p.down(t)
	if left == "" {
		left = "nothing"
	}
	t.Logf("compose cluster: 6 Redis nodes, 2 API instances behind haproxy; README curls through the load balancer; writes on %d primaries; api-1 stopped: %v; down -v left %s",
		len(primaries), codes, left)
}
