package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// reloadEvery bounds how often a Cluster client reloads its slot map after
// failures.
const reloadEvery = 250 * time.Millisecond

// followFailovers makes cc reload its map of slots to nodes, at most every
// reloadEvery, when a call fails because a node is unreachable or did not
// answer. go-redis reloads it by itself only on MOVED, ASK or READONLY
// replies, or when the map is ten seconds old; a dead primary sends none of
// them, so without this the client would keep asking it for up to ten
// seconds after its replica had taken over.
//
// It also tells report, once per change, when a shard's primary is another
// node than before: a failover.
func followFailovers(cc *redis.ClusterClient, report func(old, new string)) {
	h := &reloadHook{cc: cc, report: report}
	cc.AddHook(h)
	// Learn the primaries now, so that the first failover can be named.
	go func() {
		for range 30 {
			if ok, _ := h.refreshPrimaries(); ok {
				return
			}
			time.Sleep(time.Second)
		}
	}()
}

type reloadHook struct {
	cc     *redis.ClusterClient
	last   atomic.Int64 // unix nanoseconds of the last reload
	report func(old, new string)

	mu        sync.Mutex
	primaries map[string]string // first slot of each shard: its primary's address
}

func (h *reloadHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *reloadHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.maybeReload(err)
		return err
	}
}

func (h *reloadHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.maybeReload(err)
		return err
	}
}

func (h *reloadHook) maybeReload(err error) {
	if err == nil || !nodeTrouble(err) {
		return
	}
	now := time.Now().UnixNano()
	last := h.last.Load()
	if now-last < int64(reloadEvery) || !h.last.CompareAndSwap(last, now) {
		return
	}
	// In the background: the request that saw the failure is answered at
	// once, and the reload has a deadline of its own.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		h.cc.ReloadState(ctx)
		// While a shard has no live primary, look again: the node asked
		// may learn of the promotion after the client's own map did, and
		// no failure would then bring another look.
		for range 40 {
			if ok, pending := h.refreshPrimaries(); ok && !pending {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
}

// refreshPrimaries reads which node is each shard's primary from a primary
// that answers and reports the shards whose primary changed. It says
// whether it could read them, and whether a shard had no live primary.
func (h *reloadHook) refreshPrimaries() (ok, pending bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var mu sync.Mutex
	nodes := ""
	_ = h.cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
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
	h.mu.Lock()
	old := h.primaries
	// A shard whose primary has failed and whose replica is not promoted
	// yet has no primary in the list: it keeps the one it had, so that the
	// promotion is seen as a change.
	for first, addr := range old {
		if _, ok := now[first]; !ok {
			now[first] = addr
			pending = true
		}
	}
	h.primaries = now
	h.mu.Unlock()
	reported := map[string]bool{}
	for first, addr := range now {
		if was, ok := old[first]; ok && was != addr && h.report != nil && !reported[was+addr] {
			reported[was+addr] = true
			h.report(was, addr)
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
