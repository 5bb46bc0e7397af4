//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// clusterNodeTimeout is the fault tests' cluster-node-timeout: how long a
// primary must be unreachable before its replica is promoted.
const clusterNodeTimeout = 2 * time.Second

// sentinelDownAfter is the fault tests' down-after-milliseconds.
const sentinelDownAfter = time.Second

func clusterAddrs(c *redistest.Cluster) string {
	var a []string
	for _, n := range c.Nodes {
		a = append(a, n.Addr)
	}
	return strings.Join(a, ",")
}

// primary is a Cluster primary with the slots it serves.
type primary struct {
	addr, id string
	slots    []redis.SlotRange
}

// primaries lists the Cluster's primaries, from CLUSTER NODES.
func primaries(t *testing.T, cc *redis.ClusterClient) []primary {
	t.Helper()
	nodes, err := cc.ClusterNodes(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []primary
	for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
			continue
		}
		p := primary{addr: strings.SplitN(f[1], "@", 2)[0], id: f[0]}
		for _, r := range f[8:] {
			lo, hi, found := strings.Cut(r, "-")
			if !found {
				hi = lo
			}
			start, err1 := strconv.ParseInt(lo, 10, 64)
			end, err2 := strconv.ParseInt(hi, 10, 64)
			if err1 == nil && err2 == nil {
				p.slots = append(p.slots, redis.SlotRange{Start: start, End: end})
			}
		}
		// A node another has not yet heard is a replica of shows as a
		// primary without slots for a moment.
		if len(p.slots) > 0 {
			out = append(out, p)
		}
	}
	if len(out) != 3 {
		t.Fatalf("want 3 primaries, got %+v", out)
	}
	return out
}

// checkFailoverReported checks that the API logged each failover once, at
// warn, naming the old and the new primary, and counted it. Redis may fail
// over more than once after one kill (here, Sentinel at times promoted a
// second replica 1.4 s after the first under load), so the lines must form
// a chain from the killed primary: each one's old primary is the previous
// one's new primary, and the counter equals the number of lines.
func checkFailoverReported(t *testing.T, s *service, old string) {
	t.Helper()
	type change struct {
		Level string `json:"level"`
		Msg   string `json:"msg"`
		Old   string `json:"old_primary"`
		New   string `json:"new_primary"`
	}
	var changes []change
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(s.proc.Log)
		if err != nil {
			t.Fatal(err)
		}
		changes = nil
		for _, l := range strings.Split(string(b), "\n") {
			var c change
			if json.Unmarshal([]byte(l), &c) == nil && c.Msg == "redis primary changed" {
				changes = append(changes, c)
			}
		}
		if len(changes) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(changes) == 0 {
		t.Errorf("no \"redis primary changed\" line in the log after primary %s was killed", old)
	}
	from := old
	for i, c := range changes {
		if c.Level != "warn" || c.Old != from || !strings.HasPrefix(c.New, "127.0.0.1:") || c.New == c.Old {
			t.Errorf("failover line %d of %d: %+v, want a warn line from %s to another primary", i+1, len(changes), c, from)
		}
		from = c.New
	}
	if n := s.metric("dubebox_redis_failovers_total"); n != float64(len(changes)) {
		t.Errorf("dubebox_redis_failovers_total = %v, want %d, one per line logged", n, len(changes))
	}
}

// countLost reads every key written back through rdb: a key whose last
// acknowledged write (200) is gone, overwritten by neither that value nor
// a later write whose outcome is unknown (answered 5xx or not at all: it
// may have been applied), is an acknowledged write lost. It returns how
// many keys lost one, and how many keys had one.
func countLost(t *testing.T, rdb redis.UniversalClient, recs []rec) (lost, acked int) {
	t.Helper()
	byKey := map[string][]rec{}
	for _, r := range recs {
		if r.method == http.MethodPut {
			k := strings.TrimPrefix(r.path, "/v1/kv/")
			byKey[k] = append(byKey[k], r)
		}
	}
	for key, writes := range byKey {
		sort.Slice(writes, func(i, j int) bool { return writes[i].start.Before(writes[j].start) })
		last := -1
		for i, w := range writes {
			if w.err == nil && w.status == http.StatusOK {
				last = i
			}
		}
		if last < 0 {
			continue
		}
		acked++
		allowed := map[string]bool{writes[last].value: true}
		for _, w := range writes[last+1:] {
			if w.err != nil || w.status >= 500 {
				allowed[w.value] = true
			}
		}
		got, err := rdb.Get(context.Background(), "dubebox:"+key).Result()
		if err != nil || !allowed[got] {
			lost++
			if lost <= 5 {
				t.Logf("key %s: Redis holds %q (%v), last acknowledged %q", key, got, err, writes[last].value)
			}
		}
	}
	return lost, acked
}

// checkFailover checks the answers around a failover: never a 500 or an
// unknown code, only 503 or 504 while the primary is gone, and the time to
// the first success on a key the dead primary served after the kill.
func checkFailover(t *testing.T, recs []rec, killAt time.Time, victim func(key string) bool, bound time.Duration) (map[string]int, time.Duration) {
	t.Helper()
	after := between(recs, killAt, time.Now())
	counts, _ := tally(after)
	for _, r := range after {
		switch {
		case r.err != nil:
			t.Errorf("%s %s: no answer: %v", r.method, r.path, r.err)
		case r.status >= 500 && r.status != 503 && r.status != 504:
			t.Errorf("%s %s during the failover: %d %s", r.method, r.path, r.status, r.body)
		case r.status == 503 && !isJSONError(r.body, "unavailable"):
			t.Errorf("503 without its code: %s", r.body)
		}
	}
	var recovered time.Duration = -1
	sort.Slice(after, func(i, j int) bool { return after[i].end.Before(after[j].end) })
	// A write answered 504 durability_unknown was served: it is applied,
	// and only its replication is in doubt (a promoted replica has no
	// replica of its own until the old primary comes back).
	failed := func(r rec) bool {
		served := r.status == 504 && isJSONError(r.body, "durability_unknown")
		return r.err != nil || (r.status >= 500 && !served)
	}
	lastFail := killAt
	for _, r := range after {
		if victim(strings.TrimPrefix(r.path, "/v1/kv/")) && failed(r) {
			lastFail = r.end
		}
	}
	for _, r := range after {
		if r.end.After(lastFail) && victim(strings.TrimPrefix(r.path, "/v1/kv/")) && !failed(r) {
			recovered = r.end.Sub(killAt)
			break
		}
	}
	if recovered < 0 || recovered > bound {
		t.Errorf("requests for the dead primary's keys succeeded again %v after the kill, want within %v", recovered, bound)
	}
	return counts, recovered
}

// TestClusterPrimaryKilled kills -9 a primary of a Redis Cluster under
// load: its keys answer 503 or 504 (never 500) until a replica is
// promoted, and succeed again by themselves within the node timeout plus
// 3 s; keys on the other shards never fail. It runs as a user meets it:
// mixed reads and writes with one replica per primary, and writes only
// (no read to bring the client's slot map up to date) with two replicas
// per primary, so that REDIS_WAIT_REPLICAS=1 still has a replica after
// the promotion. With REDIS_WAIT_REPLICAS=1 no acknowledged write is lost;
// with 0 the loss is measured.
func TestClusterPrimaryKilled(t *testing.T) {
	for _, tc := range []struct {
		wait, replicas int
		load           next
	}{
		{0, 1, mixed},
		{1, 1, mixed},
		{0, 2, writesOnly},
		{1, 2, writesOnly},
	} {
		name := fmt.Sprintf("REDIS_WAIT_REPLICAS=%d/replicas=%d/%s", tc.wait, tc.replicas, map[bool]string{true: "writes", false: "mixed"}[tc.replicas == 2])
		t.Run(name, func(t *testing.T) { clusterPrimaryKilled(t, tc.wait, tc.replicas, tc.load) })
	}
}

// eachWait runs a failover test with REDIS_WAIT_REPLICAS 0 and 1.
func eachWait(t *testing.T, test func(t *testing.T, wait int)) {
	t.Helper()
	for _, wait := range []int{0, 1} {
		t.Run(fmt.Sprintf("REDIS_WAIT_REPLICAS=%d", wait), func(t *testing.T) { test(t, wait) })
	}
}

// writesOnly is a steady load of writes only, each worker rewriting its
// own 40 keys with unique values, so that every key has a last
// acknowledged value to check.
func writesOnly(worker, i int) (method, path, body, value string) {
	v := fmt.Sprintf("value-%d-%d", worker, i)
	return http.MethodPut, fmt.Sprintf("/v1/kv/w%d-%d", worker, i%40), `{"value":"` + v + `"}`, v
}

//nolint:thelper // a test body, run once per case.
func clusterPrimaryKilled(t *testing.T, wait, replicas int, load next) {
	c, err := redistest.StartClusterReplicas(t.TempDir(), clusterNodeTimeout, replicas)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	s := start(t, "", "REDIS_CLUSTER_ADDRS="+clusterAddrs(c), "REDIS_TIMEOUT="+redisTimeout.String(),
		fmt.Sprintf("REDIS_WAIT_REPLICAS=%d", wait))
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(clusterAddrs(c), ","), DisableIdentity: true})
	defer func() { _ = cc.Close() }()
	ctx := context.Background()
	ps := primaries(t, cc)
	victimAddr := ps[0].addr
	var victim *redistest.Server
	for _, n := range c.Nodes {
		if n.Addr == victimAddr {
			victim = n
		}
	}
	// CLUSTER KEYSLOT goes to a node that stays up: asked through the
	// cluster client, it may land on the dead one.
	live := redis.NewClient(&redis.Options{Addr: ps[1].addr, DisableIdentity: true})
	defer func() { _ = live.Close() }()
	owns := memo(func(key string) bool {
		slot, err := live.ClusterKeySlot(ctx, "dubebox:"+key).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT: %v", err)
		}
		for _, r := range ps[0].slots {
			if slot >= r.Start && slot <= r.End {
				return true
			}
		}
		return false
	})

	lctx, cancel := context.WithCancel(ctx)
	workers := 4
	if replicas == 2 {
		workers = 6
	}
	l := runLoad(lctx, s.base, workers, load)
	time.Sleep(time.Second)
	followers := replicasOf(t, live, ps[0].id)
	killAt := time.Now()
	victim.Kill()
	promoted := make(chan time.Duration, 1)
	go func() { promoted <- waitPromotion(live, followers, killAt, 10*time.Second) }()
	time.Sleep(clusterNodeTimeout + 5*time.Second)
	cancel()
	recs := l.wait()
	// Redis's own failover (detection, election) is most of the time, and
	// it varies; the API's part is how soon after the promotion it serves
	// the keys again.
	promotion := <-promoted
	// The bound is the node timeout plus 3 s; when Redis itself took longer
	// to promote the replica (it varied from 3.4 to 4.3 s here), the API
	// is held to 1 s after the promotion instead.
	counts, recovered := checkFailover(t, recs, killAt, owns, max(clusterNodeTimeout+3*time.Second, promotion+time.Second))
	if recovered-promotion > time.Second {
		t.Errorf("the API served the dead primary's keys %v after its replica was promoted, want within 1s", recovered-promotion)
	}
	healthyFailed := 0
	for _, r := range between(recs, killAt, time.Now()) {
		if key := strings.TrimPrefix(r.path, "/v1/kv/"); !owns(key) && (r.err != nil || r.status != http.StatusOK && r.status != http.StatusNotFound) {
			healthyFailed++
			if healthyFailed <= 5 {
				t.Errorf("%s %s on a healthy shard during the failover, %v after the kill: %d %v %s\n%s", r.method, r.path,
					r.start.Sub(killAt).Round(time.Millisecond), r.status, r.err, r.body, s.logLine(r.body))
			}
		}
	}

	if err := c.WaitOK(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	cc.ReloadState(ctx)
	checkFailoverReported(t, s, victimAddr)
	lost, acked := countLost(t, cc, recs)
	if wait > 0 && lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost with REDIS_WAIT_REPLICAS=%d", lost, acked, wait)
	}
	t.Logf("faults: cluster primary %s killed (node timeout %v, %d replicas a primary, REDIS_WAIT_REPLICAS=%d, %d workers); %d requests after it by status %v, %d failed on healthy shards; replica promoted %v after the kill, its keys served again %v after the kill; acknowledged writes %d, lost %d",
		victimAddr, clusterNodeTimeout, replicas, wait, workers, len(between(recs, killAt, time.Now())), counts, healthyFailed,
		promotion.Round(10*time.Millisecond), recovered.Round(10*time.Millisecond), acked, lost)
}

// replicasOf finds the ids of primaryID's replicas in CLUSTER NODES.
func replicasOf(t *testing.T, live *redis.Client, primaryID string) map[string]bool {
	t.Helper()
	nodes, err := live.ClusterNodes(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, line := range strings.Split(nodes, "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[3] == primaryID {
			ids[f[0]] = true
		}
	}
	if len(ids) == 0 {
		t.Fatalf("no replica of %s in\n%s", primaryID, nodes)
	}
	return ids
}

// waitPromotion polls a live node until one of the replicas is a primary
// with slots, and says how long after killAt that was.
func waitPromotion(live *redis.Client, replicas map[string]bool, killAt time.Time, within time.Duration) time.Duration {
	for time.Since(killAt) < within {
		nodes, err := live.ClusterNodes(context.Background()).Result()
		if err == nil {
			for _, line := range strings.Split(nodes, "\n") {
				if f := strings.Fields(line); len(f) > 8 && replicas[f[0]] && strings.Contains(f[2], "master") {
					return time.Since(killAt)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return within
}

// TestSentinelPrimaryKilled kills -9 the primary behind Sentinel under a
// steady load: requests answer 503 or 504 (never 500) until a replica is
// promoted, and succeed again by themselves within down-after plus 5 s.
// With REDIS_WAIT_REPLICAS=1 the load is writes only (no read can find
// the new primary for the writes) and no acknowledged write is lost; with
// 0 the load is mixed and the loss is measured.
func TestSentinelPrimaryKilled(t *testing.T) { eachWait(t, sentinelPrimaryKilled) }

// startOnSentinel starts a primary with replicas behind three Sentinels,
// and the service on them with env; it returns the Sentinels' addresses
// too.
func startOnSentinel(t *testing.T, env ...string) (*redistest.Sentinel, *service, []string) {
	t.Helper()
	st, err := redistest.StartSentinel(t.TempDir(), sentinelDownAfter)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Stop)
	var addrs []string
	for _, sn := range st.Sentinels {
		addrs = append(addrs, sn.Addr)
	}
	s := start(t, "", append([]string{"REDIS_SENTINEL_ADDRS=" + strings.Join(addrs, ","), "REDIS_SENTINEL_MASTER=" + redistest.SentinelMaster,
		"REDIS_TIMEOUT=" + redisTimeout.String()}, env...)...)
	return st, s, addrs
}

//nolint:thelper // a test body, run once per REDIS_WAIT_REPLICAS.
func sentinelPrimaryKilled(t *testing.T, wait int) {
	st, s, addrs := startOnSentinel(t, fmt.Sprintf("REDIS_WAIT_REPLICAS=%d", wait))
	ctx := context.Background()
	lctx, cancel := context.WithCancel(ctx)
	load := mixed
	if wait > 0 {
		load = writesOnly
	}
	l := runLoad(lctx, s.base, 8, load)
	time.Sleep(time.Second)
	killAt := time.Now()
	old := st.Primary.Addr
	st.Primary.Kill()
	time.Sleep(sentinelDownAfter + 6*time.Second)
	cancel()
	recs := l.wait()
	counts, recovered := checkFailover(t, recs, killAt, func(string) bool { return true }, sentinelDownAfter+5*time.Second)

	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.SentinelMaster, SentinelAddrs: addrs, DisableIdentity: true})
	defer func() { _ = rdb.Close() }()
	checkFailoverReported(t, s, old)
	lost, acked := countLost(t, rdb, recs)
	sc := redis.NewSentinelClient(&redis.Options{Addr: addrs[0], DisableIdentity: true})
	defer func() { _ = sc.Close() }()
	now, _ := sc.GetMasterAddrByName(ctx, redistest.SentinelMaster).Result()
	if wait > 0 && lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost with REDIS_WAIT_REPLICAS=%d", lost, acked, wait)
	}
	t.Logf("faults: sentinel primary %s killed (down-after %v, REDIS_WAIT_REPLICAS=%d, %s), new primary %v; %d requests after it by status %v; served again %v after the kill; acknowledged writes %d, lost %d",
		old, sentinelDownAfter, wait, map[bool]string{true: "writes only", false: "mixed"}[wait > 0], now, len(between(recs, killAt, time.Now())), counts, recovered.Round(10*time.Millisecond), acked, lost)
}

// TestClusterResharding moves slots between primaries with redis-cli
// --cluster reshard under load: go-redis follows MOVED and ASK, and so does
// the store's own path for writes that wait for replicas, so no request
// fails. With REDIS_WAIT_REPLICAS=1 the load is writes only, each waiting
// for its replica.
func TestClusterResharding(t *testing.T) { eachWait(t, clusterResharding) }

//nolint:thelper // a test body, run once per REDIS_WAIT_REPLICAS.
func clusterResharding(t *testing.T, wait int) {
	c, err := redistest.StartCluster(t.TempDir(), clusterNodeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	s := start(t, "", "REDIS_CLUSTER_ADDRS="+clusterAddrs(c), "REDIS_TIMEOUT="+redisTimeout.String(),
		fmt.Sprintf("REDIS_WAIT_REPLICAS=%d", wait))
	load := mixed
	if wait > 0 {
		load = writesOnly
	}
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(clusterAddrs(c), ","), DisableIdentity: true})
	defer func() { _ = cc.Close() }()
	ps := primaries(t, cc)
	from, to := ps[0].id, ps[1].id

	lctx, cancel := context.WithCancel(ctx)
	l := runLoad(lctx, s.base, 8, load)
	time.Sleep(time.Second)
	start := time.Now()
	out, err := exec.CommandContext(ctx, "redis-cli", "--cluster", "reshard", c.Nodes[0].Addr,
		"--cluster-from", from, "--cluster-to", to, "--cluster-slots", "1000", "--cluster-yes").CombinedOutput()
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	cancel()
	recs := l.wait()
	if err != nil {
		t.Fatalf("redis-cli --cluster reshard: %v\n%s", err, tailOf(string(out)))
	}
	during := between(recs, start, start.Add(took))
	counts, worst := tally(during)
	for _, r := range during {
		if r.err != nil || r.status >= 500 {
			t.Errorf("%s %s during the resharding: %d %v %s", r.method, r.path, r.status, r.err, r.body)
		}
	}
	if len(during) == 0 {
		t.Fatal("no request during the resharding")
	}
	lost, acked := countLost(t, cc, recs)
	if lost != 0 {
		t.Errorf("%d of %d acknowledged writes lost by a resharding", lost, acked)
	}
	moved, ask := s.metric(`dubebox_redis_redirections_total{kind="moved"}`), s.metric(`dubebox_redis_redirections_total{kind="ask"}`)
	if moved+ask == 0 {
		t.Errorf("no MOVED or ASK counted in dubebox_redis_redirections_total while slots moved")
	}
	t.Logf("faults: cluster resharding (REDIS_WAIT_REPLICAS=%d): 1000 slots moved in %v under load; %d requests during it by status %v, worst %v; redirections followed: %v MOVED, %v ASK; acknowledged writes %d, lost %d",
		wait, took.Round(10*time.Millisecond), len(during), counts, worst.Round(time.Millisecond), moved, ask, acked, lost)
}

func tailOf(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}

// memo caches a key predicate, which asks Redis.
func memo(f func(string) bool) func(string) bool {
	seen := map[string]bool{}
	return func(k string) bool {
		if v, ok := seen[k]; ok {
			return v
		}
		v := f(k)
		seen[k] = v
		return v
	}
}
