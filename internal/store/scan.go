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

	"github.com/redis/go-redis/v9"
)

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
			keys = append(keys, strings.TrimPrefix(k, s.prefix))
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
