package store

import (
	"cmp"
	"context"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Delete removes the key when it holds typ. Redis frees a large value in
// the background (UNLINK), so deleting a big hash or list does not block
// it.
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
// type (or any, for "*"), in one atomic round trip: {-2} means missing,
// {-3} another type, else {0, the key's PTTL after the operation} (or
// UNLINK's count).
var typedScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return {-2} end
if ARGV[1] ~= '*' and t ~= ARGV[1] then return {-3} end
local op = ARGV[2]
if op == 'del' then return {0, redis.call('UNLINK', KEYS[1])} end
if op == 'pexpire' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if op == 'persist' then redis.call('PERSIST', KEYS[1]) end
return {0, redis.call('PTTL', KEYS[1])}
`)

func (s *Store) typed(ctx context.Context, key, typ, op string, ttl time.Duration) (time.Duration, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	args := []any{typ, op, ttl.Milliseconds()}
	var cmd *redis.Cmd
	var err error
	if op == "pttl" {
		// A read: nothing to wait for, and a replica may answer.
		cmd = typedScript.RunRO(ctx, s.rdb, []string{k}, args...)
		err = cmd.Err()
	} else {
		cmd, err = s.writeScript(ctx, typedScript, []string{k}, args...)
	}
	reply, err := scriptReply(op, cmd, err)
	if err != nil {
		return 0, err
	}
	return millis(reply[1]), nil
}

// Cursor is where a listing of keys stands: which shard (the primaries of a
// Cluster in slot order; 0 elsewhere) and SCAN's cursor on it. The zero
// Cursor starts a listing.
type Cursor struct {
	Shard int
	Pos   uint64
}

// maxScanCalls bounds the SCAN calls one listing request makes, so that a
// prefix that matches few keys of a large keyspace answers a short (even
// empty) page with a cursor rather than walking everything at once.
const maxScanCalls = 16

// Keys lists up to about limit keys (SCAN's COUNT is a hint, so a page may
// hold a few more) that start with prefix, optionally only those of type
// typ, from cursor on; the returned cursor is nil when the listing is done.
// Glob characters in prefix (and in the store's own prefix) match only
// themselves. It never uses KEYS: each call is one SCAN step on one node.
func (s *Store) Keys(ctx context.Context, prefix, typ string, cursor Cursor, limit int) ([]string, *Cursor, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	shards, err := s.shards(ctx)
	if err != nil {
		return nil, nil, wrap("scan", err)
	}
	if cursor.Shard >= len(shards) {
		// The Cluster has fewer primaries than when the listing began.
		return nil, nil, nil
	}
	match := globEscape(s.prefix+prefix) + "*"
	keys := []string{}
	for calls := 0; calls < maxScanCalls && len(keys) < limit; calls++ {
		node := shards[cursor.Shard]
		var page []string
		var next uint64
		if typ != "" {
			page, next, err = node.ScanType(ctx, cursor.Pos, match, int64(limit-len(keys)), typ).Result()
		} else {
			page, next, err = node.Scan(ctx, cursor.Pos, match, int64(limit-len(keys))).Result()
		}
		if err != nil {
			return nil, nil, wrap("scan", err)
		}
		for _, k := range page {
			// Idempotency records hold a '/', which no key of the API may:
			// they are the store's, not the client's.
			if k = strings.TrimPrefix(k, s.prefix); !strings.Contains(k, "/") {
				keys = append(keys, k)
			}
		}
		cursor.Pos = next
		if next == 0 {
			if cursor.Shard++; cursor.Shard == len(shards) {
				return keys, nil, nil
			}
		}
	}
	return keys, &cursor, nil
}

// shards returns a client per node to SCAN: the Cluster's primaries in the
// order of their first slots (CLUSTER SHARDS, Redis 7), or the one client elsewhere (behind Sentinel, the
// current primary).
func (s *Store) shards(ctx context.Context) ([]redis.Cmdable, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return []redis.Cmdable{s.rdb}, nil
	}
	shards, err := cc.ClusterShards(ctx).Result()
	if err != nil {
		return nil, err
	}
	first := func(sh redis.ClusterShard) int64 {
		if len(sh.Slots) == 0 {
			return math.MaxInt64
		}
		return sh.Slots[0].Start
	}
	slices.SortFunc(shards, func(a, b redis.ClusterShard) int { return cmp.Compare(first(a), first(b)) })
	var order []string
	for _, sh := range shards {
		for _, n := range sh.Nodes {
			port := n.Port
			if port == 0 {
				port = n.TLSPort
			}
			if n.Role == "master" && len(sh.Slots) > 0 {
				order = append(order, net.JoinHostPort(n.Endpoint, strconv.FormatInt(port, 10)))
			}
		}
	}
	var mu sync.Mutex
	byAddr := map[string]*redis.Client{}
	err = cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		byAddr[c.Options().Addr] = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]redis.Cmdable, 0, len(order))
	for _, addr := range order {
		c, ok := byAddr[addr]
		if !ok {
			// The client's view lags the cluster's (a failover in progress).
			return nil, redis.ErrClosed
		}
		out = append(out, c)
	}
	return out, nil
}

// globEscape makes s match only itself in a SCAN MATCH pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
