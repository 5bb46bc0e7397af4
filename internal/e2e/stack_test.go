//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/servicetest"
)

// TestStack is the end-to-end proof: it runs the stack from local processes,
// drives mixed traffic, and runs every query of every dashboard panel. It
// runs on one Redis, as Compose runs it, and on a Redis Cluster, so that
// the Topology row's queries (per node, replication) are proven to have
// data where they matter.
func TestStack(t *testing.T) {
	for _, topology := range []string{"single", "cluster"} {
		t.Run(topology, func(t *testing.T) { stack(t, topology) })
	}
}

//nolint:thelper // a test body, run once per topology.
func stack(t *testing.T, topology string) {
	prom := servicetest.Need(t, "prometheus", aptHint)
	exporter := servicetest.Need(t, "prometheus-redis-exporter", aptHint)
	dir := t.TempDir()
	top := servicetest.Root()

	bin := filepath.Join(dir, "dubebox")
	if err := servicetest.Build(dir, "./cmd/dubebox"); err != nil {
		t.Fatal(err)
	}
	// Redis, as Compose runs it (an LRU cache with a memory limit), or a
	// Cluster of three primaries with a replica each; one exporter per
	// Redis node.
	var nodes []string
	var api *servicetest.Process
	var base string
	// /metrics on an address of its own, as Compose, the chart and the
	// ECS template serve it.
	metricsAddr := servicetest.FreeAddr(t)
	env := []string{"LOG_LEVEL=info", "OTEL_TRACES_EXPORTER=none", "METRICS_ADDR=" + metricsAddr}
	if topology == "cluster" {
		c, err := redistest.StartCluster(filepath.Join(dir, "cluster"), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Stop)
		for _, n := range c.Nodes {
			nodes = append(nodes, n.Addr)
		}
		api, base = servicetest.StartDubebox(t, bin, "", append(env, "REDIS_CLUSTER_ADDRS="+strings.Join(nodes, ","))...)
	} else {
		redisSrv, err := redistest.StartServer(dir, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(redisSrv.Kill)
		nodes = []string{redisSrv.Addr}
		// The near cache, on by default, works on one Redis server: its
		// panel has data to show.
		api, base = servicetest.StartDubebox(t, bin, redisSrv.Addr, env...)
	}
	waitHTTP(t, base+"/readyz", 10*time.Second)

	var exporters []string
	for i, n := range nodes {
		addr := servicetest.FreeAddr(t)
		servicetest.Spawn(t, fmt.Sprintf("redis-exporter-%d", i), os.Environ(), exporter,
			"-redis.addr", "redis://"+n, "-web.listen-address", addr)
		waitHTTP(t, "http://"+addr+"/metrics", 10*time.Second)
		exporters = append(exporters, `"`+addr+`"`)
	}
	exporterAddr := strings.Join(exporters, ", ")
	exporterAddr = strings.Trim(exporterAddr, `"`)

	// The repo's prometheus.yml and alert rules, pointed at local addresses.
	promAddr := servicetest.FreeAddr(t)
	cfg, err := os.ReadFile(filepath.Join(top, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	local := strings.NewReplacer(`"api:9100"`, `"`+metricsAddr+`"`, `"redis-exporter:9121"`, `"`+exporterAddr+`"`,
		`"localhost:9090"`, `"`+promAddr+`"`).Replace(string(cfg))
	if local == string(cfg) || strings.Contains(local, "api:9100") || strings.Contains(local, "redis-exporter:9121") {
		t.Fatalf("prometheus.yml no longer names api:9100 and redis-exporter:9121; update this test with it")
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

	// The pictures are drawn from every run on one Redis (into a temporary
	// folder), so that make screenshot cannot rot; make screenshot keeps
	// them, from a longer load, so that the rate windows fill.
	pictures := os.Getenv("DUBEBOX_PICTURES")
	load := 35 * time.Second
	if pictures != "" {
		load = 90 * time.Second
	}
	start := time.Now()
	stats := drive(t, base, load)
	end := time.Now()
	t.Logf("traffic: %d requests in %v, by status %v", stats.total, time.Since(start).Round(time.Second), stats.byStatus)

	// Two more scrapes so that the last traffic is in.
	time.Sleep(11 * time.Second)

	checkTargets(t, promURL)
	checkRules(t, promURL)
	empty := map[string]string{}
	if topology == "single" {
		empty["Replicas and replication lag/B"] = "the single Redis has no replica, so no primary reports a replica's lag"
	}
	checkPanels(t, promURL, filepath.Join(top, "grafana", "dashboards"), empty)
	checkExemplars(t, promURL, api.Log, start, time.Now())
	if topology == "single" {
		if pictures == "" {
			pictures = t.TempDir()
		}
		takePictures(t, promURL, base, filepath.Join(top, "grafana", "dashboards", "dubebox.json"), pictures, start, end)
	}
}
