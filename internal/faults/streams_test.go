//go:build faults

package faults

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/servicetest"
	"github.com/redis/go-redis/v9"
)

// event is one Server-Sent Event, or a heartbeat (name "").
type event struct{ name, data string }

// openStream opens a stream on the service and reads its events into the
// returned channel, closed when the stream ends. It returns nil and the
// status when the service answers otherwise than 200.
func openStream(t *testing.T, url string) (<-chan event, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req) //nolint:bodyclose // closed by the reader below, or at once when refused.
	if err != nil {
		cancel()
		return nil, 0
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		cancel()
		return nil, resp.StatusCode
	}
	t.Cleanup(cancel)
	raw := make(chan servicetest.Event, 1024)
	go servicetest.ReadEvents(resp.Body, raw)
	events := make(chan event, 1024)
	go func() {
		defer close(events)
		defer func() { _ = resp.Body.Close() }()
		for ev := range raw {
			if ev.Name != "" {
				events <- event{name: ev.Name, data: ev.Data}
			}
		}
	}()
	return events, http.StatusOK
}

// expect waits for an event named name, skipping those named in skip.
func expect(t *testing.T, events <-chan event, name string, within time.Duration, skip ...string) event {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the stream ended; want a %s event", name)
			}
			if ev.name == name {
				return ev
			}
			if !contains(skip, ev.name) {
				t.Fatalf("event %s %s; want %s", ev.name, ev.data, name)
			}
		case <-timer.C:
			t.Fatalf("no %s event within %v", name, within)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// reopen opens url again until the service answers 200, within.
func reopen(t *testing.T, url string, within time.Duration) <-chan event {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		events, status := openStream(t, url)
		if events != nil {
			return events
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d for %v after the failure", url, status, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestStreamsThroughSIGTERM: SIGTERM ends every open stream with its end
// event, and the process exits 0 well within SHUTDOWN_TIMEOUT.
func TestStreamsThroughSIGTERM(t *testing.T) {
	rs := redistest.Start(t)
	s := start(t, rs.Addr, "SHUTDOWN_TIMEOUT=10s")
	var streams []<-chan event
	for _, path := range []string{"/v1/channels/c/events", "/v1/kv/k/events", "/v1/hash/h/events"} {
		events, status := openStream(t, s.base+path)
		if events == nil {
			t.Fatalf("GET %s: %d", path, status)
		}
		streams = append(streams, events)
	}
	began := time.Now()
	s.signal(syscall.SIGTERM)
	for _, events := range streams {
		if ev := expect(t, events, "end", 5*time.Second, "deleted"); ev.data != `{"reason":"shutdown"}` {
			t.Errorf("end event %s", ev.data)
		}
	}
	if err := s.proc.Wait(); err != nil {
		t.Errorf("exit after SIGTERM with streams open: %v, want status 0", err)
	}
	took := time.Since(began)
	if took > 5*time.Second {
		t.Errorf("exit took %v after SIGTERM with streams open", took)
	}
	t.Logf("faults: SIGTERM with %d streams open: each ended with its end event, exit status 0 after %v", len(streams), took.Round(time.Millisecond))
}

// TestStreamsThroughSentinelFailover: when the primary behind Sentinel
// dies, a subscription and a key watch each end with an error event (never
// silence); reopened after the failover, they work on the new primary.
func TestStreamsThroughSentinelFailover(t *testing.T) {
	st, s, _ := startOnSentinel(t)
	checkStreamsThroughFailover(t, s, func() { st.Primary.Kill() }, nil, sentinelDownAfter+20*time.Second)
}

// TestStreamsThroughClusterFailover: the same for a subscription on a
// Cluster, whose channel's shard primary dies.
func TestStreamsThroughClusterFailover(t *testing.T) {
	c, err := redistest.StartClusterReplicas(t.TempDir(), clusterNodeTimeout, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	s := start(t, "", "REDIS_CLUSTER_ADDRS="+clusterAddrs(c), "REDIS_TIMEOUT="+redisTimeout.String())
	events, status := openStream(t, s.base+"/v1/channels/news/events")
	if events == nil {
		t.Fatalf("subscribe: %d", status)
	}
	// Kill the primary that serves the channel's slot.
	owner := channelOwner(t, c, "dubebox:news")
	killAt := time.Now()
	owner.Kill()
	ev := expect(t, events, "error", 30*time.Second)
	if !strings.Contains(ev.data, `"code":"unavailable"`) {
		t.Errorf("error event %s", ev.data)
	}
	ended := time.Since(killAt)
	events = reopen(t, s.base+"/v1/channels/news/events", clusterNodeTimeout+30*time.Second)
	back := time.Since(killAt)
	publishUntilHeard(t, s, events, 30*time.Second)
	if got := s.metric(`dubebox_sse_dropped_total{kind="channel",reason="redis_lost"}`); got != 1 {
		t.Errorf("dubebox_sse_dropped_total redis_lost %v, want 1", got)
	}
	t.Logf("faults: cluster primary of the channel's slot killed: the subscription ended with an error event after %v; subscribed again and heard a publish %v after the kill",
		ended.Round(time.Millisecond), back.Round(time.Millisecond))
}

// channelOwner is the Cluster node that serves channel's slot.
func channelOwner(t *testing.T, c *redistest.Cluster, channel string) *redistest.Server {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(clusterAddrs(c), ","), DisableIdentity: true})
	defer func() { _ = cc.Close() }()
	slot, err := cc.ClusterKeySlot(t.Context(), channel).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range primaries(t, cc) {
		for _, r := range p.slots {
			if slot >= r.Start && slot <= r.End {
				for _, n := range c.Nodes {
					if n.Addr == p.addr {
						return n
					}
				}
			}
		}
	}
	t.Fatalf("no primary serves slot %d", slot)
	return nil
}

// publishUntilHeard publishes through the API until the stream hears it:
// a publish sent while the new primary is still being found may fail.
func publishUntilHeard(t *testing.T, s *service, events <-chan event, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.base+"/v1/channels/news/messages", strings.NewReader(`{"message":"after"}`))
		resp, err := quick.Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the reopened stream ended")
			}
			if ev.name == "message" && strings.Contains(ev.data, `"message":"after"`) {
				return
			}
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Fatalf("no message heard on the reopened stream within %v", within)
}

// checkStreamsThroughFailover opens a subscription and a key watch, breaks
// Redis with kill, and checks that each stream ends with an error event;
// then, once heal (when given) has mended Redis, that both streams open
// again within and follow it.
func checkStreamsThroughFailover(t *testing.T, s *service, kill, heal func(), within time.Duration) {
	t.Helper()
	sub, status := openStream(t, s.base+"/v1/channels/news/events")
	if sub == nil {
		t.Fatalf("subscribe: %d", status)
	}
	watch, status := openStream(t, s.base+"/v1/kv/w/events")
	if watch == nil {
		t.Fatalf("watch: %d", status)
	}
	expect(t, watch, "deleted", 5*time.Second)
	killAt := time.Now()
	kill()
	for _, events := range []<-chan event{sub, watch} {
		if ev := expect(t, events, "error", 30*time.Second); !strings.Contains(ev.data, `"code":"unavailable"`) {
			t.Errorf("error event %s", ev.data)
		}
	}
	ended := time.Since(killAt)
	if heal != nil {
		heal()
	}
	sub = reopen(t, s.base+"/v1/channels/news/events", within)
	watch = reopen(t, s.base+"/v1/kv/w/events", within)
	expect(t, watch, "deleted", 5*time.Second)
	publishUntilHeard(t, s, sub, 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, s.base+"/v1/kv/w", strings.NewReader(`{"value":"after"}`))
		if resp, err := quick.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no write succeeded after the failover")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ev := expect(t, watch, "changed", 10*time.Second); !strings.Contains(ev.data, `"value":"after"`) {
		t.Errorf("changed event %s", ev.data)
	}
	t.Logf("faults: Redis broken under a subscription and a key watch: both streams ended with an error event after %v; reopened, they followed Redis again %v after it broke",
		ended.Round(time.Millisecond), time.Since(killAt).Round(time.Millisecond))
}

// TestStreamsThroughRedisStall: a Redis that stops answering without
// closing its connections (SIGSTOP) ends a subscription and a key watch
// with an error event within seconds, as a dead one does; once it
// answers again (SIGCONT), streams opened again work.
func TestStreamsThroughRedisStall(t *testing.T) {
	rs := redistest.Start(t)
	s := start(t, rs.Addr, "REDIS_TIMEOUT="+redisTimeout.String())
	checkStreamsThroughFailover(t, s, func() {
		if err := rs.Pause(); err != nil {
			t.Fatal(err)
		}
	}, func() {
		if err := rs.Resume(); err != nil {
			t.Fatal(err)
		}
	}, 15*time.Second)
}
