// Package store keeps DubeBox's strings and hashes in Redis. It owns the key
// prefix, the per-call timeout and the translation of Redis replies into the
// sentinel errors of errors.go. Every operation touches exactly one key, so
// the store runs unchanged on Redis Cluster or behind Sentinel.
package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// NoExpiry is the TTL reported for a key that never expires, as Redis's own
// TTL command reports it.
const NoExpiry = -1 * time.Second

// LookupRecorder is told the outcome of every read, so that a hit ratio can
// be drawn. The observability package implements it with a Prometheus
// counter; tests may pass their own.
type LookupRecorder interface {
	Lookup(operation string, hit bool)
}

// The read operations named to a LookupRecorder.
const (
	OpGet     = "get"
	OpTTL     = "ttl"
	OpHGetAll = "hgetall"
	OpHGet    = "hget"
	OpType    = "type"
)

// ReadOps are every operation the store names to a LookupRecorder, so that
// the metrics can make their series before the first read.
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

// Store is the Redis-backed key-value store. It is safe for concurrent use.
type Store struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	lookups LookupRecorder
	wait    waitFor
	// onFailover is told when a Cluster shard's primary changes.
	onFailover func(old, new string)
	// near is the near cache, nil while it is off (see StartNearCache).
	near *near
}

// waitFor is how many replicas must acknowledge a write, and for how long
// the store waits for them (Redis's WAIT).
type waitFor struct {
	replicas int
	timeout  time.Duration
}

// Option changes how a Store works.
type Option func(*Store)

// WithFailoverReport makes a Store on a Cluster call report, once per
// change, when a shard's primary is another node than before. (Behind
// Sentinel the client's own dials tell it: see observability.RedisHook.)
func WithFailoverReport(report func(old, new string)) Option {
	return func(s *Store) { s.onFailover = report }
}

// WithWait makes every write wait, before it is answered, until replicas
// replicas acknowledged it (Redis WAIT), for at most timeout. When fewer do,
// the write is applied on the primary but the call returns ErrNotDurable.
func WithWait(replicas int, timeout time.Duration) Option {
	return func(s *Store) { s.wait = waitFor{replicas: replicas, timeout: timeout} }
}

// New returns a Store that keeps every key under prefix and bounds every
// call by timeout. lookups may be nil. On a Cluster client it also makes
// the client follow a failover at once (see followFailovers).
func New(rdb redis.UniversalClient, prefix string, timeout time.Duration, lookups LookupRecorder, opts ...Option) *Store {
	s := &Store{rdb: rdb, prefix: prefix, timeout: timeout, lookups: lookups}
	for _, o := range opts {
		o(s)
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		followFailovers(cc, s.onFailover)
	}
	return s
}

// String is a string value with its remaining time to live (NoExpiry when it
// has none).
type String struct {
	Value string
	TTL   time.Duration
	// Near is true when the near cache answered, without Redis.
	Near bool
}

// Hash is a hash's fields with its remaining time to live.
type Hash struct {
	Fields map[string]string
	TTL    time.Duration
}

func (s *Store) key(k string) string { return s.prefix + k }

func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

func (s *Store) lookup(op string, err error) {
	if s.lookups == nil {
		return
	}
	switch {
	case err == nil:
		s.lookups.Lookup(op, true)
	case errors.Is(err, ErrNotFound):
		s.lookups.Lookup(op, false)
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

// Get returns a string and its TTL in one round trip (a pipeline of GET and
// PTTL).
func (s *Store) Get(ctx context.Context, key string) (String, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	var st stamp
	if s.near != nil && ctx.Value(bypassNear{}) == nil {
		if e, ok := s.near.get(k); ok {
			s.lookup(OpGet, nil)
			return String{Value: e.value, TTL: e.ttl(time.Now()), Near: true}, nil
		}
		st = s.near.begin(k)
	}
	var get *redis.StringCmd
	var pttl *redis.DurationCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, k)
		pttl = p.PTTL(ctx, k)
		return nil
	})
	if err == nil || errors.Is(err, redis.Nil) {
		err = get.Err()
	}
	if err != nil {
		err = wrap("get", err)
		s.lookup(OpGet, err)
		return String{}, err
	}
	s.lookup(OpGet, nil)
	if s.near != nil && !st.at.IsZero() {
		s.near.put(k, get.Val(), pttl.Val(), st)
	}
	return String{Value: get.Val(), TTL: remaining(pttl.Val())}, nil
}

// Set stores a string, replacing any string at key and its TTL. A zero ttl
// means no expiry. A key that holds a hash is left alone and ErrWrongType
// returned: SET's GET option makes Redis itself refuse, in the same command.
func (s *Store) Set(ctx context.Context, key, value string, ttl time.Duration) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	err := s.write(ctx, k, func(c redis.Cmdable) redis.Cmder {
		return c.SetArgs(ctx, k, value, redis.SetArgs{TTL: ttl, Get: true})
	})
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return wrap("set", err)
}

// Incr adds by to the integer at key (created as 0 when missing) and returns
// the result.
func (s *Store) Incr(ctx context.Context, key string, by int64) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	var cmd *redis.IntCmd
	err := s.write(ctx, k, func(c redis.Cmdable) redis.Cmder {
		cmd = c.IncrBy(ctx, k, by)
		return cmd
	})
	return cmd.Val(), wrap("incr", err)
}

// Delete removes the key when it holds typ.
func (s *Store) Delete(ctx context.Context, key, typ string) error {
	_, err := s.typed(ctx, key, typ, "del", 0)
	return err
}

// TTL returns the remaining time to live of the key when it holds typ.
func (s *Store) TTL(ctx context.Context, key, typ string) (time.Duration, error) {
	d, err := s.typed(ctx, key, typ, "pttl", 0)
	s.lookup(OpTTL, err)
	return d, err
}

// Expire sets the time to live of the key when it holds typ, and returns it.
func (s *Store) Expire(ctx context.Context, key, typ string, ttl time.Duration) (time.Duration, error) {
	return s.typed(ctx, key, typ, "pexpire", ttl)
}

// Persist removes the time to live of the key when it holds typ.
func (s *Store) Persist(ctx context.Context, key, typ string) (time.Duration, error) {
	return s.typed(ctx, key, typ, "persist", 0)
}

// Info is what every key has, whatever its type.
type Info struct {
	Type string // Redis's name: string, hash, list, set, zset, stream
	TTL  time.Duration
}

// Info returns the key's type and TTL in one round trip.
func (s *Store) Info(ctx context.Context, key string) (Info, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	var typ *redis.StatusCmd
	var pttl *redis.DurationCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		typ = p.Type(ctx, k)
		pttl = p.PTTL(ctx, k)
		return nil
	})
	if err == nil && typ.Val() == "none" {
		err = redis.Nil
	}
	err = wrap("type", err)
	s.lookup(OpType, err)
	if err != nil {
		return Info{}, err
	}
	return Info{Type: typ.Val(), TTL: remaining(pttl.Val())}, nil
}

// typedScript runs one key operation only when the key holds the expected
// type (or any, for "*"), in one atomic round trip: -2 means missing, -3
// another type, else it returns the key's PTTL after the operation (or
// DEL's count).
var typedScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return -2 end
if ARGV[1] ~= '*' and t ~= ARGV[1] then return -3 end
local op = ARGV[2]
if op == 'del' then return redis.call('DEL', KEYS[1]) end
if op == 'pexpire' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if op == 'persist' then redis.call('PERSIST', KEYS[1]) end
return redis.call('PTTL', KEYS[1])
`)

func (s *Store) typed(ctx context.Context, key, typ, op string, ttl time.Duration) (time.Duration, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	args := []any{typ, op, ttl.Milliseconds()}
	var cmd *redis.Cmd
	var err error
	if op == "pttl" {
		// A read: nothing to wait for.
		cmd = typedScript.Run(ctx, s.rdb, []string{k}, args...)
		err = cmd.Err()
	} else {
		cmd, err = s.writeScript(ctx, typedScript, k, args...)
	}
	var n int64
	if err == nil {
		n, err = cmd.Int64()
	}
	switch {
	case err != nil:
		return 0, wrap(op, err)
	case n == -2:
		return 0, wrap(op, redis.Nil)
	case n == -3:
		return 0, ErrWrongType
	}
	return remaining(time.Duration(n) * time.Millisecond), nil
}

// writeScript runs a script that writes key, through write.
func (s *Store) writeScript(ctx context.Context, script *redis.Script, key string, args ...any) (*redis.Cmd, error) {
	var cmd *redis.Cmd
	err := s.write(ctx, key, func(c redis.Cmdable) redis.Cmder {
		if s.wait.replicas > 0 {
			// In a pipeline with WAIT, EVALSHA cannot fall back to EVAL on
			// NOSCRIPT: send the script itself.
			cmd = script.Eval(ctx, c, []string{key}, args...)
		} else {
			cmd = script.Run(ctx, c, []string{key}, args...)
		}
		return cmd
	})
	return cmd, err
}

// write runs one write command on key. When the store waits for replicas
// it sends WAIT right after it, in one pipeline on one connection to the
// key's primary: WAIT counts the replicas that have every write of its own
// connection, so it must share the write's. The write's own error wins;
// redis.Nil is returned as it is, for callers that expect it.
func (s *Store) write(ctx context.Context, key string, cmd func(redis.Cmdable) redis.Cmder) error {
	if s.near != nil {
		// Whatever the outcome (a timed-out write may still apply), the
		// key's near-cache entry is unusable before the write is answered.
		defer s.near.invalidate(key)
	}
	if s.wait.replicas == 0 {
		return cmd(s.rdb).Err()
	}
	node, err := s.primaryFor(ctx, key)
	if err != nil {
		return err
	}
	var w redis.Cmder
	var wait *redis.Cmd
	_, _ = node.Pipelined(ctx, func(p redis.Pipeliner) error {
		w = cmd(p)
		wait = p.Do(ctx, "wait", s.wait.replicas, s.wait.timeout.Milliseconds())
		return nil
	})
	if err := w.Err(); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if err := s.waited(wait.Int64()); err != nil {
		return err
	}
	return w.Err()
}

// waited turns WAIT's reply into ErrNotDurable when fewer replicas than
// asked acknowledged the write in time.
func (s *Store) waited(n int64, err error) error {
	switch {
	case err != nil:
		return err
	case n < int64(s.wait.replicas):
		return fmt.Errorf("%d of %d replicas acknowledged the write within %v: %w", n, s.wait.replicas, s.wait.timeout, ErrNotDurable)
	}
	return nil
}

// primaryFor is a client of one connection pool that reaches key's
// primary: on a Cluster, the primary of the key's slot.
func (s *Store) primaryFor(ctx context.Context, key string) (*redis.Client, error) {
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, key)
	case *redis.Client:
		return c, nil
	}
	return nil, fmt.Errorf("REDIS_WAIT_REPLICAS: a %T cannot wait for replicas", s.rdb)
}

// remaining turns PTTL's reply into the store's convention: NoExpiry for a key
// without one, else the remaining time.
func remaining(d time.Duration) time.Duration {
	if d < 0 {
		return NoExpiry
	}
	return d
}

// HSet writes fields into the hash at key and, when ttl is positive, sets
// its expiry, in one MULTI/EXEC; it returns every field after the write. The
// key is WATCHed and its type checked first, so a string is never touched.
func (s *Store) HSet(ctx context.Context, key string, fields map[string]string, ttl time.Duration) (Hash, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	args := make([]any, 0, 2*len(fields))
	for f, v := range fields {
		args = append(args, f, v)
	}
	var all *redis.MapStringStringCmd
	var pttl *redis.DurationCmd
	write := func(tx *redis.Tx) error {
		typ, err := tx.Type(ctx, k).Result()
		if err != nil {
			return err
		}
		if typ != "none" && typ != "hash" {
			return ErrWrongType
		}
		cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, k, args...)
			if ttl > 0 {
				p.PExpire(ctx, k, ttl)
			}
			all = p.HGetAll(ctx, k)
			pttl = p.PTTL(ctx, k)
			return nil
		})
		if err := queuedError(cmds, err); err != nil {
			return err
		}
		if s.wait.replicas == 0 {
			return nil
		}
		// The transaction holds one connection: WAIT on it covers the write.
		return s.waited(tx.Wait(ctx, s.wait.replicas, s.wait.timeout).Result())
	}
	// Another writer of the same key makes EXEC fail; retry until the
	// per-call deadline. Writers that collided would collide again if they
	// all retried at once, so each waits a random, growing moment first.
	if s.near != nil {
		defer s.near.invalidate(k)
	}
	var err error
	for attempt := 1; ; attempt++ {
		err = s.rdb.Watch(ctx, write, k)
		if !errors.Is(err, redis.TxFailedErr) || ctx.Err() != nil {
			break
		}
		time.Sleep(rand.N(time.Duration(min(attempt, 10)) * 200 * time.Microsecond)) //nolint:gosec // jitter, not a secret.
	}
	switch {
	case errors.Is(err, ErrWrongType), errors.Is(err, ErrNotDurable):
		return Hash{}, err
	case errors.Is(err, redis.TxFailedErr):
		return Hash{}, fmt.Errorf("hset: other writers kept changing the key until the deadline: %w", ErrUnavailable)
	case err != nil:
		return Hash{}, wrap("hset", err)
	}
	return Hash{Fields: all.Val(), TTL: remaining(pttl.Val())}, nil
}

// queuedError returns the reply error of the first command Redis refused to
// queue in a MULTI, when EXEC was aborted for it: EXECABORT only says that
// one was refused, and the command's own error says why (OOM on a full
// Redis, which is then answered 507 like every other write).
func queuedError(cmds []redis.Cmder, err error) error {
	var rerr redis.Error
	if err == nil || !errors.As(err, &rerr) || !strings.HasPrefix(rerr.Error(), "EXECABORT") {
		return err
	}
	for _, c := range cmds {
		if cerr := c.Err(); errors.As(cerr, &rerr) {
			return cerr
		}
	}
	return err
}

// HGetAll returns every field of the hash at key and its TTL in one round
// trip.
func (s *Store) HGetAll(ctx context.Context, key string) (Hash, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	var all *redis.MapStringStringCmd
	var pttl *redis.DurationCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		all = p.HGetAll(ctx, k)
		pttl = p.PTTL(ctx, k)
		return nil
	})
	if err == nil && len(all.Val()) == 0 {
		// HGETALL answers an empty map for a missing key.
		err = redis.Nil
	}
	if err != nil {
		err = wrap("hgetall", err)
		s.lookup(OpHGetAll, err)
		return Hash{}, err
	}
	s.lookup(OpHGetAll, nil)
	return Hash{Fields: all.Val(), TTL: remaining(pttl.Val())}, nil
}

// HGet returns one field of the hash at key.
func (s *Store) HGet(ctx context.Context, key, field string) (string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	v, err := s.rdb.HGet(ctx, s.key(key), field).Result()
	err = wrap("hget", err)
	s.lookup(OpHGet, err)
	return v, err
}

// HSetField writes one field of the hash at key, keeping its TTL.
func (s *Store) HSetField(ctx context.Context, key, field, value string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	return wrap("hset", s.write(ctx, k, func(c redis.Cmdable) redis.Cmder { return c.HSet(ctx, k, field, value) }))
}

// HDelField removes one field of the hash at key; ErrNotFound when the field
// (or the key) does not exist.
func (s *Store) HDelField(ctx context.Context, key, field string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	var cmd *redis.IntCmd
	err := s.write(ctx, k, func(c redis.Cmdable) redis.Cmder {
		cmd = c.HDel(ctx, k, field)
		return cmd
	})
	if err == nil && cmd.Val() == 0 {
		err = redis.Nil
	}
	return wrap("hdel", err)
}

// HIncr adds by to the integer in a hash field (created as 0 when missing)
// and returns the result.
func (s *Store) HIncr(ctx context.Context, key, field string, by int64) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	var cmd *redis.IntCmd
	err := s.write(ctx, k, func(c redis.Cmdable) redis.Cmder {
		cmd = c.HIncrBy(ctx, k, field, by)
		return cmd
	})
	return cmd.Val(), wrap("hincrby", err)
}

// Found is one key's answer in a batch read: the string, or why there is
// none (ErrNotFound, ErrWrongType).
type Found struct {
	String
	Err error
}

// GetMany reads many strings with their TTLs in one pipeline. On a Cluster
// go-redis sends each node the commands for its slots, in parallel, so keys
// of different slots never meet in one command (no CROSSSLOT). A key that
// is missing or holds another type is reported in its Found; only a failure
// of Redis itself fails the whole read.
func (s *Store) GetMany(ctx context.Context, keys []string) ([]Found, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	gets := make([]*redis.StringCmd, len(keys))
	pttls := make([]*redis.DurationCmd, len(keys))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, key := range keys {
			gets[i] = p.Get(ctx, s.key(key))
			pttls[i] = p.PTTL(ctx, s.key(key))
		}
		return nil
	})
	out := make([]Found, len(keys))
	for i := range keys {
		err := wrap("get", gets[i].Err())
		switch {
		case err == nil:
			out[i] = Found{String: String{Value: gets[i].Val(), TTL: remaining(pttls[i].Val())}}
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrWrongType):
			out[i] = Found{Err: err}
		default:
			return nil, err
		}
		s.lookup(OpGet, out[i].Err)
	}
	if err != nil && !errors.Is(err, redis.Nil) && !errors.Is(classify(err), ErrWrongType) {
		return nil, wrap("get", err)
	}
	return out, nil
}
