package store_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/store"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// nearCounts records what the near cache did.
type nearCounts struct {
	store.Nop
	hits, misses, evictions, invalidations atomic.Int64
	tracking                               atomic.Bool
}

func (n *nearCounts) NearHit()             { n.hits.Add(1) }
func (n *nearCounts) NearMiss()            { n.misses.Add(1) }
func (n *nearCounts) NearEviction()        { n.evictions.Add(1) }
func (n *nearCounts) NearInvalidation()    { n.invalidations.Add(1) }
func (n *nearCounts) NearTracking(up bool) { n.tracking.Store(up) }

var nearTest = store.NearConfig{NearSize: 10000, NearMaxBytes: 16 << 20, NearTTL: 5 * time.Second}

// openNear opens a store over rdb with the near cache on, and what it logs.
func openNear(t *testing.T, rdb redis.UniversalClient, counts store.Telemetry) (*store.Store, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	s := openStoreLog(t, rdb, "near:", zap.New(core), counts, func(c *store.Config) { c.Near = nearTest })
	return s, logs
}

// nearStore is a store with the near cache on over its own Redis server
// (tracking is per server, and the tests kill its connections).
func nearStore(t *testing.T, addr string) (*store.Store, *nearCounts) {
	t.Helper()
	s, counts, _ := nearStoreLogs(t, addr)
	return s, counts
}

// nearStoreLogs is nearStore with what the store logs.
func nearStoreLogs(t *testing.T, addr string) (*store.Store, *nearCounts, *observer.ObservedLogs) {
	t.Helper()
	rdb := nearClient(t, addr, "", "")
	counts := &nearCounts{}
	s, logs := openNear(t, rdb, counts)
	waitNearReady(t, s)
	return s, counts, logs
}

// nearClient is a client of addr made as the service makes its own, through
// store.Tune, which the near cache's tracked connections rely on.
func nearClient(t *testing.T, addr, user, password string) redis.UniversalClient {
	t.Helper()
	rdb := redis.NewUniversalClient(store.Tune(&redis.UniversalOptions{Addrs: []string{addr}, Username: user, Password: password}, time.Second))
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// waitNearReady reads a key until the near cache answers it.
func waitNearReady(t *testing.T, s *store.Store) {
	t.Helper()
	ctx := context.Background()
	if err := s.Set(ctx, "ready-probe", "v", "", 0); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got, err := s.Get(ctx, "ready-probe"); err == nil && got.Near {
			return
		}
	}
	t.Fatal("the near cache never started answering")
}

// cached writes key and reads it until the near cache answers it.
func cached(t *testing.T, s *store.Store, key, value string) {
	t.Helper()
	ctx := context.Background()
	if err := s.Set(ctx, key, value, "", 0); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if got, err := s.Get(ctx, key); err == nil && got.Near {
			return
		}
	}
	t.Fatalf("%s: the near cache never answered it", key)
}

// waitValue reads key until it is want, for at most within: a value
// written elsewhere must stop being served from memory by then.
func waitValue(t *testing.T, s *store.Store, key, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, err := s.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if got.Value == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %q %v after %q was written elsewhere", key, got.Value, within, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
				if err := s.Set(ctx, key, want, "", 0); err != nil {
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
		if err := s.Set(ctx, "shared", "old", "", 0); err != nil {
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
	if err := s.Set(ctx, "short", "v", "", 1500*time.Millisecond); err != nil {
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
	cached(t, s, "k", "old")
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

// TestNearCacheEmptiesWhenATrackedConnectionIsLost kills the connections
// the near cache read through, not the subscriber: Redis then forgets the
// keys they read and will not announce their next change, so the cache
// must stop serving them well before NEAR_CACHE_TTL (5 s here) would.
func TestNearCacheEmptiesWhenATrackedConnectionIsLost(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, _ := nearStore(t, srv.Addr)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = admin.Close() })
	ctx := context.Background()
	cached(t, s, "k", "old")
	clients, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for line := range strings.Lines(clients) {
		id, flags := "", ""
		for field := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(field, "id="); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(field, "flags="); ok {
				flags = v
			}
		}
		if strings.Contains(flags, "t") {
			if err := admin.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatal(err)
			}
			killed++
		}
	}
	if killed == 0 {
		t.Fatalf("no tracked connection in CLIENT LIST:\n%s", clients)
	}
	if err := admin.Set(ctx, "near:k", "new", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitValue(t, s, "k", "new", 3*time.Second)
	waitNearReady(t, s)
}

// TestNearCacheBypass checks that a read under WithoutNearCache goes to Redis.
func TestNearCacheBypass(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, _ := nearStore(t, srv.Addr)
	ctx := context.Background()
	cached(t, s, "k", "v")
	if got, err := s.Get(store.WithoutNearCache(ctx), "k"); err != nil || got.Near {
		t.Fatalf("WithoutNearCache: %+v, %v; want an answer from Redis", got, err)
	}
}

// TestNearCacheOnlyOnOneServer checks that on a Cluster, and behind
// Sentinel, the store leaves the near cache off and says why at info.
func TestNearCacheOnlyOnOneServer(t *testing.T) {
	t.Parallel()
	for _, rdb := range []redis.UniversalClient{
		redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}),
		redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"}}),
	} {
		t.Cleanup(func() { _ = rdb.Close() })
		s, logs := openNear(t, rdb, &nearCounts{})
		if s.NearCacheOn() {
			t.Errorf("%T: the near cache is on", rdb)
		}
		if n := logs.FilterMessageSnippet("near cache off: it needs one Redis server").FilterLevelExact(zap.InfoLevel).Len(); n != 1 {
			t.Errorf("%T: %d info lines saying why the near cache is off, want 1: %v", rdb, n, logs.All())
		}
	}
}

// TestNearCacheLeavesThePoolToRequests opens the near cache over small
// pools: its tracked connections come from the pool, so it takes at most a
// quarter of it (none of a pool of 3: it stays off and says why), and
// requests still get connections while it tracks.
func TestNearCacheLeavesThePoolToRequests(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	small := func(size int) redis.UniversalClient {
		rdb := redis.NewUniversalClient(store.Tune(&redis.UniversalOptions{Addrs: []string{srv.Addr}, PoolSize: size}, time.Second))
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	s, logs := openNear(t, small(3), &nearCounts{})
	if s.NearCacheOn() {
		t.Error("a pool of 3: the near cache is on")
	}
	if n := logs.FilterMessageSnippet("near cache off: REDIS_POOL_SIZE").FilterLevelExact(zap.WarnLevel).Len(); n != 1 {
		t.Errorf("%d warnings saying why the near cache is off, want 1: %v", n, logs.All())
	}
	s, _ = openNear(t, small(4), &nearCounts{})
	waitNearReady(t, s)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for c := range 8 {
		wg.Go(func() {
			key := fmt.Sprintf("pool-%d", c)
			for i := range 200 {
				if err := s.Set(ctx, key, strconv.Itoa(i), "", 0); err != nil {
					errs <- err
					return
				}
				if got, err := s.Get(ctx, key); err != nil || got.Value != strconv.Itoa(i) {
					errs <- fmt.Errorf("read %q, %w after writing %d", got.Value, err, i)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for c := range 8 {
		key := fmt.Sprintf("pool-%d", c)
		if _, err := s.Get(ctx, key); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(ctx, key); err != nil || !got.Near {
			t.Errorf("a pool of 4: the second read of %s: %+v, %v; want it from the near cache", key, got, err)
		}
	}
}

// TestNearCacheFlush empties Redis with FLUSHDB and FLUSHALL while a key
// is cached: the entry is dropped as by any write, tracking stays up
// (nothing is logged as lost, the gauge stays at 1), and the cache serves
// again at once.
func TestNearCacheFlush(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, counts, logs := nearStoreLogs(t, srv.Addr)
	ctx := context.Background()
	for _, flush := range []string{"flushdb", "flushall"} {
		if err := s.Set(ctx, "k", "before", "", 0); err != nil {
			t.Fatal(err)
		}
		for got, _ := s.Get(ctx, "k"); !got.Near; got, _ = s.Get(ctx, "k") {
		}
		raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
		if err := raw.Do(ctx, flush).Err(); err != nil {
			t.Fatal(err)
		}
		_ = raw.Close()
		deadline := time.Now().Add(time.Second)
		for {
			if _, err := s.Get(ctx, "k"); errors.Is(err, store.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the near cache still answers the flushed key after 1 s", flush)
			}
			time.Sleep(time.Millisecond)
		}
		if !counts.tracking.Load() {
			t.Errorf("%s: the tracking gauge went to 0", flush)
		}
		waitNearReady(t, s)
	}
	if lost := logs.FilterMessageSnippet("tracking lost").Len(); lost != 0 {
		t.Errorf("a flush was logged as a lost tracking connection: %v", logs.All())
	}
}

// TestNearCacheTrackingComesBack kills the tracking connections: the gauge
// goes to 0 and one warn line says so; once tracking holds again, the
// gauge is 1, one info line says it is back, and the cache serves again.
func TestNearCacheTrackingComesBack(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, counts, logs := nearStoreLogs(t, srv.Addr)
	if !counts.tracking.Load() {
		t.Fatal("tracking is up but the gauge says 0")
	}
	ctx := context.Background()
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = raw.Close() })
	if err := raw.Do(ctx, "client", "kill", "type", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessageSnippet("tracking is back").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no line saying tracking is back within 5 s: %v", logs.All())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := logs.FilterMessageSnippet("tracking lost").FilterLevelExact(zap.WarnLevel).Len(); n != 1 {
		t.Errorf("%d warn lines for the lost tracking, want 1", n)
	}
	if n := logs.FilterMessageSnippet("tracking is back").FilterLevelExact(zap.InfoLevel).Len(); n != 1 {
		t.Errorf("%d info lines for tracking back, want 1", n)
	}
	if !counts.tracking.Load() {
		t.Error("tracking is back but the gauge says 0")
	}
	waitNearReady(t, s)
}

// TestNearCacheRefusedTracking runs the near cache as a user whose ACL
// forbids CLIENT TRACKING: every read goes to Redis, and the refusal is
// logged once, not on every retry.
func TestNearCacheRefusedTracking(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--user", "app", "on", ">app-pw", "~*", "&*", "+@all", "-client|tracking")
	rdb := nearClient(t, srv.Addr, "app", "app-pw")
	counts := &nearCounts{}
	s, logs := openNear(t, rdb, counts)
	ctx := context.Background()
	if err := s.Set(ctx, "k", "v", "", 0); err != nil {
		t.Fatal(err)
	}
	// Long enough for the retries at 0.5 s, 1 s and 2 s.
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		got, err := s.Get(ctx, "k")
		if err != nil || got.Value != "v" || got.Near {
			t.Fatalf("read with tracking refused: %+v, %v; want v from Redis", got, err)
		}
	}
	refused := logs.FilterMessageSnippet("tracking lost or refused").All()
	if len(refused) != 1 {
		t.Fatalf("the refusal was logged %d times in 4 s, want once", len(refused))
	}
	if e := fmt.Sprint(refused[0].ContextMap()["error"]); !strings.Contains(e, "NOPERM") {
		t.Errorf("the log does not carry Redis's refusal: %q", e)
	}
	if counts.tracking.Load() {
		t.Error("tracking is refused but the gauge says 1")
	}
}

// TestNearCacheHearsOnlyOfWhatItRead writes many keys the near cache never
// read, then one it did: Redis tells it of that one alone (in broadcast
// mode it would hear of every write under the prefix), and the cache
// stops serving the old value.
func TestNearCacheHearsOnlyOfWhatItRead(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, counts := nearStore(t, srv.Addr)
	ctx := context.Background()
	if err := s.Set(ctx, "read", "old", "", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "read"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "read"); err != nil || !got.Near {
		t.Fatalf("second read: %+v, %v; want it from the near cache", got, err)
	}
	other := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = other.Close() })
	before := counts.invalidations.Load()
	for i := range 200 {
		if err := other.Set(ctx, fmt.Sprintf("near:unread-%d", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Set(ctx, "near:read", "new", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitValue(t, s, "read", "new", 2*time.Second)
	if n := counts.invalidations.Load() - before; n != 1 {
		t.Errorf("the near cache heard of %d changes; want 1: the one key it read", n)
	}
}
