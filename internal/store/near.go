package store

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// NearConfig is the near cache's settings: strings kept in the process's
// memory, so that a hot key's GET costs no Redis round trip.
type NearConfig struct {
	// NearSize bounds the entries; 0 turns the near cache off. It is on
	// by default: on one Redis server a process reads its own writes
	// through it, another process stops serving a changed value within
	// milliseconds, no entry outlives NearTTL or its key, and hot keys
	// are served without a Redis round trip (bench/results.md has the
	// rates with and without it). Where it cannot keep those promises (a
	// Cluster, Sentinel, a Redis that refuses CLIENT TRACKING) it stays
	// off and the log says why.
	NearSize int `env:"NEAR_CACHE_SIZE" envDefault:"10000" valid:"0..10000000"`
	// NearMaxBytes bounds the memory the entries' keys and values take.
	NearMaxBytes int `env:"NEAR_CACHE_MAX_BYTES" envDefault:"16777216" valid:"1024..1073741824"`
	// NearTTL bounds how long an entry is served without Redis telling
	// that it changed: the worst staleness if an invalidation is lost.
	NearTTL time.Duration `env:"NEAR_CACHE_TTL" envDefault:"5s" valid:"positive"`
}

// NearRecorder is told what the near cache does, for the metrics.
type NearRecorder interface {
	NearHit()
	NearMiss()
	NearEviction()
	NearInvalidation()
	// NearTracking is told whether Redis's tracking is up: the cache
	// serves nothing while it is down.
	NearTracking(up bool)
}

// nearStripes is how many generation counters the keys share. A write bumps
// its key's stripe; an entry read before the bump is never served after
// it. Keys that share a stripe only cost each other a miss.
const nearStripes = 4096

// near is the near cache. It fills itself only through tracked
// connections (CLIENT TRACKING in Redis's default mode, redirected to a
// pub/sub connection), so Redis tells it of a change to exactly the keys
// it read, and every write made through this process invalidates its key
// before it is answered, so a client reads its own writes. A write to a
// key no instance has read costs Redis nothing more; a key read by n
// instances costs, on its next write, one invalidation to each of them
// (then none until they read it again).
type near struct {
	t        *tracking
	cache    *otter.Cache[string, *nearEntry]
	gens     [nearStripes]atomic.Uint64
	epoch    atomic.Uint64 // bumped to drop every entry at once
	ready    atomic.Bool   // tracking is on; until then nothing is kept or served
	seed     maphash.Seed
	maxStale time.Duration
	maxValue int
	report   NearRecorder
}

type nearEntry struct {
	value string
	// tag is the value's entity tag, computed once for every hit.
	tag        string
	keyExpires time.Time // zero when the key has no TTL
	until      time.Time // served until then at most
	gen, epoch uint64
}

// stamp is where the near cache stood when a read of Redis began.
type stamp struct {
	gen, epoch uint64
	at         time.Time
}

// nearConns is how many tracked connections fill the near cache, taken
// from the store's pool and held while tracking is up: at most 4, and at
// most a quarter of the pool, so that requests keep the rest. Reads that
// find them all busy go to Redis through the pool and are not kept: only
// a key's first reads need one. A pool of fewer than 4 leaves none, and
// the near cache off.
func nearConns(poolSize int) int { return min(4, poolSize/4) }

// newNear makes the near cache over rdb, whose connections (conns of
// them) fill it.
func newNear(cfg NearConfig, rdb *redis.Client, conns int, report NearRecorder) (*near, error) {
	n := &near{seed: maphash.MakeSeed(), maxStale: cfg.NearTTL, report: report}
	// The tracked connections come from rdb, so their reads are traced
	// and measured like any other. rdb's options are Tune's: without
	// maintenance notifications, which an EphemeralConn would otherwise
	// negotiate again on the options it shares with rdb.
	n.t = newTracking(rdb.Options(), conns, rdb.EphemeralConn, func() {
		// go-redis reconnects a pub/sub connection by itself: stop
		// serving at once, and let the loop set tracking up again.
		n.ready.Store(false)
		n.flush()
	})
	// Each entry weighs at least an equal share of the byte bound, so the
	// bound on bytes also bounds the entries to NearSize.
	// The config bounds NearMaxBytes to 1 GiB, so the weights fit.
	share := max(uint32(cfg.NearMaxBytes/cfg.NearSize), 1) //nolint:gosec // at most 1 GiB.
	n.maxValue = cfg.NearMaxBytes / 16
	c, err := otter.New(&otter.Options[string, *nearEntry]{
		MaximumWeight: uint64(cfg.NearMaxBytes), //nolint:gosec // positive, at most 1 GiB.
		Weigher: func(k string, e *nearEntry) uint32 {
			return max(uint32(len(k)+len(e.value)+len(e.tag)+64), share) //nolint:gosec // bounded by maxValue.
		},
		OnDeletion: func(e otter.DeletionEvent[string, *nearEntry]) {
			if e.Cause == otter.CauseOverflow {
				report.NearEviction()
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("near cache: %w", err)
	}
	n.cache = c
	return n, nil
}

func (n *near) stripe(key string) *atomic.Uint64 {
	return &n.gens[maphash.String(n.seed, key)%nearStripes]
}

// begin notes where the cache stands before a read of key goes to Redis.
func (n *near) begin(key string) stamp {
	return stamp{gen: n.stripe(key).Load(), epoch: n.epoch.Load(), at: time.Now()}
}

// get returns key's entry when it may still be served.
func (n *near) get(key string) (*nearEntry, bool) {
	if !n.ready.Load() {
		return nil, false
	}
	e, ok := n.cache.GetIfPresent(key)
	if ok && (e.gen != n.stripe(key).Load() || e.epoch != n.epoch.Load() || !time.Now().Before(e.until)) {
		n.cache.Invalidate(key)
		ok = false
	}
	if ok {
		n.report.NearHit()
	} else {
		n.report.NearMiss()
	}
	return e, ok
}

// read reads key and its PTTL through a tracked connection, so that Redis
// tells of the key's next change, and keeps what it found. ok is false
// when no tracked connection was free or tracking is down: the caller
// reads without the near cache.
func (n *near) read(ctx context.Context, key string, timeout time.Duration) (value string, pttl time.Duration, ok bool, err error) {
	st := n.begin(key)
	// The read is not canceled with its request: a connection canceled in
	// mid-read is closed, and that ends the tracking session.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	err = n.t.tryDo(func(conn *redis.Conn) error {
		value, pttl, err = getWithTTL(ctx, conn, key)
		return err
	})
	switch {
	case errors.Is(err, errTrackingBusy) || errors.Is(err, errTrackingDown):
		return "", 0, false, nil
	case err != nil:
		return "", 0, true, err
	}
	n.put(key, value, pttl, st)
	return value, pttl, true, nil
}

// put keeps what a read that began at st found: value, with pttl left.
// The key's expiry is taken from when the read began, so the entry never
// outlives the key.
func (n *near) put(key, value string, pttl time.Duration, st stamp) {
	if !n.ready.Load() || len(value) > n.maxValue || st.gen != n.stripe(key).Load() || st.epoch != n.epoch.Load() {
		return
	}
	e := &nearEntry{value: value, tag: Tag(value), until: st.at.Add(n.maxStale), gen: st.gen, epoch: st.epoch}
	if pttl > 0 {
		e.keyExpires = st.at.Add(pttl)
		if e.keyExpires.Before(e.until) {
			e.until = e.keyExpires
		}
	}
	n.cache.Set(key, e)
}

// invalidate makes key's entry, and any read of it under way, unusable.
func (n *near) invalidate(key string) {
	n.stripe(key).Add(1)
	n.cache.Invalidate(key)
	n.report.NearInvalidation()
}

// flush drops every entry, and what every read under way would keep.
func (n *near) flush() {
	n.epoch.Add(1)
	n.cache.InvalidateAll()
}

// ttl is the entry's remaining TTL, as the store reports it.
func (e *nearEntry) ttl(now time.Time) time.Duration {
	if e.keyExpires.IsZero() {
		return NoExpiry
	}
	return max(e.keyExpires.Sub(now), time.Millisecond)
}

// track keeps Redis's tracking of the near cache's reads on until ctx
// ends. Whenever a tracking connection is lost, the cache is
// emptied and serves nothing until tracking is back. The log says when
// tracking goes (at warn, once until it has held again) and when it comes
// back (at info); NearTracking follows it.
func (n *near) track(ctx context.Context, log *zap.Logger) {
	defer n.t.close()

	n.report.NearTracking(false)
	// A Redis that keeps refusing (an ACL without CLIENT or SUBSCRIBE, a
	// server older than 6) is asked again less and less often, and said
	// once until tracking has held again.
	wait, said, lost := nearRetryMin, false, false
	h := trackingHandler{
		up: func() {
			n.flush()
			n.ready.Store(true)
			n.report.NearTracking(true)
			if lost {
				log.Info("near cache: tracking is back; the cache serves again")
			}
		},
		changed: func(keys []string) {
			if keys == nil {
				n.flush()
			}
			for _, k := range keys {
				n.invalidate(k)
			}
		},
	}
	for ctx.Err() == nil {
		held, err := n.t.session(ctx, nil, h)
		n.ready.Store(false)
		n.flush()
		n.report.NearTracking(false)
		if ctx.Err() != nil {
			return
		}
		if held {
			wait, said = nearRetryMin, false
		}
		if !said {
			log.Warn("near cache: tracking lost or refused; the cache is emptied and off until it is back", zap.Error(err))
			said, lost = true, true
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, nearRetryMax)
	}
}

// The near cache and the key watches ask Redis to track again after
// nearRetryMin, doubling the wait on each failure up to nearRetryMax.
const (
	nearRetryMin = 500 * time.Millisecond
	nearRetryMax = 30 * time.Second
)

type bypassNear struct{}

// WithoutNearCache makes the reads under ctx go to Redis, as a request with
// Cache-Control: no-cache asks.
func WithoutNearCache(ctx context.Context) context.Context {
	return context.WithValue(ctx, bypassNear{}, true)
}
