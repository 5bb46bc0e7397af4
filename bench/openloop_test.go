//go:build bench

package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// constantRate is what a constant-rate run found: the p99 latency (ms),
// the rate reached and the share of 2xx answers.
type constantRate struct {
	p99, rate, success float64
}

// olRate is the constant rate of the open-loop comparison (req/s): about
// half of what Webdis reaches here on the Zipf GETs, so that both
// contenders have room and the p99 measures latency, not saturation.
const olRate = 10000

// atConstantRate sends Zipf GETs (s = 1 over zipfKeys, as zipfScript) to
// prefix + rank at rate per second for d with vegeta, an open-loop load
// generator we did not write (v12.13.0, a tool of go.mod, built by
// TestBench): a request is sent when it is due whether or not the ones
// before it were answered, so a stall shows in the latencies instead of
// slowing the load down. It runs as a process of its own, as a client
// would, not inside the test's process, which also reads the servers'
// logs and takes their traces.
func atConstantRate(t *testing.T, vegeta, prefix string, rate int, d time.Duration) constantRate {
	t.Helper()
	// vegeta reads its targets in turn: a long enough list drawn from the
	// distribution is the distribution.
	cdf := make([]float64, zipfKeys)
	total := 0.0
	for k := range cdf {
		total += 1 / float64(k+1)
		cdf[k] = total
	}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 24))
	var targets bytes.Buffer
	for range 20 * zipfKeys {
		fmt.Fprintf(&targets, "GET %s%d\n", prefix, sort.SearchFloat64s(cdf, rnd.Float64()*total))
	}
	file := filepath.Join(t.TempDir(), "targets")
	if err := os.WriteFile(file, targets.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// The results go to a file and are summed up after the attack: a
	// report read from a pipe while the attack runs takes a share of the
	// two cores, and that share tipped DubeBox (costlier per request than
	// Webdis) into saturation (bench/results.md, 2026-12-06).
	results := filepath.Join(filepath.Dir(file), "results.bin")
	attack := exec.Command(vegeta, "attack", "-targets", file, "-rate", strconv.Itoa(rate)+"/1s",
		"-duration", d.String(), "-keepalive", "-timeout", "5s", "-output", results)
	if out, err := attack.CombinedOutput(); err != nil {
		t.Fatalf("vegeta attack: %v\n%s", err, out)
	}
	out, err := exec.Command(vegeta, "report", "-type", "json", results).Output()
	if err != nil {
		t.Fatalf("vegeta report: %v", err)
	}
	var sum struct {
		Requests   int     `json:"requests"`
		Throughput float64 `json:"throughput"`
		Success    float64 `json:"success"`
		Latencies  struct {
			P99 float64 `json:"99th"`
		} `json:"latencies"`
	}
	if err := json.Unmarshal(out, &sum); err != nil || sum.Requests == 0 {
		t.Fatalf("vegeta report: %v\n%s", err, out)
	}
	return constantRate{p99: sum.Latencies.P99 / float64(time.Millisecond), rate: sum.Throughput, success: sum.Success}
}

// medianRate is the median of each figure of rs.
func medianRate(rs []constantRate) constantRate {
	pick := func(f func(constantRate) float64) float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = f(r)
		}
		return median(xs)
	}
	return constantRate{
		p99:     pick(func(r constantRate) float64 { return r.p99 }),
		rate:    pick(func(r constantRate) float64 { return r.rate }),
		success: pick(func(r constantRate) float64 { return r.success }),
	}
}
