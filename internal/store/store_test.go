package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/config"
	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/store"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// lookups records what the store reports as hits and misses.
type lookups struct {
	store.Nop
	mu   sync.Mutex
	seen []string
}

func (l *lookups) Lookup(op string, hit bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := "miss"
	if hit {
		r = "hit"
	}
	l.seen = append(l.seen, op+":"+r)
}

func (l *lookups) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.seen, ",")
}

// eachTopology runs test once per Redis topology (single, Cluster,
// Sentinel), as a subtest named after it.
func eachTopology(t *testing.T, test func(*testing.T, redistest.Topology)) {
	t.Helper()
	t.Parallel()
	for _, tp := range redistest.Topologies(t) {
		t.Run(tp.Name, func(t *testing.T) { test(t, tp) })
	}
}

// openStore opens a store over rdb with the service's defaults but for
// the key prefix, the timeout and the near cache (off), then what mods
// change.
func openStore(t testing.TB, rdb redis.UniversalClient, prefix string, timeout time.Duration, tel store.Telemetry, mods ...func(*store.Config)) *store.Store {
	t.Helper()
	mods = append([]func(*store.Config){func(c *store.Config) { c.Timeout = timeout }}, mods...)
	return openStoreLog(t, rdb, prefix, nil, tel, mods...)
}

// openStoreLog is openStore with a timeout of a second and a logger.
func openStoreLog(t testing.TB, rdb redis.UniversalClient, prefix string, log *zap.Logger, tel store.Telemetry, mods ...func(*store.Config)) *store.Store {
	t.Helper()
	cfg := config.Default().Store
	cfg.KeyPrefix, cfg.Timeout, cfg.Near.NearSize = prefix, time.Second, 0
	for _, m := range mods {
		m(&cfg)
	}
	return store.Open(t.Context(), rdb, cfg, tel, log)
}

func newStore(t *testing.T, tp redistest.Topology) (*store.Store, redis.UniversalClient, string, *lookups) {
	t.Helper()
	rdb, prefix := redistest.ClientOf(t, tp)
	l := &lookups{}
	return openStore(t, rdb, prefix, time.Second, l), rdb, prefix, l
}

// fields reads a whole hash a page at a time.
func fields(t *testing.T, s *store.Store, key string) (map[string]string, error) {
	t.Helper()
	all := map[string]string{}
	var cursor uint64
	for {
		page, err := s.HScan(context.Background(), key, cursor, 100, 1<<20)
		if err != nil {
			return nil, err
		}
		for f, v := range page.Fields {
			all[f] = v
		}
		if cursor = page.Next; cursor == 0 {
			return all, nil
		}
	}
}

func TestStringLifecycle(t *testing.T) { eachTopology(t, testStringLifecycle) }

//nolint:thelper // a test body, run once per topology.
func testStringLifecycle(t *testing.T, tp redistest.Topology) {
	t.Parallel()
	s, rdb, prefix, l := newStore(t, tp)
	ctx := context.Background()

	if _, err := s.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get missing: got %v, want ErrNotFound", err)
	}
	if err := s.Set(ctx, "k", "v1", "", 0); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "k")
	if err != nil || got.Value != "v1" || got.TTL != store.NoExpiry {
		t.Fatalf("Get: got %+v, %v; want v1 without expiry", got, err)
	}
	// The key lives under the prefix, and only there.
	if v := rdb.Get(ctx, prefix+"k").Val(); v != "v1" {
		t.Fatalf("raw GET %sk = %q, want v1", prefix, v)
	}
	if n := rdb.Exists(ctx, "k").Val(); n != 0 {
		t.Fatalf("unprefixed key exists")
	}

	if err := s.Set(ctx, "k", "v2", "", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Get(ctx, "k")
	if got.Value != "v2" || got.TTL <= 89*time.Second || got.TTL > 90*time.Second {
		t.Fatalf("Get after Set with TTL: got %+v", got)
	}
	d, err := s.Persist(ctx, "k", store.TypeString)
	if err != nil || d != store.NoExpiry {
		t.Fatalf("Persist: got %v, %v", d, err)
	}
	d, err = s.Expire(ctx, "k", store.TypeString, 30*time.Second)
	if err != nil || d <= 29*time.Second || d > 30*time.Second {
		t.Fatalf("Expire: got %v, %v", d, err)
	}
	d, err = s.TTL(ctx, "k", store.TypeString)
	if err != nil || d <= 29*time.Second {
		t.Fatalf("TTL: got %v, %v", d, err)
	}
	if err := s.Delete(ctx, "k", store.TypeString); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "k", store.TypeString); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Delete: got %v, want ErrNotFound", err)
	}
	if _, err := s.TTL(ctx, "k", store.TypeString); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TTL of missing: got %v", err)
	}
	if got, want := l.all(), "get:miss,get:hit,get:hit,ttl:hit,ttl:miss"; got != want {
		t.Fatalf("lookups: got %s, want %s", got, want)
	}
}

func TestExpiryHappens(t *testing.T) { eachTopology(t, testExpiryHappens) }

//nolint:thelper // a test body, run once per topology.
func testExpiryHappens(t *testing.T, tp redistest.Topology) {
	t.Parallel()
	s, _, _, _ := newStore(t, tp)
	ctx := context.Background()
	if err := s.Set(ctx, "short", "v", "", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	if _, err := s.Get(ctx, "short"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after expiry: got %v, want ErrNotFound", err)
	}
}

func TestIncr(t *testing.T) { eachTopology(t, testIncr) }

//nolint:thelper // a test body, run once per topology.
func testIncr(t *testing.T, tp redistest.Topology) {
	t.Parallel()
	s, _, _, _ := newStore(t, tp)
	ctx := context.Background()
	tests := []struct {
		name    string
		setup   string
		by      int64
		want    int64
		wantErr error
	}{
		{name: "missing starts at zero", by: 5, want: 5},
		{name: "existing integer", setup: "10", by: -3, want: 7},
		{name: "not an integer", setup: "ten", by: 1, wantErr: store.ErrNotInteger},
		{name: "overflow", setup: "9223372036854775807", by: 1, wantErr: store.ErrNotInteger},
	}
	for i, tc := range tests {
		key := "n" + string(rune('a'+i))
		if tc.setup != "" {
			if err := s.Set(ctx, key, tc.setup, "", 0); err != nil {
				t.Fatal(err)
			}
		}
		got, _, err := s.Incr(ctx, key, tc.by, store.Once{})
		if !errors.Is(err, tc.wantErr) || got != tc.want {
			t.Errorf("%s: got %d, %v; want %d, %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestHashLifecycle(t *testing.T) { eachTopology(t, testHashLifecycle) }

//nolint:thelper // a test body, run once per topology.
func testHashLifecycle(t *testing.T, tp redistest.Topology) {
	t.Parallel()
	s, _, _, l := newStore(t, tp)
	ctx := context.Background()

	ttl, err := s.HSet(ctx, "h", map[string]string{"a": "1", "b": "2"}, time.Minute)
	if err != nil || ttl <= 59*time.Second {
		t.Fatalf("HSet: got %v, %v", ttl, err)
	}
	// A second write merges and keeps the TTL when none is given.
	ttl, err = s.HSet(ctx, "h", map[string]string{"c": "3"}, 0)
	if err != nil || ttl <= 58*time.Second {
		t.Fatalf("HSet merge: got %v, %v", ttl, err)
	}
	if page, err := s.HScan(ctx, "h", 0, 100, 1<<20); err != nil || len(page.Fields) != 3 || page.Next != 0 || page.TTL <= 58*time.Second {
		t.Fatalf("HScan after merge: got %+v, %v", page, err)
	}
	if v, err := s.HGet(ctx, "h", "c"); err != nil || v != "3" {
		t.Fatalf("HGet: got %q, %v", v, err)
	}
	if _, err := s.HGet(ctx, "h", "zz"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("HGet missing field: got %v", err)
	}
	if err := s.HSetField(ctx, "h", "a", "one"); err != nil {
		t.Fatal(err)
	}
	if n, _, err := s.HIncr(ctx, "h", "b", 40, store.Once{}); err != nil || n != 42 {
		t.Fatalf("HIncr: got %d, %v", n, err)
	}
	if _, _, err := s.HIncr(ctx, "h", "a", 1, store.Once{}); !errors.Is(err, store.ErrNotInteger) {
		t.Fatalf("HIncr on text: got %v", err)
	}
	if err := s.HDelField(ctx, "h", "c"); err != nil {
		t.Fatal(err)
	}
	if err := s.HDelField(ctx, "h", "c"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("HDelField twice: got %v", err)
	}
	h, err := fields(t, s, "h")
	if err != nil || len(h) != 2 || h["a"] != "one" || h["b"] != "42" {
		t.Fatalf("HScan: got %+v, %v", h, err)
	}
	if err := s.Delete(ctx, "h", store.TypeHash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HScan(ctx, "h", 0, 10, 1<<20); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("HScan after delete: got %v", err)
	}
	if got, want := l.all(), "hgetall:hit,hget:hit,hget:miss,hgetall:hit,hgetall:miss"; got != want {
		t.Fatalf("lookups: got %s, want %s", got, want)
	}
}

// TestWrongTypeChangesNothing checks both directions: a string route on a
// hash and a hash route on a string answer ErrWrongType and leave the key
// exactly as it was, TTL included.
func TestWrongTypeChangesNothing(t *testing.T) { eachTopology(t, testWrongTypeChangesNothing) }

//nolint:thelper // a test body, run once per topology.
func testWrongTypeChangesNothing(t *testing.T, tp redistest.Topology) {
	t.Parallel()
	s, rdb, prefix, _ := newStore(t, tp)
	ctx := context.Background()
	if err := s.Set(ctx, "str", "v", "", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HSet(ctx, "hash", map[string]string{"f": "v"}, 0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		op   func() error
	}{
		{"Set on hash", func() error { return s.Set(ctx, "hash", "x", "", time.Second) }},
		{"Get on hash", func() error { _, err := s.Get(ctx, "hash"); return err }},
		{"Delete on hash", func() error { return s.Delete(ctx, "hash", store.TypeString) }},
		{"TTL on hash", func() error { _, err := s.TTL(ctx, "hash", store.TypeString); return err }},
		{"Expire on hash", func() error { _, err := s.Expire(ctx, "hash", store.TypeString, time.Second); return err }},
		{"Persist on hash", func() error { _, err := s.Persist(ctx, "hash", store.TypeString); return err }},
		{"Incr on hash", func() error { _, _, err := s.Incr(ctx, "hash", 1, store.Once{}); return err }},
		{"Incr once on hash", func() error { _, _, err := s.Incr(ctx, "hash", 1, store.Once{Key: "k1"}); return err }},
		{"HSet on string", func() error {
			_, err := s.HSet(ctx, "str", map[string]string{"f": "v"}, time.Second)
			return err
		}},
		{"HScan on string", func() error { _, err := s.HScan(ctx, "str", 0, 10, 1024); return err }},
		{"HGet on string", func() error { _, err := s.HGet(ctx, "str", "f"); return err }},
		{"HSetField on string", func() error { return s.HSetField(ctx, "str", "f", "v") }},
		{"HDelField on string", func() error { return s.HDelField(ctx, "str", "f") }},
		{"HIncr on string", func() error { _, _, err := s.HIncr(ctx, "str", "f", 1, store.Once{}); return err }},
		{"HDelete on string", func() error { return s.Delete(ctx, "str", store.TypeHash) }},
	}
	for _, tc := range tests {
		if err := tc.op(); !errors.Is(err, store.ErrWrongType) {
			t.Errorf("%s: got %v, want ErrWrongType", tc.name, err)
		}
	}
	if v := rdb.Get(ctx, prefix+"str").Val(); v != "v" {
		t.Errorf("string changed to %q", v)
	}
	if d := rdb.TTL(ctx, prefix+"str").Val(); d < 59*time.Minute {
		t.Errorf("string TTL changed to %v", d)
	}
	if f := rdb.HGetAll(ctx, prefix+"hash").Val(); len(f) != 1 || f["f"] != "v" {
		t.Errorf("hash changed to %v", f)
	}
	if d := rdb.TTL(ctx, prefix+"hash").Val(); d != -1 {
		t.Errorf("hash TTL changed to %v", d)
	}
}

// TestRedisFailures checks the sentinels for a Redis that stalls, is gone,
// or is full.
func TestRedisFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("stalled", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		rdb := redis.NewUniversalClient(store.Tune(&redis.UniversalOptions{Addrs: []string{srv.Addr}}, 200*time.Millisecond))
		t.Cleanup(func() { _ = rdb.Close() })
		s := openStore(t, rdb, "p:", 200*time.Millisecond, nil)
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		if err := srv.Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Resume() })
		start := time.Now()
		_, err := s.Get(ctx, "k")
		if !errors.Is(err, store.ErrTimeout) {
			t.Fatalf("Get on a stalled Redis: got %v, want ErrTimeout", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("Get took %v, want about the 200ms timeout", took)
		}
	})

	t.Run("gone", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		rdb := redis.NewUniversalClient(store.Tune(&redis.UniversalOptions{Addrs: []string{srv.Addr}}, 200*time.Millisecond))
		t.Cleanup(func() { _ = rdb.Close() })
		s := openStore(t, rdb, "p:", 200*time.Millisecond, nil)
		srv.Kill()
		if err := s.Set(ctx, "k", "v", "", 0); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Set on a dead Redis: got %v, want ErrUnavailable", err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, "k", "v", "", 0); err != nil {
			t.Fatalf("Set after restart: %v", err)
		}
	})

	t.Run("full", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t, "--maxmemory", "1", "--maxmemory-policy", "noeviction")
		rdb := redis.NewUniversalClient(store.Tune(&redis.UniversalOptions{Addrs: []string{srv.Addr}}, time.Second))
		t.Cleanup(func() { _ = rdb.Close() })
		s := openStore(t, rdb, "p:", time.Second, nil)
		if err := s.Set(ctx, "k", "v", "", 0); !errors.Is(err, store.ErrInsufficientStorage) {
			t.Fatalf("Set on a full Redis: got %v, want ErrInsufficientStorage", err)
		}
		if _, err := s.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get on a full Redis: got %v, want ErrNotFound (reads keep working)", err)
		}
	})
}

// TestHSetUnderContention has many writers merge fields into one hash at
// once: each write is one atomic script, so every one succeeds and is
// kept (a client's write never fails because of another's).
func TestHSetUnderContention(t *testing.T) { eachTopology(t, testHSetUnderContention) }

//nolint:thelper // a test body, run once per topology.
func testHSetUnderContention(t *testing.T, tp redistest.Topology) {
	t.Parallel()
	s, _, _, _ := newStore(t, tp)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := map[string]bool{}
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				f := strings.Repeat("x", w) + "-" + string(rune('a'+i))
				if _, err := s.HSet(ctx, "hot", map[string]string{f: "v"}, time.Minute); err != nil {
					t.Errorf("HSet under contention: %v", err)
					continue
				}
				mu.Lock()
				written[f] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	h, err := fields(t, s, "hot")
	if err != nil {
		t.Fatal(err)
	}
	for f := range written {
		if h[f] != "v" {
			t.Errorf("acknowledged field %q is missing", f)
		}
	}
	if len(written) != 160 {
		t.Errorf("%d of 160 writes succeeded; with a 1s deadline all should", len(written))
	}
}

// TestKeysSpreadOverShards checks that on a Cluster the store's keys land
// on every primary: nothing in the key scheme pins them to one slot.
func TestKeysSpreadOverShards(t *testing.T) {
	t.Parallel()
	tp := redistest.PackageCluster(t).Topology()
	s, rdb, prefix, _ := newStore(t, tp)
	ctx := context.Background()
	for i := range 60 {
		if err := s.Set(ctx, fmt.Sprintf("spread%d", i), "", "v", 0); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	perNode := map[string]int{}
	err := rdb.(*redis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, prefix+"*").Result()
		mu.Lock()
		perNode[c.Options().Addr] = len(keys)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(perNode) != 3 {
		t.Fatalf("want 3 primaries, got %v", perNode)
	}
	for node, n := range perNode {
		if n == 0 {
			t.Errorf("no key on primary %s: %v", node, perNode)
		}
	}
}

// TestPingFollowsTheTopology checks the readiness probe's view on each
// topology: ready while every primary answers.
func TestPingFollowsTheTopology(t *testing.T) { eachTopology(t, testPingFollowsTheTopology) }

//nolint:thelper // a test body, run once per topology.
func testPingFollowsTheTopology(t *testing.T, tp redistest.Topology) {
	t.Parallel()
	s, _, _, _ := newStore(t, tp)
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("%s: %v", tp.Name, err)
	}
}

// TestWaitForReplicas checks WithWait on every topology and every write:
// with as many replicas as there are, writes succeed; asking for more than
// there are, each write is applied but answered ErrNotDurable.
func TestWaitForReplicas(t *testing.T) { eachTopology(t, testWaitForReplicas) }

//nolint:thelper // a test body, run once per topology.
func testWaitForReplicas(t *testing.T, tp redistest.Topology) {
	t.Parallel()
	have := map[string]int{"single": 0, "cluster": 1, "sentinel": 2}[tp.Name]
	rdb, prefix := redistest.ClientOf(t, tp)
	ctx := context.Background()
	writes := []struct {
		name string
		do   func(s *store.Store) error
	}{
		{"set", func(s *store.Store) error { return s.Set(ctx, "s", "v", "", 0) }},
		{"incr", func(s *store.Store) error { _, _, err := s.Incr(ctx, "n", 1, store.Once{}); return err }},
		{"incr once", func(s *store.Store) error {
			_, _, err := s.Incr(ctx, "n", 1, store.Once{Key: fmt.Sprint(time.Now().UnixNano())})
			return err
		}},
		{"push", func(s *store.Store) error {
			_, _, _, err := s.Push(ctx, "l", store.Tail, []string{"a", "b"}, 0, store.Once{})
			return err
		}},
		{"pop", func(s *store.Store) error {
			_, _, _, err := s.Pop(ctx, "l", store.Head, 1, 1024, store.Once{})
			return err
		}},
		{"expire", func(s *store.Store) error { _, err := s.Expire(ctx, "s", store.TypeString, time.Hour); return err }},
		{"persist", func(s *store.Store) error { _, err := s.Persist(ctx, "s", store.TypeString); return err }},
		{"hset", func(s *store.Store) error { _, err := s.HSet(ctx, "h", map[string]string{"a": "1"}, 0); return err }},
		{"hset field", func(s *store.Store) error { return s.HSetField(ctx, "h", "b", "2") }},
		{"hincr", func(s *store.Store) error { _, _, err := s.HIncr(ctx, "h", "c", 1, store.Once{}); return err }},
		{"hdel field", func(s *store.Store) error { return s.HDelField(ctx, "h", "b") }},
		{"delete", func(s *store.Store) error { return s.Delete(ctx, "s", store.TypeString) }},
		{"hdelete", func(s *store.Store) error { return s.Delete(ctx, "h", store.TypeHash) }},
		{"transaction", func(s *store.Store) error {
			_, _, err := s.Tx(ctx, []store.TxOp{{Op: store.TxIncr, Key: "{t}:a", By: 1}, {Op: store.TxSet, Key: "{t}:b", Value: "v"}}, store.Once{})
			return err
		}},
		{"transaction once", func(s *store.Store) error {
			_, _, err := s.Tx(ctx, []store.TxOp{{Op: store.TxIncr, Key: "{t}:a", By: 1}}, store.Once{Key: fmt.Sprint(time.Now().UnixNano())})
			return err
		}},
	}
	wait := func(n int, d time.Duration) func(*store.Config) {
		return func(c *store.Config) { c.WaitReplicas, c.WaitTimeout = n, d }
	}
	enough := openStore(t, rdb, prefix, time.Second, nil, wait(max(have, 1), 200*time.Millisecond))
	tooMany := openStore(t, rdb, prefix+"x:", time.Second, nil, wait(have+1, 50*time.Millisecond))
	for _, w := range writes {
		err := w.do(enough)
		if have == 0 && !errors.Is(err, store.ErrNotDurable) {
			t.Errorf("%s with no replica: got %v, want ErrNotDurable", w.name, err)
		}
		if have > 0 && err != nil {
			t.Errorf("%s waiting for %d replica(s): %v", w.name, have, err)
		}
		if err := w.do(tooMany); !errors.Is(err, store.ErrNotDurable) {
			t.Errorf("%s waiting for %d replicas of %d: got %v, want ErrNotDurable", w.name, have+1, have, err)
		}
	}
	// A write answered ErrNotDurable is applied all the same.
	if err := tooMany.Set(ctx, "applied", "yes", "", 0); !errors.Is(err, store.ErrNotDurable) {
		t.Fatalf("got %v", err)
	}
	if got, err := rdb.Get(ctx, prefix+"x:applied").Result(); err != nil || got != "yes" {
		t.Errorf("the write was not applied: %q %v", got, err)
	}
}

func TestAnyType(t *testing.T) { eachTopology(t, testAnyType) }

// testAnyType checks the operations every key has, whatever it holds: a
// hash and a list get a TTL, lose it and are deleted through AnyType, and
// Info tells each key's type.
//
//nolint:thelper // a test body, run once per topology.
func testAnyType(t *testing.T, tp redistest.Topology) {
	t.Parallel()
	s, rdb, prefix, l := newStore(t, tp)
	ctx := context.Background()
	if _, err := s.HSet(ctx, "h", map[string]string{"f": "v"}, 0); err != nil {
		t.Fatal(err)
	}
	rdb.RPush(ctx, prefix+"l", "a")
	if err := s.Set(ctx, "s", "v", "", time.Minute); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"h": "hash", "l": "list", "s": "string"} {
		info, err := s.Info(ctx, key)
		if err != nil || info.Type != want {
			t.Fatalf("Info(%s): %+v, %v; want type %s", key, info, err, want)
		}
	}
	if _, err := s.Info(ctx, "none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Info of a missing key: %v, want ErrNotFound", err)
	}
	for _, key := range []string{"h", "l"} {
		if d, err := s.Expire(ctx, key, store.AnyType, 30*time.Second); err != nil || d <= 29*time.Second {
			t.Fatalf("Expire(%s): %v, %v", key, d, err)
		}
		if d, err := s.TTL(ctx, key, store.AnyType); err != nil || d <= 29*time.Second {
			t.Fatalf("TTL(%s): %v, %v", key, d, err)
		}
		if d, err := s.Persist(ctx, key, store.AnyType); err != nil || d != store.NoExpiry {
			t.Fatalf("Persist(%s): %v, %v", key, d, err)
		}
		if err := s.Delete(ctx, key, store.AnyType); err != nil {
			t.Fatalf("Delete(%s): %v", key, err)
		}
		if n := rdb.Exists(ctx, prefix+key).Val(); n != 0 {
			t.Fatalf("%s still exists after Delete", key)
		}
	}
	if _, err := s.TTL(ctx, "l", store.TypeString); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TTL of the deleted list: %v, want ErrNotFound", err)
	}
	if got, want := l.all(), "type:hit,type:hit,type:hit,type:miss,ttl:hit,ttl:hit,ttl:miss"; got != want {
		t.Fatalf("lookups: got %s, want %s", got, want)
	}
}

func TestList(t *testing.T) { eachTopology(t, testList) }

// testList walks a list through its life: pushed at both ends with a TTL
// set in the same step, paged, popped, trimmed and emptied, which removes
// the key; and a list operation on another type changes nothing.
//
//nolint:thelper // a test body, run once per topology.
func testList(t *testing.T, tp redistest.Topology) {
	t.Parallel()
	s, rdb, prefix, l := newStore(t, tp)
	ctx := context.Background()

	if _, err := s.Range(ctx, "l", 0, 10, 1024); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Range of a missing list: %v, want ErrNotFound", err)
	}
	n, ttl, _, err := s.Push(ctx, "l", store.Tail, []string{"b", "c"}, time.Minute, store.Once{})
	if err != nil || n != 2 || ttl <= 59*time.Second {
		t.Fatalf("Push: %d, %v, %v; want 2 with a minute's TTL", n, ttl, err)
	}
	if n, _, _, err = s.Push(ctx, "l", store.Head, []string{"a", "z"}, 0, store.Once{}); err != nil || n != 4 {
		t.Fatalf("Push at the head: %d, %v", n, err)
	}
	page, err := s.Range(ctx, "l", 1, 2, 1024)
	if err != nil || strings.Join(page.Values, ",") != "a,b" || page.Length != 4 || page.TTL <= 58*time.Second {
		t.Fatalf("Range(1, 2): %+v, %v; want a,b of 4, TTL kept", page, err)
	}
	if page, err = s.Range(ctx, "l", 10, 5, 1024); err != nil || len(page.Values) != 0 || page.Length != 4 {
		t.Fatalf("Range past the end: %+v, %v; want an empty page of 4", page, err)
	}
	if _, _, _, err := s.Push(ctx, "l", store.Tail, []string{"a", "b", "a"}, 0, store.Once{}); err != nil {
		t.Fatal(err)
	}
	if removed, left, err := s.Remove(ctx, "l", "a", 0); err != nil || removed != 3 || left != 4 {
		t.Fatalf("Remove a: %d removed, %d left, %v; want 3 and 4", removed, left, err)
	}
	if left, err := s.Trim(ctx, "l", 0, 2); err != nil || left != 3 {
		t.Fatalf("Trim(0, 2): %d, %v; want 3", left, err)
	}
	vals, left, _, err := s.Pop(ctx, "l", store.Tail, 2, 1024, store.Once{})
	if err != nil || strings.Join(vals, ",") != "c,b" || left != 1 {
		t.Fatalf("Pop 2 from the tail: %v, %d, %v; want c,b and 1 left", vals, left, err)
	}
	if n, err := s.Len(ctx, "l"); err != nil || n != 1 {
		t.Fatalf("Len: %d, %v", n, err)
	}
	if vals, left, _, err = s.Pop(ctx, "l", store.Head, 5, 1024, store.Once{}); err != nil || strings.Join(vals, ",") != "z" || left != 0 {
		t.Fatalf("Pop the rest: %v, %d, %v", vals, left, err)
	}
	if rdb.Exists(ctx, prefix+"l").Val() != 0 {
		t.Fatal("the emptied list's key still exists")
	}
	if _, _, _, err := s.Pop(ctx, "l", store.Head, 1, 1024, store.Once{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Pop of a missing list: %v, want ErrNotFound", err)
	}
	if _, err := s.Len(ctx, "l"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Len of a missing list: %v, want ErrNotFound", err)
	}

	// Another type: refused, untouched, and no TTL set on it.
	if err := s.Set(ctx, "s", "v", "", 0); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.Push(ctx, "s", store.Tail, []string{"x"}, time.Minute, store.Once{}); !errors.Is(err, store.ErrWrongType) {
		t.Fatalf("Push on a string: %v, want ErrWrongType", err)
	}
	if _, err := s.Range(ctx, "s", 0, 1, 1024); !errors.Is(err, store.ErrWrongType) {
		t.Fatalf("Range on a string: %v, want ErrWrongType", err)
	}
	if v := rdb.Get(ctx, prefix+"s").Val(); v != "v" || rdb.TTL(ctx, prefix+"s").Val() != -1 {
		t.Fatal("a refused push changed the string or its TTL")
	}
	if got, want := l.all(), "lrange:miss,lrange:hit,lrange:hit,llen:hit,llen:miss"; got != want {
		t.Fatalf("lookups: got %s, want %s", got, want)
	}
}

func TestKeys(t *testing.T) { eachTopology(t, testKeys) }

// testKeys lists keys page by page until the cursor ends: every key under
// the user's prefix once (on a Cluster, from every primary), none outside
// it, glob characters matched literally, and the type filter applied.
//
//nolint:thelper // a test body, run once per topology.
func testKeys(t *testing.T, tp redistest.Topology) {
	t.Parallel()
	s, rdb, _, _ := newStore(t, tp)
	ctx := context.Background()
	want := map[string]bool{}
	for i := range 60 {
		k := fmt.Sprintf("user:%d", i)
		if err := s.Set(ctx, k, "v", "", 0); err != nil {
			t.Fatal(err)
		}
		want[k] = true
	}
	if _, err := s.HSet(ctx, "user:h", map[string]string{"f": "v"}, 0); err != nil {
		t.Fatal(err)
	}
	want["user:h"] = true
	for _, k := range []string{"other:1", "user*x", "user?"} {
		if err := s.Set(ctx, k, "v", "", 0); err != nil {
			t.Fatal(err)
		}
	}
	rdb.Set(ctx, "user:outside-the-prefix", "v", time.Minute)
	t.Cleanup(func() { rdb.Del(context.Background(), "user:outside-the-prefix") })

	list := func(userPrefix, typ string) map[string]int {
		t.Helper()
		seen := map[string]int{}
		var cur store.Cursor
		for pages := 0; ; pages++ {
			keys, next, err := s.Keys(ctx, userPrefix, typ, cur, 7)
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) > 7+10 {
				t.Fatalf("a page of %d keys for a limit of 7", len(keys))
			}
			for _, k := range keys {
				seen[k]++
			}
			if next == nil {
				return seen
			}
			// Other tests' keys share this Redis: a page may hold none of
			// ours, so allow many pages; only an endless cursor fails.
			if pages > 20000 {
				t.Fatal("the cursor never ends")
			}
			cur = *next
		}
	}
	got := list("user:", "")
	for k := range want {
		if got[k] != 1 {
			t.Errorf("key %s listed %d times, want once", k, got[k])
		}
	}
	if len(got) != len(want) {
		t.Errorf("listed %d keys, want %d: %v", len(got), len(want), got)
	}
	if got := list("user*", ""); len(got) != 1 || got["user*x"] != 1 {
		t.Errorf("prefix user* matched %v, want only user*x (glob characters are literal)", got)
	}
	if got := list("user:", "hash"); len(got) != 1 || got["user:h"] != 1 {
		t.Errorf("type hash listed %v, want only user:h", got)
	}
}
