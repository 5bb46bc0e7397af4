//go:build bench

package bench

import (
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
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
// generator: a request is sent when it is due whether or not the ones
// before it were answered, so a stall shows in the latencies instead of
// slowing the load down.
func atConstantRate(t *testing.T, prefix string, rate int, d time.Duration) constantRate {
	t.Helper()
	cdf := make([]float64, zipfKeys)
	total := 0.0
	for k := range cdf {
		total += 1 / float64(k+1)
		cdf[k] = total
	}
	var mu sync.Mutex
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 24))
	targeter := func(tgt *vegeta.Target) error {
		mu.Lock()
		rank := sort.SearchFloat64s(cdf, rnd.Float64()*total)
		mu.Unlock()
		tgt.Method, tgt.URL = "GET", prefix+strconv.Itoa(rank)
		return nil
	}
	atk := vegeta.NewAttacker(vegeta.KeepAlive(true), vegeta.Timeout(5*time.Second))
	var m vegeta.Metrics
	for res := range atk.Attack(targeter, vegeta.Rate{Freq: rate, Per: time.Second}, d, "open loop") {
		m.Add(res)
	}
	m.Close()
	if m.Requests == 0 {
		t.Fatalf("vegeta sent nothing to %s", prefix)
	}
	return constantRate{p99: float64(m.Latencies.P99) / float64(time.Millisecond), rate: m.Throughput, success: m.Success}
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
