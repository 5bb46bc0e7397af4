package store

import (
	"context"
	"errors"
	"net"
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
func followFailovers(cc *redis.ClusterClient) {
	cc.AddHook(&reloadHook{cc: cc})
}

type reloadHook struct {
	cc   *redis.ClusterClient
	last atomic.Int64 // unix nanoseconds of the last reload
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
	}()
}

// nodeTrouble says whether err means a node could not be reached or did not
// answer, rather than a reply.
func nodeTrouble(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return errors.Is(classify(err), ErrUnavailable)
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) || errors.Is(classify(err), ErrUnavailable)
}
