package store

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// reloadEvery bounds how often a Cluster client reloads its slot map after
// failures.
const reloadEvery = 250 * time.Millisecond

// failoverWatch is the one place that notices a new primary, whatever the
// topology, and reports it once: a warn line naming the old and the new
// primary, and Telemetry.PrimaryChanged.
//
// On a Cluster it also makes the client follow a failover at once: it
// reloads the map of slots to nodes, at most every reloadEvery, when a
// call fails because a node is unreachable or did not answer. go-redis
// reloads it by itself only on MOVED, ASK or READONLY replies, or when the
// map is ten seconds old; a dead primary sends none of them, so without
// this the client would keep asking it for up to ten seconds after its
// replica had taken over. Behind Sentinel, go-redis finds the new primary
// itself; the watch learns of it from the connections dialed.
type failoverWatch struct {
	cc     *redis.ClusterClient // nil behind Sentinel
	tel    Telemetry
	log    *zap.Logger
	last   atomic.Int64 // unix nanoseconds of the last reload
	nodes  sync.Map     // address: *redis.Client of every Cluster node the client made
	mu     sync.Mutex
	shards map[string]string // first slot of each shard: its primary's address
	dialed atomic.Pointer[string]
}

// watchFailovers installs the watch on rdb: a hook on a Cluster client or
// a client behind Sentinel; nil for one Redis server, which has no
// failover to follow.
func watchFailovers(rdb redis.UniversalClient, tel Telemetry, log *zap.Logger) *failoverWatch {
	w := &failoverWatch{tel: tel, log: log}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		w.cc = c
		c.OnNewNode(func(n *redis.Client) { w.nodes.Store(n.Options().Addr, n) })
		c.AddHook(w)
		// Learn the primaries now, so that the first failover can be named.
		go func() {
			for range 30 {
				if ok, _ := w.refreshPrimaries(); ok {
					return
				}
				time.Sleep(time.Second)
			}
		}()
	case *redis.Client:
		if !isFailoverClient(c) {
			return nil
		}
		c.AddHook(sentinelDials{w})
	default:
		return nil
	}
	return w
}

func (w *failoverWatch) report(old, new string) {
	w.tel.PrimaryChanged()
	w.log.Warn("redis primary changed", zap.String("old_primary", old), zap.String("new_primary", new))
}

// sentinelDials is the hook behind Sentinel: go-redis hands dial hooks the
// placeholder address "FailoverClient", but the connection knows the node
// it reached; a successful dial to another node than before is a
// failover.
type sentinelDials struct{ w *failoverWatch }

func (h sentinelDials) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			return conn, err
		}
		remote := conn.RemoteAddr().String()
		if old := h.w.dialed.Swap(&remote); old != nil && *old != remote {
			h.w.report(*old, remote)
		}
		return conn, nil
	}
}

func (sentinelDials) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (sentinelDials) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (w *failoverWatch) DialHook(next redis.DialHook) redis.DialHook { return next }

func (w *failoverWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		w.seen(err)
		return err
	}
}

func (w *failoverWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		w.seen(err)
		return err
	}
}

// seen is told the outcome of every call on a Cluster, those the Cluster
// client makes and those the store sends to a node itself: trouble with a
// node starts a reload of the slot map. It does nothing elsewhere (a nil
// watch, or one behind Sentinel).
func (w *failoverWatch) seen(err error) {
	if w == nil || w.cc == nil || err == nil || !nodeTrouble(err) {
		return
	}
	now := time.Now().UnixNano()
	last := w.last.Load()
	if now-last < int64(reloadEvery) || !w.last.CompareAndSwap(last, now) {
		return
	}
	// In the background: the request that saw the failure is answered at
	// once, and the reload has a deadline of its own.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		w.cc.ReloadState(ctx)
		// While a shard has no live primary, look again: the node asked
		// may learn of the promotion after the client's own map did, and
		// no failure would then bring another look.
		for range 40 {
			if ok, pending := w.refreshPrimaries(); ok && !pending {
				return
			}
			time.Sleep(250 * time.Millisecond)
			w.cc.ReloadState(ctx)
		}
	}()
}

// node returns the Cluster client's own client of the node at addr, where
// a MOVED or ASK sent the store.
func (w *failoverWatch) node(ctx context.Context, addr string) (*redis.Client, error) {
	if n, ok := w.nodes.Load(addr); ok {
		return n.(*redis.Client), nil
	}
	// A node made before the store was opened: look through the map.
	var found atomic.Pointer[redis.Client]
	look := func(_ context.Context, c *redis.Client) error {
		if c.Options().Addr == addr {
			found.Store(c)
		}
		return nil
	}
	_ = w.cc.ForEachMaster(ctx, look)
	_ = w.cc.ForEachSlave(ctx, look)
	if c := found.Load(); c != nil {
		w.nodes.Store(addr, c)
		return c, nil
	}
	return nil, wrap("redirect", errors.New("redirected to "+addr+", a node the client does not know yet"))
}

// refreshPrimaries reads which node is each shard's primary from a primary
// that answers and reports the shards whose primary changed. It says
// whether it could read them, and whether a shard had no live primary.
func (w *failoverWatch) refreshPrimaries() (ok, pending bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var mu sync.Mutex
	nodes := ""
	_ = w.cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		v, err := c.ClusterNodes(ctx).Result()
		mu.Lock()
		defer mu.Unlock()
		if err == nil && nodes == "" {
			nodes = v
		}
		return nil
	})
	if nodes == "" {
		return false, true
	}
	now := map[string]string{}
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
			continue
		}
		first, _, _ := strings.Cut(f[8], "-")
		now[first] = strings.SplitN(f[1], "@", 2)[0]
	}
	w.mu.Lock()
	old := w.shards
	// A shard whose primary has failed and whose replica is not promoted
	// yet has no primary in the list: it keeps the one it had, so that the
	// promotion is seen as a change.
	for first, addr := range old {
		if _, ok := now[first]; !ok {
			now[first] = addr
			pending = true
		}
	}
	w.shards = now
	w.mu.Unlock()
	reported := map[string]bool{}
	for first, addr := range now {
		if was, ok := old[first]; ok && was != addr && !reported[was+addr] {
			reported[was+addr] = true
			w.report(was, addr)
		}
	}
	return true, pending
}

// nodeTrouble says whether err means a node could not be reached or did not
// answer, rather than a reply: classify's two sentinels for that.
func nodeTrouble(err error) bool {
	c := classify(err)
	return errors.Is(c, ErrUnavailable) || errors.Is(c, ErrTimeout)
}
