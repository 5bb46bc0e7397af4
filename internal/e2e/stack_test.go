//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/servicetest"
)

// TestStack is the end-to-end proof: it runs the stack from local processes,
// drives mixed traffic, and runs every query of every dashboard panel.
func TestStack(t *testing.T) {
	prom := servicetest.Need(t, "prometheus", aptHint)
	exporter := servicetest.Need(t, "prometheus-redis-exporter", aptHint)
	dir := t.TempDir()
	top := servicetest.Root()

	// Redis, as Compose runs it: an LRU cache with a memory limit.
	redisSrv, err := redistest.StartServer(dir, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(redisSrv.Kill)

	bin := filepath.Join(dir, "dubebox")
	if err := servicetest.Build(dir, "./cmd/dubebox"); err != nil {
		t.Fatal(err)
	}
	api, base := servicetest.StartDubebox(t, bin, redisSrv.Addr, "LOG_LEVEL=info", "OTEL_TRACES_EXPORTER=none")
	apiAddr := strings.TrimPrefix(base, "http://")
	waitHTTP(t, base+"/readyz", 10*time.Second)

	exporterAddr := servicetest.FreeAddr(t)
	servicetest.Spawn(t, "redis-exporter", os.Environ(), exporter,
		"-redis.addr", "redis://"+redisSrv.Addr, "-web.listen-address", exporterAddr)
	waitHTTP(t, "http://"+exporterAddr+"/metrics", 10*time.Second)

	// The repo's prometheus.yml and alert rules, pointed at local addresses.
	promAddr := servicetest.FreeAddr(t)
	cfg, err := os.ReadFile(filepath.Join(top, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	local := strings.NewReplacer(`"api:5000"`, `"`+apiAddr+`"`, `"redis-exporter:9121"`, `"`+exporterAddr+`"`,
		`"localhost:9090"`, `"`+promAddr+`"`).Replace(string(cfg))
	if local == string(cfg) || strings.Contains(local, "api:5000") || strings.Contains(local, "redis-exporter:9121") {
		t.Fatalf("prometheus.yml no longer names api:5000 and redis-exporter:9121; update this test with it")
	}
	promDir := filepath.Join(dir, "prom")
	if err := os.MkdirAll(filepath.Join(promDir, "observability", "alerts"), 0o755); err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join(top, "observability", "alerts", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(promDir, "prometheus.yml"), local)
	writeFile(t, filepath.Join(promDir, "observability", "alerts", "alerts.yml"), string(rules))
	servicetest.Spawn(t, "prometheus", os.Environ(), prom,
		"--config.file="+filepath.Join(promDir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(promDir, "data"),
		"--web.listen-address="+promAddr,
		"--enable-feature=exemplar-storage")
	promURL := "http://" + promAddr
	waitHTTP(t, promURL+"/-/ready", 20*time.Second)

	start := time.Now()
	stats := drive(t, base, 35*time.Second)
	t.Logf("traffic: %d requests in %v, by status %v", stats.total, time.Since(start).Round(time.Second), stats.byStatus)

	// Two more scrapes so that the last traffic is in.
	time.Sleep(11 * time.Second)

	checkTargets(t, promURL)
	checkRules(t, promURL)
	checkPanels(t, promURL, filepath.Join(top, "grafana", "dashboards"))
	checkExemplars(t, promURL, api.Log, start, time.Now())
}
