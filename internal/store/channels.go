package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Channels are Redis's sharded Pub/Sub (SPUBLISH, SSUBSCRIBE; Redis 7) on
// every topology: on a Cluster a channel lives on its slot's shard, and
// on one server or behind Sentinel the same commands behave as plain
// Pub/Sub does, so a deployment that moves to a Cluster keeps its
// channels, and one code path serves all three.

// Message is one message of a channel.
type Message struct {
	// Channel is the channel's name, without the key prefix.
	Channel string
	Text    string
	// PublishedAt is when the publisher sent it; for a message published
	// without DubeBox's envelope (redis-cli), when it was received.
	PublishedAt time.Time
	// TraceParent and TraceState are the publisher's W3C trace context,
	// carried inside the message.
	TraceParent string
	TraceState  string
	// held counts the subscribers holding this message, for the budget.
	held *held
}

// held is one received message's share of the process's budget: its bytes
// count once, while any subscriber holds it.
type held struct {
	subs atomic.Int32
	size int64
}

// A message travels through Redis as envelopeMagic, its envelope (JSON on
// one line), a line break and the message's bytes as they are: a
// subscriber takes the message as a part of what Redis sent, never a
// copy, and a message without the magic (published around DubeBox) is
// the message whole.
const envelopeMagic = "\x1edubebox/1\x1f"

// envelope is what travels with a message.
type envelope struct {
	PublishedAt time.Time `json:"published_at"`
	TraceParent string    `json:"traceparent,omitempty"`
	TraceState  string    `json:"tracestate,omitempty"`
}

// Publish sends m to its channel and returns how many subscribers Redis
// handed it to (on a Cluster, those of the channel's shard node).
func (s *Store) Publish(ctx context.Context, m Message) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	env, err := json.Marshal(envelope{PublishedAt: m.PublishedAt, TraceParent: m.TraceParent, TraceState: m.TraceState})
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	n, err := s.rdb.SPublish(ctx, s.key(m.Channel), envelopeMagic+string(env)+"\n"+m.Text).Result()
	return n, wrap("publish", err)
}

// ErrSlowReader ends a subscription whose reader let its buffer fill.
var ErrSlowReader = errors.New("the subscriber did not keep up: its buffer, or the process's budget for queued messages, was full")

// Subscription is one subscriber of one channel. Messages come on C until
// it is closed; Err then says why (nil after Close). Subscribers of the
// same channel in one process share one Redis subscription. The reader
// calls Taken once it is done with a message, so that the bytes it held
// count against the process's budget no more.
type Subscription struct {
	C    <-chan Message
	c    chan Message
	t    *topic
	once sync.Once
	err  error
	// pending is the messages handed to the reader and not yet Taken.
	pending atomic.Int32
}

// Taken says the reader is done with m.
func (sub *Subscription) Taken(m Message) {
	sub.pending.Add(-1)
	if m.held != nil && m.held.subs.Add(-1) == 0 {
		sub.t.hub.queued.Add(-m.held.size)
	}
}

// Err says why C was closed.
func (sub *Subscription) Err() error { return sub.err }

// Close ends the subscription.
func (sub *Subscription) Close() { sub.t.hub.leave(sub, nil) }

// channelHub shares one Redis subscription per channel among the
// process's subscribers.
type channelHub struct {
	s      *Store
	mu     sync.Mutex
	topics map[string]*topic
	// queued is the bytes of the messages handed to subscribers and not
	// yet Taken by all of them, each message counted once; budget bounds
	// it.
	queued atomic.Int64
	budget atomic.Int64
}

type topic struct {
	hub  *channelHub
	name string // with the prefix
	ps   *redis.PubSub
	subs map[*Subscription]struct{}
	done bool
}

func newChannelHub(s *Store) *channelHub {
	return &channelHub{s: s, topics: map[string]*topic{}}
}

// channelPing is how often a quiet subscription is pinged. A Redis that
// answers nothing, not even a ping, for channelSilence (stalled, or cut
// off without the connection closing) ends its subscribers' streams, as a
// closed connection does.
const (
	channelPing    = 2 * time.Second
	channelSilence = 2*channelPing + time.Second
)

// Subscribe subscribes to channel, with room for buffer messages the
// reader has not taken: past it the subscription ends with ErrSlowReader.
// budget bounds the bytes of the messages all the process's subscribers
// hold (each message once, however many hold it): while a message would
// take them past it, the subscribers that still hold an earlier one end
// with ErrSlowReader, and only those that hold nothing take it. So slow
// readers make the process hold at most budget, plus one message per
// subscriber. It returns once Redis
// has confirmed the subscription, so a message published after it returns
// is received.
func (s *Store) Subscribe(ctx context.Context, channel string, buffer, budget int) (*Subscription, error) {
	h := s.channels
	h.budget.Store(int64(budget))
	name := s.key(channel)
	c := make(chan Message, buffer)
	sub := &Subscription{C: c, c: c}
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topics[name]
	if t == nil {
		ctx, cancel := s.ctx(ctx)
		defer cancel()
		ps := s.rdb.SSubscribe(ctx, name)
		if _, err := ps.ReceiveTimeout(ctx, s.cfg.Timeout); err != nil {
			_ = ps.Close()
			// A subscription's connection is no command the failover
			// watch's hook sees: tell it, so that a Cluster client with a
			// dead primary in its map of slots reloads it.
			s.failover.seen(err)
			return nil, wrap("subscribe", err)
		}
		t = &topic{hub: h, name: name, ps: ps, subs: map[*Subscription]struct{}{}}
		h.topics[name] = t
		go t.receive(s.life, channel)
	}
	sub.t = t
	t.subs[sub] = struct{}{}
	return sub, nil
}

// receive hands each message to the topic's subscribers until the
// subscription fails, its last subscriber leaves or ctx (the store's
// life) ends.
func (t *topic) receive(ctx context.Context, channel string) {
	heard := time.Now()
	for {
		msg, err := t.ps.ReceiveTimeout(ctx, channelPing)
		var netErr interface{ Timeout() bool }
		if err != nil && errors.As(err, &netErr) && netErr.Timeout() {
			if time.Since(heard) > channelSilence {
				err = fmt.Errorf("no answer to a ping for %v: %w", time.Since(heard).Round(time.Second), ErrUnavailable)
			} else if err = t.ps.Ping(ctx); err == nil {
				continue
			}
		}
		if err == nil {
			heard = time.Now()
		}
		if err != nil {
			t.hub.s.failover.seen(err)
			t.end(wrap("subscribe", err))
			return
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "sunsubscribe" {
				// Redis drops a shard channel's subscribers when its slot
				// leaves the node (a failover, a resharding).
				t.end(fmt.Errorf("subscribe: the channel's shard moved: %w", ErrUnavailable))
				return
			}
		case *redis.Message:
			t.deliver(channel, m.Payload)
		}
	}
}

func (t *topic) deliver(channel, payload string) {
	m := Message{Channel: channel}
	m.Text, m.PublishedAt = payload, time.Now()
	if rest, ok := strings.CutPrefix(payload, envelopeMagic); ok {
		var env envelope
		if head, text, ok := strings.Cut(rest, "\n"); ok && json.Unmarshal([]byte(head), &env) == nil {
			m.Text, m.PublishedAt, m.TraceParent, m.TraceState = text, env.PublishedAt, env.TraceParent, env.TraceState
		}
	}
	h := t.hub
	// The deliverer holds the message too until every subscriber had
	// its chance, so that its bytes are counted once and released once.
	m.held = &held{size: int64(len(m.Text))}
	m.held.subs.Store(1)
	h.mu.Lock()
	over := h.queued.Load()+m.held.size > h.budget.Load()
	h.queued.Add(m.held.size)
	var slow []*Subscription
	for sub := range t.subs {
		if over && sub.pending.Load() > 0 {
			slow = append(slow, sub)
			continue
		}
		m.held.subs.Add(1)
		sub.pending.Add(1)
		select {
		case sub.c <- m:
		default:
			sub.pending.Add(-1)
			m.held.subs.Add(-1)
			slow = append(slow, sub)
		}
	}
	if m.held.subs.Add(-1) == 0 {
		h.queued.Add(-m.held.size)
	}
	h.mu.Unlock()
	for _, sub := range slow {
		h.leave(sub, ErrSlowReader)
	}
}

// end ends every subscriber of t with err.
func (t *topic) end(err error) {
	h := t.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if t.done {
		return
	}
	t.done = true
	if h.topics[t.name] == t {
		delete(h.topics, t.name)
	}
	for sub := range t.subs {
		sub.finish(err)
	}
	_ = t.ps.Close()
}

// leave removes sub, closing its channel with err; the last subscriber
// to leave closes the Redis subscription.
func (h *channelHub) leave(sub *Subscription, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := sub.t
	sub.finish(err)
	delete(t.subs, sub)
	if len(t.subs) == 0 && !t.done {
		t.done = true
		delete(h.topics, t.name)
		// The receiver's next call fails on the closed subscription and
		// finds nobody to tell.
		_ = t.ps.Close()
	}
}

func (sub *Subscription) finish(err error) {
	sub.once.Do(func() {
		sub.err = err
		close(sub.c)
		// What the reader will not take no longer counts. (A reader
		// still draining takes its messages off the same channel, each
		// one once.)
		for {
			select {
			case m, ok := <-sub.c:
				if !ok {
					return
				}
				sub.Taken(m)
			default:
				return
			}
		}
	})
}
