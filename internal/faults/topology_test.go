//go:build faults

package faults

import (
	"context"
	"net/http"
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

// ackedWrites returns, for every key written with a 2xx answer, the last
// value acknowledged.
func ackedWrites(recs []rec) map[string]string {
	last := map[string]string{}
	sort.Slice(recs, func(i, j int) bool { return recs[i].end.Before(recs[j].end) })
	for _, r := range recs {
		if r.method == http.MethodPut && r.err == nil && r.status == 200 {
			last[strings.TrimPrefix(r.path, "/v1/kv/")] = r.value
		}
	}
	return last
}

// countLost reads every acknowledged write back through rdb.
func countLost(t *testing.T, rdb redis.UniversalClient, acked map[string]string) int {
	t.Helper()
	lost := 0
	for key, want := range acked {
		got, err := rdb.Get(context.Background(), "dubebox:"+key).Result()
		if err != nil || got != want {
			lost++
		}
	}
	return lost
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
	lastFail := killAt
	for _, r := range after {
		if victim(strings.TrimPrefix(r.path, "/v1/kv/")) && (r.err != nil || r.status >= 500) {
			lastFail = r.end
		}
	}
	for _, r := range after {
		if r.end.After(lastFail) && victim(strings.TrimPrefix(r.path, "/v1/kv/")) && r.err == nil && r.status < 500 {
			recovered = r.end.Sub(killAt)
			break
		}
	}
	if recovered < 0 || recovered > bound {
		t.Errorf("requests for the dead primary's keys succeeded again %v after the kill, want within %v", recovered, bound)
	}
	return counts, recovered
}

// TestClusterPrimaryKilled kills -9 a primary of a Redis Cluster under a
// steady load of writes and reads: its keys answer 503 or 504 (never 500)
// until its replica is promoted, and succeed again by themselves within
// the node timeout plus 3 s.
func TestClusterPrimaryKilled(t *testing.T) {
	c, err := redistest.StartCluster(t.TempDir(), clusterNodeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	s := start(t, "", "REDIS_CLUSTER_ADDRS="+clusterAddrs(c), "REDIS_TIMEOUT="+redisTimeout.String())
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
	owns := func(key string) bool {
		slot, err := live.ClusterKeySlot(ctx, "dubebox:"+key).Result()
		if err != nil {
			return false
		}
		for _, r := range ps[0].slots {
			if slot >= r.Start && slot <= r.End {
				return true
			}
		}
		return false
	}

	lctx, cancel := context.WithCancel(ctx)
	l := runLoad(lctx, s.base, 8, mixed)
	time.Sleep(time.Second)
	killAt := time.Now()
	victim.Kill()
	time.Sleep(clusterNodeTimeout + 4*time.Second)
	cancel()
	recs := l.wait()
	counts, recovered := checkFailover(t, recs, killAt, memo(owns), clusterNodeTimeout+3*time.Second)

	if err := c.WaitOK(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	cc.ReloadState(ctx)
	acked := ackedWrites(recs)
	lost := countLost(t, cc, acked)
	t.Logf("faults: cluster primary %s killed (node timeout %v); %d requests after it by status %v; its keys served again %v after the kill; acknowledged writes %d, lost %d (REDIS_WAIT_REPLICAS=0)",
		victimAddr, clusterNodeTimeout, len(between(recs, killAt, time.Now())), counts, recovered.Round(10*time.Millisecond), len(acked), lost)
}

// TestSentinelPrimaryKilled kills -9 the primary behind Sentinel under a
// steady load: requests answer 503 or 504 (never 500) until a replica is
// promoted, and succeed again by themselves within down-after plus 5 s.
func TestSentinelPrimaryKilled(t *testing.T) {
	st, err := redistest.StartSentinel(t.TempDir(), sentinelDownAfter)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Stop)
	var addrs []string
	for _, sn := range st.Sentinels {
		addrs = append(addrs, sn.Addr)
	}
	s := start(t, "", "REDIS_SENTINEL_ADDRS="+strings.Join(addrs, ","), "REDIS_SENTINEL_MASTER="+redistest.SentinelMaster,
		"REDIS_TIMEOUT="+redisTimeout.String())
	ctx := context.Background()
	lctx, cancel := context.WithCancel(ctx)
	l := runLoad(lctx, s.base, 8, mixed)
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
	acked := ackedWrites(recs)
	lost := countLost(t, rdb, acked)
	sc := redis.NewSentinelClient(&redis.Options{Addr: addrs[0], DisableIdentity: true})
	defer func() { _ = sc.Close() }()
	now, _ := sc.GetMasterAddrByName(ctx, redistest.SentinelMaster).Result()
	t.Logf("faults: sentinel primary %s killed (down-after %v), new primary %v; %d requests after it by status %v; served again %v after the kill; acknowledged writes %d, lost %d (REDIS_WAIT_REPLICAS=0)",
		old, sentinelDownAfter, now, len(between(recs, killAt, time.Now())), counts, recovered.Round(10*time.Millisecond), len(acked), lost)
}

// TestClusterResharding moves slots between primaries with redis-cli
// --cluster reshard under load: go-redis follows MOVED and ASK, so no
// request fails.
func TestClusterResharding(t *testing.T) {
	c, err := redistest.StartCluster(t.TempDir(), clusterNodeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	s := start(t, "", "REDIS_CLUSTER_ADDRS="+clusterAddrs(c), "REDIS_TIMEOUT="+redisTimeout.String())
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(clusterAddrs(c), ","), DisableIdentity: true})
	defer func() { _ = cc.Close() }()
	ps := primaries(t, cc)
	from, to := ps[0].id, ps[1].id

	lctx, cancel := context.WithCancel(ctx)
	l := runLoad(lctx, s.base, 8, mixed)
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
	acked := ackedWrites(recs)
	lost := countLost(t, cc, acked)
	if lost != 0 {
		t.Errorf("%d of %d acknowledged writes lost by a resharding", lost, len(acked))
	}
	t.Logf("faults: cluster resharding: 1000 slots moved in %v under load; %d requests during it by status %v, worst %v; acknowledged writes %d, lost %d",
		took.Round(10*time.Millisecond), len(during), counts, worst.Round(time.Millisecond), len(acked), lost)
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
