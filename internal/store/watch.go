package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// ErrNotSupported means the operation cannot run on this topology: key
// watches need one Redis server or Sentinel's primary.
var ErrNotSupported = errors.New("not supported on this topology")

// KeyState is a watched key as one read found it.
type KeyState struct {
	// Type is the key's type, "" when it does not exist. When it is not
	// the type the watch asked for, nothing else is set.
	Type string
	// Value is a string's value, MediaType the type it was written with
	// (see String).
	Value     string
	MediaType string
	stored    string
	// Fields are a hash's fields: all of them, unless Partial says that
	// the hash was larger than one page (MaxPageBytes, 1000 fields).
	Fields  map[string]string
	Partial bool
	TTL     time.Duration
	// At is when the read began: the state held then.
	At time.Time
}

// Tag is a string's entity tag, as String.Tag.
func (st KeyState) Tag() string { return Tag(st.stored) }

// Watch is one watcher of one key. States come on C in the order they held,
// the newest replacing one not yet taken; C is closed when the watch ends,
// and Err then says why (nil after Close).
type Watch struct {
	C    <-chan KeyState
	c    chan KeyState
	hub  *watchHub
	w    *watched
	once sync.Once
	err  error
}

// Err says why C was closed.
func (w *Watch) Err() error { return w.err }

// Close ends the watch; C is closed.
func (w *Watch) Close() { w.hub.leave(w, nil) }

// offer hands s to the watcher, replacing a state it has not taken: a slow
// watcher skips states, never gets them out of order.
func (w *Watch) offer(s KeyState) {
	for {
		select {
		case w.c <- s:
			return
		default:
		}
		select {
		case <-w.c:
		default:
		}
	}
}

// watchPage bounds the fields of a hash's state.
const watchPage = 1000

// watchHub serves every watch of the store over one tracking session in
// Redis's default mode: Redis remembers the keys the session reads and
// says once when each changes, after which the watcher reads it again
// (which arms the next notice). A write to a key nobody watches costs
// Redis nothing.
type watchHub struct {
	s   *Store
	t   *tracking
	log *zap.Logger

	mu   sync.Mutex
	keys map[string]map[string]*watched // by full key, then by type
	up   chan struct{}                  // closed while a session holds
	// kick asks a waiting run to try again now: a watcher is waiting.
	kick chan struct{}
}

// watched is one key watched as one type, by one or more watchers.
type watched struct {
	key, typ string
	budget   int
	subs     map[*Watch]struct{}
	dirty    chan struct{}
	done     chan struct{}
}

// Watch watches key as typ (TypeString or TypeHash): its first state comes
// at once, then a state after every change. A hash's state holds its
// fields up to about budget bytes of names and values (Partial past it). A key of another type ends the
// watch with ErrWrongType at once (or later, when it changes type).
func (s *Store) Watch(ctx context.Context, key, typ string, budget int) (*Watch, error) {
	if s.watches == nil {
		return nil, fmt.Errorf("watch: key watches need one Redis server or Sentinel: %w", ErrNotSupported)
	}
	return s.watches.join(ctx, s.key(key), typ, budget)
}

// openWatches prepares the key watches where the topology allows them; the
// tracking session starts with the first watcher.
func (s *Store) openWatches(ctx context.Context) {
	c, ok := s.rdb.(*redis.Client)
	if !ok {
		return
	}
	h := &watchHub{s: s, log: s.log.Named("watch"), keys: map[string]map[string]*watched{}, up: make(chan struct{}), kick: make(chan struct{}, 1)}
	h.t = newTracking(c.Options(), 1, nil, func() {})
	s.watches = h
	s.watchStart = sync.OnceFunc(func() { go h.run(ctx, isFailoverClient(c)) })
}

// run keeps a tracking session up until ctx ends. Whenever it is lost,
// every watch ends with ErrUnavailable: its watcher may have missed a
// change, and must watch again.
func (h *watchHub) run(ctx context.Context, sentinel bool) {
	defer h.t.close()
	handler := trackingHandler{
		up: func() {
			h.mu.Lock()
			close(h.up)
			h.mu.Unlock()
			h.log.Debug("key watches: tracking on")
		},
		changed: h.changed,
	}
	if sentinel {
		// Behind Sentinel the session must follow the primary: once the
		// node it reads is demoted, its watches end and start again on
		// the new primary.
		handler.check = func(ctx context.Context, conn *redis.Conn) error {
			role, err := conn.Do(ctx, "ROLE").Slice()
			if err != nil {
				return err
			}
			if len(role) == 0 || role[0] != "master" {
				return fmt.Errorf("the watched node is no longer the primary (%v)", role)
			}
			return nil
		}
	}
	wait := nearRetryMin
	for ctx.Err() == nil {
		held, err := h.t.session(ctx, nil, handler)
		h.mu.Lock()
		select {
		case <-h.up:
			h.up = make(chan struct{})
		default:
		}
		h.mu.Unlock()
		h.endAll(fmt.Errorf("watch: tracking lost: %w: %w", ErrUnavailable, err))
		if ctx.Err() != nil {
			return
		}
		if held {
			wait = nearRetryMin
			h.log.Warn("key watches: tracking lost; open watches end with an error event and watch again", zap.Error(err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		case <-h.kick:
		}
		wait = min(2*wait, nearRetryMax)
	}
}

// join adds a watcher and waits for its first state.
func (h *watchHub) join(ctx context.Context, key, typ string, budget int) (*Watch, error) {
	h.s.watchStart()
	ctx, cancel := h.s.ctx(ctx)
	defer cancel()
	h.mu.Lock()
	up := h.up
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
	select {
	case <-up:
	case <-ctx.Done():
		return nil, wrap("watch", fmt.Errorf("tracking is not on: %w", errors.Join(ctx.Err(), ErrUnavailable)))
	}
	c := make(chan KeyState, 1)
	w := &Watch{C: c, c: c, hub: h}
	h.mu.Lock()
	byType := h.keys[key]
	if byType == nil {
		byType = map[string]*watched{}
		h.keys[key] = byType
	}
	wd := byType[typ]
	if wd == nil {
		wd = &watched{key: key, typ: typ, budget: budget, subs: map[*Watch]struct{}{}, dirty: make(chan struct{}, 1), done: make(chan struct{})}
		byType[typ] = wd
		go h.follow(wd)
	}
	wd.subs[w] = struct{}{}
	w.w = wd
	h.mu.Unlock()
	// A read for the new watcher: the others see the same state again,
	// which their streams skip.
	wd.touch()
	select {
	case s, ok := <-c:
		if !ok {
			return nil, w.err
		}
		w.offer(s)
		return w, nil
	case <-ctx.Done():
		w.Close()
		return nil, wrap("watch", ctx.Err())
	}
}

func (wd *watched) touch() {
	select {
	case wd.dirty <- struct{}{}:
	default:
	}
}

// changed marks the watched keys Redis says changed (nil: all of them).
func (h *watchHub) changed(keys []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if keys == nil {
		for _, byType := range h.keys {
			for _, wd := range byType {
				wd.touch()
			}
		}
		return
	}
	for _, k := range keys {
		for _, wd := range h.keys[k] {
			wd.touch()
		}
	}
}

// follow reads wd's key whenever it is marked, and hands each state to its
// watchers, until its last watcher leaves. Reads of one key are one after
// another, so states are never out of order.
func (h *watchHub) follow(wd *watched) {
	for {
		select {
		case <-wd.done:
			return
		case <-wd.dirty:
		}
		s, err := h.read(wd.key, wd.typ, wd.budget)
		h.mu.Lock()
		subs := make([]*Watch, 0, len(wd.subs))
		for w := range wd.subs {
			subs = append(subs, w)
		}
		h.mu.Unlock()
		for _, w := range subs {
			switch {
			case err != nil:
				h.leave(w, err)
			case s.Type != "" && s.Type != wd.typ:
				h.leave(w, ErrWrongType)
			default:
				w.offer(s)
			}
		}
	}
}

// leave removes w, closing its channel with err.
func (h *watchHub) leave(w *Watch, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.once.Do(func() {
		w.err = err
		close(w.c)
		wd := w.w
		if wd == nil {
			return
		}
		delete(wd.subs, w)
		if len(wd.subs) == 0 && h.keys[wd.key][wd.typ] == wd {
			close(wd.done)
			delete(h.keys[wd.key], wd.typ)
			if len(h.keys[wd.key]) == 0 {
				delete(h.keys, wd.key)
			}
		}
	})
}

// endAll ends every watch with err.
func (h *watchHub) endAll(err error) {
	h.mu.Lock()
	var all []*Watch
	for _, byType := range h.keys {
		for _, wd := range byType {
			for w := range wd.subs {
				all = append(all, w)
			}
		}
	}
	h.mu.Unlock()
	for _, w := range all {
		h.leave(w, err)
	}
}

// watchString reads a string's state in one step; reading it inside the
// script is what makes Redis remember the key for the session.
var watchString = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return {-2} end
if t ~= 'string' then return {-3, t} end
return {0, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[1])}
`)

// read reads key's state through the tracking session, which arms Redis's
// notice of its next change.
func (h *watchHub) read(key, typ string, budget int) (KeyState, error) {
	ctx, cancel := h.s.ctx(context.Background())
	defer cancel()
	st := KeyState{At: time.Now()}
	var cmd *redis.Cmd
	err := h.t.do(func(conn *redis.Conn) error {
		if typ == TypeHash {
			cmd = hscanScript.Run(ctx, conn, []string{key}, 0, watchPage, budget)
		} else {
			cmd = watchString.Run(ctx, conn, []string{key})
		}
		return cmd.Err()
	})
	reply, err := scriptReply("watch", cmd, err)
	switch {
	case errors.Is(err, ErrNotFound):
		return st, nil
	case errors.Is(err, ErrWrongType):
		// hscanScript does not say which type: another than asked is
		// all a watcher needs.
		st.Type = "other"
		return st, nil
	case err != nil:
		return st, err
	}
	st.Type = typ
	if typ == TypeHash {
		next, _ := reply[1].(string)
		st.Partial = next != "0"
		st.TTL = millis(reply[2])
		st.Fields = make(map[string]string, (len(reply)-3)/2)
		for i := 3; i+1 < len(reply); i += 2 {
			f, _ := reply[i].(string)
			v, _ := reply[i+1].(string)
			st.Fields[f] = v
		}
		return st, nil
	}
	st.TTL = millis(reply[1])
	st.stored, _ = reply[2].(string)
	st.Value, st.MediaType = decodeValue(st.stored)
	return st, nil
}
