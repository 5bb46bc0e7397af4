//go:build bench

package bench

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// txFigures are the transactions' figures: for each size, the rate of
// transactions and of the increments in them, beside the same increments
// sent one request each; and how long Redis runs one transaction of each
// size in holdSizes (its script holds every other client meanwhile).
type txFigures struct {
	sizes    []int
	tx       []result // one run per size
	oneByOne result   // POST /v1/kv/{key}/incr, one increment a request
	holds    []int
	holdUS   []float64
}

var txSizes, holdSizes = []int{1, 4, 16}, []int{1, 16, 64, 256}

// txScript posts transactions of n increments, on keys of one hash tag
// picked at random among keys, so that they run on a Cluster too.
const txScript = `
math.randomseed(os.time())
local n = %d
request = function()
  local tag = math.random(0, %d)
  local ops = {}
  for i = 1, n do
    ops[i] = '{"op":"incr","key":"{t' .. tag .. '}:k' .. i .. '"}'
  end
  return wrk.format("POST", "/v1/tx", {["Content-Type"]="application/json"}, '{"ops":[' .. table.concat(ops, ",") .. ']}')
end
`

const incrScript = `
math.randomseed(os.time())
request = function()
  return wrk.format("POST", "/v1/kv/count" .. math.random(0, %d) .. "/incr")
end
`

// measureTx runs transactions of each size against one instance as
// shipped (telemetry to the sink), and the one-by-one increments, with
// wrk's settings as the other runs; then it reads Redis's own time per
// transaction from INFO commandstats.
func measureTx(t *testing.T, pl plan, bin, redisAddr, otlp string) txFigures {
	t.Helper()
	srv := startServer(t, bin, redisAddr, []string{"LOG_LEVEL=warn", "OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp, "MAX_TX_OPS=1000"})
	defer srv.stop()
	f := txFigures{sizes: txSizes, holds: holdSizes}
	for _, n := range txSizes {
		var rs []result
		for range pl.repeats {
			rs = append(rs, wrkServer(t, pl, srv, fmt.Sprintf(txScript, n, keys-1)))
		}
		f.tx = append(f.tx, medianResult(rs))
	}
	var rs []result
	for range pl.repeats {
		rs = append(rs, wrkServer(t, pl, srv, fmt.Sprintf(incrScript, keys-1)))
	}
	f.oneByOne = medianResult(rs)

	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer func() { _ = rdb.Close() }()
	ctx := context.Background()
	for _, n := range holdSizes {
		ops := make([]string, n)
		for i := range ops {
			if i%2 == 0 {
				ops[i] = fmt.Sprintf(`{"op":"set","key":"{hold}:s%d","value":"%s"}`, i, strings.Repeat("v", valueLen))
			} else {
				ops[i] = fmt.Sprintf(`{"op":"incr","key":"{hold}:n%d"}`, i%50)
			}
		}
		body := `{"ops":[` + strings.Join(ops, ",") + `]}`
		if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		calls := 50
		for range calls {
			resp, err := http.Post(srv.base+"/v1/tx", "application/json", strings.NewReader(body))
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("a transaction of %d operations: %v %v", n, err, resp)
			}
			_ = resp.Body.Close()
		}
		f.holdUS = append(f.holdUS, evalshaUS(t, rdb))
	}
	return f
}

// evalshaUS is Redis's own time per EVALSHA since the last CONFIG
// RESETSTAT, in microseconds.
func evalshaUS(t *testing.T, rdb *redis.Client) float64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "cmdstat_evalsha:"); ok {
			for _, kv := range strings.Split(rest, ",") {
				if v, ok := strings.CutPrefix(kv, "usec_per_call="); ok {
					us, _ := strconv.ParseFloat(v, 64)
					return us
				}
			}
		}
	}
	t.Fatal("INFO commandstats has no evalsha")
	return 0
}

func (f txFigures) figures() map[string]float64 {
	m := map[string]float64{"one-by-one incr": f.oneByOne.rps}
	for i, n := range f.sizes {
		m[fmt.Sprintf("tx of %d", n)] = f.tx[i].rps
	}
	for i, n := range f.holds {
		m[fmt.Sprintf("Redis time of a tx of %d", n)] = f.holdUS[i]
	}
	return m
}

func (f txFigures) render() string {
	var b strings.Builder
	b.WriteString("\n**Transactions** (one instance, telemetry as shipped, wrk as above; increments on keys of one hash tag among 1,000): POST /v1/tx of n increments beside the same increments sent one request each (POST /v1/kv/{key}/incr).\n\n")
	b.WriteString("| | transactions/s | increments/s | CPU µs a transaction (server) | increments/s ÷ one by one |\n|---|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| one by one | | %.0f | %.1f | 1.00 |\n", f.oneByOne.rps, f.oneByOne.cpuUS)
	for i, n := range f.sizes {
		r := f.tx[i]
		fmt.Fprintf(&b, "| tx of %d | %.0f | %.0f | %.1f | %.2f |\n", n, r.rps, r.rps*float64(n), r.cpuUS, r.rps*float64(n)/f.oneByOne.rps)
	}
	b.WriteString("\nRedis's own time per transaction (INFO commandstats, EVALSHA, 50 transactions of half 64-byte sets, half increments): ")
	for i, n := range f.holds {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d operations %.0f µs", n, f.holdUS[i])
	}
	fmt.Fprintf(&b, ". Redis serves no other client while one runs: MAX_TX_OPS's default, 64, bounds that hold to about %.0f µs.\n", f.holdUS[slices.Index(f.holds, 64)])
	return b.String()
}
