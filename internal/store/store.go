// Package store keeps DubeBox's strings, hashes and lists in Redis. It owns
// the key prefix, the per-call timeout, the bounds on what one call may
// write or read, durability (WAIT), failover detection, the near cache and
// the translation of Redis replies into the sentinel errors of errors.go.
//
// Most operations touch one key, and the few that touch two (a write and
// its idempotency record) keep both in one Cluster slot, so the store runs
// unchanged on a single Redis, a Redis Cluster or behind Sentinel. The
// batch read touches many keys through a pipeline, which go-redis splits
// per node.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// NoExpiry is the TTL reported for a key that never expires, as Redis's own
// TTL command reports it.
const NoExpiry = -1 * time.Second

// The read operations named to Telemetry.Lookup.
const (
	OpGet     = "get"
	OpTTL     = "ttl"
	OpHGetAll = "hgetall"
	OpHGet    = "hget"
	OpType    = "type"
	OpLRange  = "lrange"
	OpLLen    = "llen"
)

// ReadOps are every operation the store names to Telemetry.Lookup, so that
// the metrics can make their series before the first read. (OpHGetAll is
// the paged hash read, which uses HSCAN: the label stays the dashboards'.)
var ReadOps = []string{OpGet, OpTTL, OpHGetAll, OpHGet, OpType, OpLRange, OpLLen}

// The Redis types an operation on a key may require. An operation given a
// type leaves a key of another type alone and returns ErrWrongType; AnyType
// accepts whatever the key holds.
const (
	AnyType    = "*"
	TypeString = "string"
	TypeHash   = "hash"
	TypeList   = "list"
)

// Telemetry is what the store reports as it works: the metrics implement
// it (observability.Metrics), tests may count for themselves. Nop reports
// nothing.
type Telemetry interface {
	// Lookup is told the outcome of every read: a hit or a miss.
	Lookup(operation string, hit bool)
	NearRecorder
	// PrimaryChanged is told, once per change, that the primary of a
	// Cluster shard or behind Sentinel is another node than before.
	PrimaryChanged()
	// Redirected is told of a Cluster's MOVED or ASK ("moved", "ask")
	// that the store followed itself (go-redis reports its own).
	Redirected(kind string)
	// NearEnabled is told, once, that the near cache is on: its tracking
	// (NearTracking) is then worth watching.
	NearEnabled()
}

// Nop is a Telemetry that reports nothing.
type Nop struct{}

// Lookup implements Telemetry.
func (Nop) Lookup(string, bool) {}

// NearHit implements Telemetry.
func (Nop) NearHit() {}

// NearMiss implements Telemetry.
func (Nop) NearMiss() {}

// NearEviction implements Telemetry.
func (Nop) NearEviction() {}

// NearInvalidation implements Telemetry.
func (Nop) NearInvalidation() {}

// NearTracking implements Telemetry.
func (Nop) NearTracking(bool) {}

// PrimaryChanged implements Telemetry.
func (Nop) PrimaryChanged() {}

// Redirected implements Telemetry.
func (Nop) Redirected(string) {}

// NearEnabled implements Telemetry.
func (Nop) NearEnabled() {}

// Store is the Redis-backed key-value store. It is safe for concurrent use.
type Store struct {
	rdb    redis.UniversalClient
	cfg    Config
	tel    Telemetry
	log    *zap.Logger
	prefix string
	// failover reloads a Cluster's slot map after node trouble and reports
	// a new primary; nil elsewhere.
	failover *failoverWatch
	// near is the near cache, nil while it is off.
	near *near
	// watches serve the key watches, nil on a Cluster; watchStart starts
	// their tracking session, with the first watcher.
	watches    *watchHub
	watchStart func()
	// channels are the pub/sub subscriptions, shared by channel.
	channels *channelHub
	// life is Open's context: what the store runs in the background
	// ends with it.
	life context.Context
	// ready is the last readiness check (see Ready).
	readyMu  sync.Mutex
	readyAt  time.Time
	readyErr error
}

// Open returns the store over rdb as cfg says: keys under cfg.KeyPrefix,
// each call bounded by cfg.Timeout, writes waiting for cfg.WaitReplicas,
// failovers followed and reported, and the near cache on where cfg and the
// topology allow it (one Redis server), kept right until ctx ends. rdb is
// the client cfg.Options made, with whatever hooks the caller added. tel
// and log may be nil.
func Open(ctx context.Context, rdb redis.UniversalClient, cfg Config, tel Telemetry, log *zap.Logger) *Store {
	if tel == nil {
		tel = Nop{}
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Store{rdb: rdb, cfg: cfg, tel: tel, log: log, prefix: cfg.KeyPrefix, life: ctx}
	s.failover = watchFailovers(rdb, tel, log.Named("redis"))
	s.openNear(ctx)
	s.openWatches(ctx)
	s.channels = newChannelHub(s)
	return s
}

// openNear turns the near cache on when cfg and the topology allow it, and
// says in the log why it is off otherwise.
func (s *Store) openNear(ctx context.Context) {
	ncfg := s.cfg.Near
	c, single := s.rdb.(*redis.Client)
	switch {
	case ncfg.NearSize == 0:
		s.log.Info("near cache off: NEAR_CACHE_SIZE is 0")
		return
	case !single || isFailoverClient(c):
		// Info, not a warning: the near cache is on by default, and this
		// is what it does on these topologies, not a fault.
		s.log.Info("near cache off: it needs one Redis server (REDIS_ADDR); on a Cluster or behind Sentinel its invalidations would have to follow every node and every failover",
			zap.String("topology", s.cfg.Topology()))
		return
	}
	conns := nearConns(c.Options().PoolSize)
	if conns == 0 {
		s.log.Warn("near cache off: REDIS_POOL_SIZE leaves it no connection (it takes a quarter of the pool, up to 4, for its tracked reads)",
			zap.Int("pool_size", c.Options().PoolSize))
		return
	}
	n, err := newNear(ncfg, c, conns, s.tel)
	if err != nil {
		s.log.Warn("near cache off", zap.Error(err))
		return
	}
	s.near = n
	s.tel.NearEnabled()
	go n.track(ctx, s.log.Named("near_cache"))
	s.log.Info("near cache on", zap.Int("entries", ncfg.NearSize), zap.Int("bytes", ncfg.NearMaxBytes),
		zap.Stringer("max_staleness", ncfg.NearTTL))
}

// NearCacheOn says whether the near cache is on (though it serves nothing
// while Redis's tracking is down).
func (s *Store) NearCacheOn() bool { return s.near != nil }

func (s *Store) key(k string) string { return s.prefix + k }

func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

func (s *Store) lookup(op string, err error) {
	switch {
	case err == nil:
		s.tel.Lookup(op, true)
	case errors.Is(err, ErrNotFound):
		s.tel.Lookup(op, false)
	}
}

// Ping checks that Redis can serve every key, for the readiness probe: the
// primary answers (through Sentinel, the current one); on a Cluster, the
// cluster's state is ok and every primary answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return wrap("ping", s.rdb.Ping(ctx).Err())
	}
	info, err := cc.ClusterInfo(ctx).Result()
	if err != nil {
		return wrap("ping", err)
	}
	if !strings.Contains(info, "cluster_state:ok") {
		return fmt.Errorf("ping: the cluster's state is not ok: %w", ErrUnavailable)
	}
	return wrap("ping", cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		return c.Ping(ctx).Err()
	}))
}

// readyFor is how long a readiness check's outcome is reused: probes,
// scrapes of dubebox_ready and anyone calling /readyz share one check a
// second, so that calling them often cannot load Redis.
const readyFor = time.Second

// Ready is Ping, reused for readyFor: the readiness probe's and the
// dubebox_ready gauge's check. Concurrent callers wait for one check.
func (s *Store) Ready(ctx context.Context) error {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	if time.Since(s.readyAt) < readyFor {
		return s.readyErr
	}
	s.readyErr = s.Ping(ctx)
	s.readyAt = time.Now()
	return s.readyErr
}

// remaining turns PTTL's reply into the store's convention: NoExpiry for a key
// without one, else the remaining time.
func remaining(d time.Duration) time.Duration {
	if d < 0 {
		return NoExpiry
	}
	return d
}

// millis is a PTTL reply in milliseconds, as a script returns it, in the
// store's convention.
func millis(v any) time.Duration {
	n, _ := v.(int64)
	return remaining(time.Duration(n) * time.Millisecond)
}

// scriptReply runs a script's reply through the codes every script of the
// store shares: a first element of -2 means the key is missing, -3 that it
// holds another type, -5 that the write would take it past its bound on
// items. Anything else is the script's own reply.
func scriptReply(op string, cmd *redis.Cmd, err error) ([]any, error) {
	if err != nil {
		return nil, wrap(op, err)
	}
	reply, err := cmd.Slice()
	if err != nil || len(reply) == 0 {
		return nil, wrap(op, fmt.Errorf("unexpected reply %v: %w", cmd.Val(), errors.Join(err, errInternal)))
	}
	switch reply[0] {
	case int64(-2):
		return nil, wrap(op, redis.Nil)
	case int64(-3):
		return nil, ErrWrongType
	case int64(-5):
		return nil, ErrTooManyItems
	}
	return reply, nil
}
