package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// tracking is a pair of connections through which Redis tells the process
// which keys changed (CLIENT TRACKING): the subscriber receives the
// invalidations, the control connection turns tracking on, redirected to
// the subscriber, and (in Redis's default mode) is the connection whose
// reads Redis remembers. The near cache and the key watches each have
// their own.
type tracking struct {
	sub, ctl *redis.Client
	subID    atomic.Int64
	// mu serialises the use of the control connection: the session's
	// checks and the reads of its owner share it.
	mu   sync.Mutex
	conn *redis.Conn
}

// newTracking makes the connections from opts (one server, or Sentinel's
// primary). lost is called whenever the subscriber reconnects by itself:
// tracking does not redirect to the new connection, so what the owner
// holds can no longer be kept right.
func newTracking(opts *redis.Options, lost func()) *tracking {
	t := &tracking{}
	subOpts := *opts
	subOpts.PoolSize, subOpts.MinIdleConns = 1, 0
	// RESP2: Redis then sends a redirected invalidation as a message on
	// __redis__:invalidate; on RESP3 it would be a push go-redis keeps.
	subOpts.Protocol = 2
	subOpts.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		lost()
		id, err := cn.ClientID(ctx).Result()
		t.subID.Store(id)
		return err
	}
	// The options share their maintenance-notification settings with the
	// caller's client, whose connections may rewrite them as they
	// connect: each tracking client gets its own, off (a tracking
	// connection follows no maintenance).
	subOpts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	t.sub = redis.NewClient(&subOpts)
	ctlOpts := *opts
	ctlOpts.PoolSize, ctlOpts.MinIdleConns = 1, 0
	ctlOpts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	t.ctl = redis.NewClient(&ctlOpts)
	return t
}

func (t *tracking) close() {
	_ = t.sub.Close()
	_ = t.ctl.Close()
}

// errTrackingDown is what a read through the control connection returns
// while no session holds.
var errTrackingDown = fmt.Errorf("tracking is down: %w", ErrUnavailable)

// do runs fn on the control connection of the session that holds, alone.
func (t *tracking) do(fn func(conn *redis.Conn) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return errTrackingDown
	}
	return fn(t.conn)
}

// trackingHandler is what a session tells its owner.
type trackingHandler struct {
	// up is called once tracking holds, before any invalidation.
	up func()
	// changed is given the keys Redis invalidated; nil means every key
	// (FLUSHDB, FLUSHALL).
	changed func(keys []string)
	// check, when set, is run with the other checks while all is quiet;
	// an error ends the session.
	check func(ctx context.Context, conn *redis.Conn) error
}

// session turns tracking on with mode (CLIENT TRACKING's arguments after
// REDIRECT: BCAST and its prefixes, or none for the default mode) and
// passes on invalidations until a connection fails. held says whether
// tracking was on before it failed.
func (t *tracking) session(ctx context.Context, mode []any, h trackingHandler) (held bool, err error) {
	ps := t.sub.Subscribe(ctx, "__redis__:invalidate")
	defer func() { _ = ps.Close() }()
	if _, err := ps.Receive(ctx); err != nil {
		return false, err
	}
	id := t.subID.Load()
	conn := t.ctl.Conn()
	defer func() {
		t.mu.Lock()
		t.conn = nil
		t.mu.Unlock()
		_ = conn.Close()
	}()
	// The pooled connection may still track from a previous round.
	if err := conn.Do(ctx, "CLIENT", "TRACKING", "off").Err(); err != nil {
		return false, err
	}
	args := append([]any{"CLIENT", "TRACKING", "on", "REDIRECT", id}, mode...)
	if err := conn.Do(ctx, args...).Err(); err != nil {
		return false, err
	}
	t.mu.Lock()
	t.conn = conn
	t.mu.Unlock()
	h.up()
	for {
		msg, err := ps.ReceiveTimeout(ctx, time.Second)
		var netErr interface{ Timeout() bool }
		switch {
		case err != nil && errors.As(err, &netErr) && netErr.Timeout():
			// Quiet: check that both connections still hold, and that the
			// subscriber is still the connection tracking redirects to.
			if err := ps.Ping(ctx); err != nil {
				return true, err
			}
			if err := t.do(func(conn *redis.Conn) error { return t.check(ctx, conn, id, h.check) }); err != nil {
				return true, err
			}
			continue
		case err != nil && flushed(err):
			// FLUSHDB or FLUSHALL: every key changed, and the connection
			// is fine.
			h.changed(nil)
			continue
		case err != nil:
			return true, err
		}
		m, ok := msg.(*redis.Message)
		if !ok {
			continue
		}
		keys := m.PayloadSlice
		if len(keys) == 0 {
			keys = []string{m.Payload}
		}
		h.changed(keys)
	}
}

func (t *tracking) check(ctx context.Context, conn *redis.Conn, id int64, more func(context.Context, *redis.Conn) error) error {
	info, err := conn.Do(ctx, "CLIENT", "TRACKINGINFO").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(fmt.Sprint(info), fmt.Sprint(id)) || t.subID.Load() != id {
		return fmt.Errorf("tracking no longer redirects to the subscriber %d: %v", id, info)
	}
	if more != nil {
		return more(ctx, conn)
	}
	return nil
}

// flushed says whether err is go-redis refusing the invalidation Redis
// sends for FLUSHDB and FLUSHALL: a message whose payload is a null array,
// which go-redis (v9.23) does not turn into a Message. The reply was read
// whole and the connection is still good; only the message is lost, and
// it means that every key changed.
func flushed(err error) bool {
	return strings.HasSuffix(err.Error(), "unsupported pubsub message payload: <nil>")
}
