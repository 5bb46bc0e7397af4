package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/store"
	"github.com/redis/go-redis/v9"
)

// nearCounts records what the near cache did.
type nearCounts struct{ hits, misses, evictions, invalidations atomic.Int64 }

func (n *nearCounts) NearHit()          { n.hits.Add(1) }
func (n *nearCounts) NearMiss()         { n.misses.Add(1) }
func (n *nearCounts) NearEviction()     { n.evictions.Add(1) }
func (n *nearCounts) NearInvalidation() { n.invalidations.Add(1) }

var nearTest = store.NearConfig{NearSize: 10000, NearMaxBytes: 16 << 20, NearTTL: 5 * time.Second}

// nearStore is a store with the near cache on over its own Redis server
// (tracking is per server, and the tests kill its connections).
func nearStore(t *testing.T, addr string) (*store.Store, *nearCounts) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	counts := &nearCounts{}
	s := store.New(rdb, "near:", time.Second, nil)
	if err := s.StartNearCache(t.Context(), nearTest, counts, func(msg string, err error) { t.Log(msg, err) }); err != nil {
		t.Fatal(err)
	}
	waitNearReady(t, s)
	return s, counts
}

// waitNearReady reads a key until the near cache answers it.
func waitNearReady(t *testing.T, s *store.Store) {
	t.Helper()
	ctx := context.Background()
	if err := s.Set(ctx, "ready-probe", "v", 0); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got, err := s.Get(ctx, "ready-probe"); err == nil && got.Near {
			return
		}
	}
	t.Fatal("the near cache never started answering")
}

// TestNearCacheReadsYourWrites races writers, each writing its own key and
// reading it back at once, with readers that keep loading those keys into
// the near cache: no read after a write may answer an older value.
//
// It does not run in parallel: its readers keep the cores busy, and the
// package's timing-bound tests (TestHSetUnderContention) must not share
// them.
func TestNearCacheReadsYourWrites(t *testing.T) { //nolint:paralleltest // see above.
	srv := redistest.Start(t)
	s, counts := nearStore(t, srv.Addr)
	ctx := context.Background()
	const writers, pairs = 8, 1000
	var stale, done atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = s.Get(ctx, fmt.Sprintf("k%d", (i+r)%writers))
			}
		})
	}
	var writes sync.WaitGroup
	for w := range writers {
		writes.Go(func() {
			key := fmt.Sprintf("k%d", w)
			for i := range pairs {
				want := fmt.Sprintf("%d-%d", w, i)
				if err := s.Set(ctx, key, want, 0); err != nil {
					t.Error(err)
					return
				}
				got, err := s.Get(ctx, key)
				if err != nil || got.Value != want {
					stale.Add(1)
				}
				done.Add(1)
			}
		})
	}
	writes.Wait()
	close(stop)
	wg.Wait()
	if n := stale.Load(); n != 0 {
		t.Errorf("%d of %d reads after a write answered an older value", n, done.Load())
	}
	if counts.hits.Load() < 1000 {
		t.Errorf("the near cache answered only %d reads: the test did not exercise it", counts.hits.Load())
	}
	t.Logf("%d write-then-read pairs, 0 stale; near cache: %d hits, %d misses, %d invalidations",
		done.Load(), counts.hits.Load(), counts.misses.Load(), counts.invalidations.Load())
}

// TestNearCacheFollowsOtherWriters writes through another client (another
// instance, or redis-cli) and measures how long the near cache keeps the
// old value: Redis's invalidation must reach it within a bound.
func TestNearCacheFollowsOtherWriters(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, _ := nearStore(t, srv.Addr)
	other := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = other.Close() })
	ctx := context.Background()
	var worst time.Duration
	for i := range 50 {
		if err := s.Set(ctx, "shared", "old", 0); err != nil {
			t.Fatal(err)
		}
		for got, _ := s.Get(ctx, "shared"); !got.Near; got, _ = s.Get(ctx, "shared") {
		}
		want := fmt.Sprint("new-", i)
		start := time.Now()
		other.Set(ctx, "near:shared", want, 0)
		for {
			got, err := s.Get(ctx, "shared")
			if err == nil && got.Value == want {
				break
			}
			if time.Since(start) > time.Second {
				t.Fatalf("the near cache still answered %q a second after another client wrote", got.Value)
			}
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("another client's write reached the near cache within %v (worst of 50)", worst)
}

// TestNearCacheKeepsTTLs checks that an entry never outlives its key and
// answers the key's remaining TTL, not the one it had when it was read.
func TestNearCacheKeepsTTLs(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, _ := nearStore(t, srv.Addr)
	ctx := context.Background()
	if err := s.Set(ctx, "short", "v", 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	first, _ := s.Get(ctx, "short")
	for !first.Near {
		first, _ = s.Get(ctx, "short")
	}
	time.Sleep(700 * time.Millisecond)
	second, err := s.Get(ctx, "short")
	for err == nil && !second.Near {
		second, err = s.Get(ctx, "short")
	}
	if err != nil || second.TTL > first.TTL-600*time.Millisecond {
		t.Fatalf("after 0.7 s the near cache answered TTL %v (first %v, near %v): it must count down", second.TTL, first.TTL, second.Near)
	}
	time.Sleep(900 * time.Millisecond)
	if got, err := s.Get(ctx, "short"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after the key expired: %+v, %v; want ErrNotFound", got, err)
	}
}

// TestNearCacheEmptiesWhenTrackingIsLost kills the tracking connections:
// until tracking is back, nothing is served from memory, so a write the
// lost connection would have announced cannot be missed.
func TestNearCacheEmptiesWhenTrackingIsLost(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, _ := nearStore(t, srv.Addr)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = admin.Close() })
	ctx := context.Background()
	if err := s.Set(ctx, "k", "old", 0); err != nil {
		t.Fatal(err)
	}
	for got, _ := s.Get(ctx, "k"); !got.Near; got, _ = s.Get(ctx, "k") {
	}
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	// Served from memory only once tracking is back, and then fresh.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := s.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if !got.Near {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the near cache kept answering after its tracking connection was killed")
		}
	}
	admin.Set(ctx, "near:k", "new", 0)
	waitNearReady(t, s)
	if got, _ := s.Get(ctx, "k"); got.Value != "new" {
		t.Fatalf("after tracking came back: %q, want the value written while it was down", got.Value)
	}
}

// TestNearCacheBypass checks that a read under WithoutNearCache goes to Redis.
func TestNearCacheBypass(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, _ := nearStore(t, srv.Addr)
	ctx := context.Background()
	if err := s.Set(ctx, "k", "v", 0); err != nil {
		t.Fatal(err)
	}
	for got, _ := s.Get(ctx, "k"); !got.Near; got, _ = s.Get(ctx, "k") {
	}
	if got, err := s.Get(store.WithoutNearCache(ctx), "k"); err != nil || got.Near {
		t.Fatalf("WithoutNearCache: %+v, %v; want an answer from Redis", got, err)
	}
}

// TestNearCacheOnlyOnOneServer checks that a Cluster client refuses it,
// saying why.
func TestNearCacheOnlyOnOneServer(t *testing.T) {
	t.Parallel()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	t.Cleanup(func() { _ = cc.Close() })
	s := store.New(cc, "near:", time.Second, nil)
	if err := s.StartNearCache(t.Context(), nearTest, &nearCounts{}, func(string, error) {}); err == nil {
		t.Fatal("a Cluster client started the near cache")
	}
}

// TestNearCacheRefusedTracking runs the near cache as a user whose ACL
// forbids CLIENT TRACKING: every read goes to Redis, and the refusal is
// logged once, not on every retry.
func TestNearCacheRefusedTracking(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--user", "app", "on", ">app-pw", "~*", "&*", "+@all", "-client|tracking")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "app", Password: "app-pw"})
	t.Cleanup(func() { _ = rdb.Close() })
	s := store.New(rdb, "near:", time.Second, nil)
	var logged atomic.Int64
	var lastErr atomic.Value
	err := s.StartNearCache(t.Context(), nearTest, &nearCounts{}, func(_ string, err error) {
		logged.Add(1)
		lastErr.Store(fmt.Sprint(err))
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Set(ctx, "k", "v", 0); err != nil {
		t.Fatal(err)
	}
	// Long enough for the retries at 0.5 s, 1 s and 2 s.
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		got, err := s.Get(ctx, "k")
		if err != nil || got.Value != "v" || got.Near {
			t.Fatalf("read with tracking refused: %+v, %v; want v from Redis", got, err)
		}
	}
	if n := logged.Load(); n != 1 {
		t.Errorf("the refusal was logged %d times in 4 s, want once", n)
	}
	if e, _ := lastErr.Load().(string); !strings.Contains(e, "NOPERM") {
		t.Errorf("the log does not carry Redis's refusal: %q", e)
	}
}
