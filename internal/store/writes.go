package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// maxRedirects bounds the MOVED and ASK replies one write that waits for
// replicas follows on a Cluster, as go-redis bounds its own.
const maxRedirects = 3

// write runs one write command on key (cmd builds it on the Cmdable it is
// given). Without WAIT it goes through the client like any call. With
// REDIS_WAIT_REPLICAS it sends WAIT right after the write, in one pipeline
// on one connection to the key's primary: WAIT counts the replicas that
// have every write of its own connection, so it must share the write's.
// The write's own error wins; redis.Nil is returned as it is, for callers
// that expect it.
func (s *Store) write(ctx context.Context, key string, cmd func(redis.Cmdable) redis.Cmder) error {
	if s.near != nil {
		// Whatever the outcome (a timed-out write may still apply), the
		// key's near-cache entry is unusable before the write is answered.
		defer s.near.invalidate(key)
	}
	if s.cfg.WaitReplicas == 0 {
		return cmd(s.rdb).Err()
	}
	switch c := s.rdb.(type) {
	case *redis.Client:
		return s.writeAndWait(ctx, c, false, cmd)
	case *redis.ClusterClient:
		return s.clusterWriteAndWait(ctx, c, key, cmd)
	}
	return fmt.Errorf("REDIS_WAIT_REPLICAS: a %T cannot wait for replicas: %w", s.rdb, errInternal)
}

// writeAndWait sends the write and WAIT to node in one pipeline, after
// ASKING when asking (a Cluster's ASK redirection).
func (s *Store) writeAndWait(ctx context.Context, node *redis.Client, asking bool, cmd func(redis.Cmdable) redis.Cmder) error {
	var w redis.Cmder
	var wait *redis.Cmd
	_, _ = node.Pipelined(ctx, func(p redis.Pipeliner) error {
		if asking {
			p.Do(ctx, "asking")
		}
		w = cmd(p)
		wait = p.Do(ctx, "wait", s.cfg.WaitReplicas, s.cfg.WaitTimeout.Milliseconds())
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

// clusterWriteAndWait is writeAndWait on the node that serves key. The
// pipeline goes to that node's own client, outside the Cluster client,
// which would send WAIT to another node; so the store does here what the
// Cluster client does for every other call: it follows MOVED and ASK, and
// a node that cannot be reached makes it reload its slot map (see
// failoverWatch), so that a write after a failover finds the new primary.
func (s *Store) clusterWriteAndWait(ctx context.Context, cc *redis.ClusterClient, key string, cmd func(redis.Cmdable) redis.Cmder) error {
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		s.failover.seen(err)
		return err
	}
	asking := false
	for redirects := 0; ; redirects++ {
		err := s.writeAndWait(ctx, node, asking, cmd)
		s.failover.seen(err)
		movedTo, moved := redis.IsMovedError(err)
		askTo, ask := redis.IsAskError(err)
		if (!moved && !ask) || redirects == maxRedirects {
			return err
		}
		addr := movedTo
		if moved {
			s.tel.Redirected("moved")
			// The slot lives elsewhere for good: the map is out of date.
			cc.ReloadState(ctx)
		} else {
			s.tel.Redirected("ask")
			addr = askTo
		}
		asking = ask
		if node, err = s.failover.node(ctx, addr); err != nil {
			return err
		}
	}
}

// waited turns WAIT's reply into ErrNotDurable when fewer replicas than
// asked acknowledged the write in time.
func (s *Store) waited(n int64, err error) error {
	switch {
	case err != nil:
		return err
	case n < int64(s.cfg.WaitReplicas):
		return fmt.Errorf("%d of %d replicas acknowledged the write within %v: %w", n, s.cfg.WaitReplicas, s.cfg.WaitTimeout, ErrNotDurable)
	}
	return nil
}

// writeScript runs a script that writes keys[0] (and may write the others,
// which share its Cluster slot), through write.
func (s *Store) writeScript(ctx context.Context, script *redis.Script, keys []string, args ...any) (*redis.Cmd, error) {
	if s.near != nil {
		// write invalidates keys[0]; the others (a transaction's) too.
		for _, k := range keys[1:] {
			defer s.near.invalidate(k)
		}
	}
	var cmd *redis.Cmd
	err := s.write(ctx, keys[0], func(c redis.Cmdable) redis.Cmder {
		if s.cfg.WaitReplicas > 0 {
			// In a pipeline with WAIT, EVALSHA cannot fall back to EVAL on
			// NOSCRIPT: send the script itself.
			cmd = script.Eval(ctx, c, keys, args...)
		} else {
			cmd = script.Run(ctx, c, keys, args...)
		}
		return cmd
	})
	return cmd, err
}
