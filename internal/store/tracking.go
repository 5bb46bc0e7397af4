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

// tracking is how Redis tells the process which keys changed (CLIENT
// TRACKING): a subscriber receives the invalidations, and tracked
// connections turn tracking on, redirected to the subscriber. In Redis's
// default mode Redis remembers the keys each tracked connection reads, so
// only the reads made through them are heard of; in broadcast mode one
// tracked connection stands for every key under a prefix. The near cache
// and the key watches each have their own.
type tracking struct {
	sub   *redis.Client
	subID atomic.Int64
	// open makes a tracked connection; size is how many a session holds.
	open func() *redis.Conn
	size int
	// ctl is the client open takes connections from when the owner gave
	// none of its own, nil otherwise.
	ctl  *redis.Client
	lost func()

	mu  sync.Mutex
	cur *trackedConns // the session's connections, nil while none holds
}

// trackedConns are one session's tracked connections.
type trackedConns struct {
	free chan *redis.Conn
	done chan struct{} // closed when the session ends
	// failed is set when a connection failed under a caller: Redis may
	// have forgotten what it read, so the session must start again.
	failed atomic.Bool
}

// newTracking makes the subscriber from opts (one server, or Sentinel's
// primary). A session holds size tracked connections, each made by open,
// or, when open is nil, by a client of tracking's own from opts. lost is
// called whenever the subscriber reconnects by itself, and whenever a
// tracked connection fails under a caller: tracking then no longer tells
// of every change, so what the owner holds can no longer be kept right.
func newTracking(opts *redis.Options, size int, open func() *redis.Conn, lost func()) *tracking {
	t := &tracking{size: size, open: open, lost: lost}
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
	// connect: a client of tracking's own gets its own, off (a tracking
	// connection follows no maintenance).
	subOpts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	t.sub = redis.NewClient(&subOpts)
	if open == nil {
		ctlOpts := *opts
		ctlOpts.PoolSize, ctlOpts.MinIdleConns = size, 0
		ctlOpts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
		t.ctl = redis.NewClient(&ctlOpts)
		t.open = t.ctl.Conn
	}
	return t
}

func (t *tracking) close() {
	_ = t.sub.Close()
	if t.ctl != nil {
		_ = t.ctl.Close()
	}
}

// errTrackingDown is what a read through a tracked connection returns
// while no session holds.
var errTrackingDown = fmt.Errorf("tracking is down: %w", ErrUnavailable)

// errTrackingBusy is what tryDo returns when every tracked connection is
// in use.
var errTrackingBusy = errors.New("every tracked connection is busy")

// do runs fn on a tracked connection of the session that holds, waiting
// for one to be free.
func (t *tracking) do(fn func(conn *redis.Conn) error) error {
	return t.use(true, fn)
}

// tryDo is do without the wait: when every tracked connection is in use
// it returns errTrackingBusy at once.
func (t *tracking) tryDo(fn func(conn *redis.Conn) error) error {
	return t.use(false, fn)
}

func (t *tracking) use(wait bool, fn func(conn *redis.Conn) error) error {
	t.mu.Lock()
	set := t.cur
	t.mu.Unlock()
	if set == nil {
		return errTrackingDown
	}
	var conn *redis.Conn
	if wait {
		select {
		case conn = <-set.free:
		case <-set.done:
			return errTrackingDown
		}
	} else {
		select {
		case conn = <-set.free:
		default:
			return errTrackingBusy
		}
	}
	select {
	case <-set.done:
		set.free <- conn
		return errTrackingDown
	default:
	}
	err := fn(conn)
	if broken(err) {
		set.failed.Store(true)
		t.lost()
	}
	set.free <- conn
	return err
}

// broken says whether err leaves a connection's state unknown: anything but
// a reply of Redis's.
func broken(err error) bool {
	var rerr redis.Error
	return err != nil && !errors.Is(err, redis.Nil) && !errors.As(err, &rerr)
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
// REDIRECT: BCAST and its prefixes, or none for the default mode) on each
// tracked connection, and passes on invalidations until a connection
// fails. held says whether tracking was on before it failed.
func (t *tracking) session(ctx context.Context, mode []any, h trackingHandler) (held bool, err error) {
	ps := t.sub.Subscribe(ctx, "__redis__:invalidate")
	defer func() { _ = ps.Close() }()
	if _, err := ps.Receive(ctx); err != nil {
		return false, err
	}
	id := t.subID.Load()
	set := &trackedConns{free: make(chan *redis.Conn, t.size), done: make(chan struct{})}
	conns := make([]*redis.Conn, 0, t.size)
	defer func() {
		t.mu.Lock()
		t.cur = nil
		t.mu.Unlock()
		close(set.done)
		// Wait for the connections in use, then drop them all: Redis
		// forgets what a closed connection read.
		for range len(conns) {
			<-set.free
		}
		for _, conn := range conns {
			_ = conn.Close()
		}
	}()
	args := append([]any{"CLIENT", "TRACKING", "on", "REDIRECT", id}, mode...)
	for range t.size {
		conn := t.open()
		conns = append(conns, conn)
		set.free <- conn
		// A pooled connection may still track from a previous round.
		if err := conn.Do(ctx, "CLIENT", "TRACKING", "off").Err(); err != nil {
			return false, err
		}
		if err := conn.Do(ctx, args...).Err(); err != nil {
			return false, err
		}
	}
	t.mu.Lock()
	t.cur = set
	t.mu.Unlock()
	h.up()
	for !set.failed.Load() {
		msg, err := ps.ReceiveTimeout(ctx, time.Second)
		var netErr interface{ Timeout() bool }
		switch {
		case err != nil && errors.As(err, &netErr) && netErr.Timeout():
			// Quiet: check that the connections still hold, and that the
			// subscriber is still the connection tracking redirects to.
			if err := ps.Ping(ctx); err != nil {
				return true, err
			}
			if err := t.check(ctx, set, id, h.check); err != nil {
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
	return true, errors.New("a tracked connection failed")
}

// check runs the checks on each tracked connection in turn (and more, when
// set, on the first).
func (t *tracking) check(ctx context.Context, set *trackedConns, id int64, more func(context.Context, *redis.Conn) error) error {
	for i := range t.size {
		conn := <-set.free
		err := t.checkOne(ctx, conn, id)
		if err == nil && i == 0 && more != nil {
			err = more(ctx, conn)
		}
		set.free <- conn
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *tracking) checkOne(ctx context.Context, conn *redis.Conn, id int64) error {
	info, err := conn.Do(ctx, "CLIENT", "TRACKINGINFO").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(fmt.Sprint(info), fmt.Sprint(id)) || t.subID.Load() != id {
		return fmt.Errorf("tracking no longer redirects to the subscriber %d: %v", id, info)
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
