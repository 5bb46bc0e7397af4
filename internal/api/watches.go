package api

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
)

// watchStore is what the key watches need.
type watchStore interface {
	Watch(ctx context.Context, key, typ string, budget int) (*store.Watch, error)
}

// stringState and hashState are a watched key's state as a stream carries
// it; a deleted or expired key carries only its name.
type stringState struct {
	Key        string `json:"key"`
	Value      string `json:"value"`
	TTLSeconds int64  `json:"ttl_seconds"`
	ETag       string `json:"etag"`
}

type hashState struct {
	Key        string            `json:"key"`
	Fields     map[string]string `json:"fields"`
	TTLSeconds int64             `json:"ttl_seconds"`
	ETag       string            `json:"etag"`
	// Partial says the hash was larger than one page (MAX_PAGE_BYTES or
	// 1000 fields): Fields holds part of it, and ETag tags that part.
	Partial bool `json:"partial,omitempty"`
}

type goneState struct {
	Key string `json:"key"`
}

// hashTag tags a hash's fields as etag tags a value: the fields sorted
// by name, each name and value preceded by its length.
func hashTag(fields map[string]string) string {
	var b strings.Builder
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		v := fields[f]
		b.WriteString(strconv.Itoa(len(f)))
		b.WriteByte(':')
		b.WriteString(f)
		b.WriteString(strconv.Itoa(len(v)))
		b.WriteByte(':')
		b.WriteString(v)
	}
	return etag(b.String())
}

// watchKey streams a key's states (typ: store.TypeString or
// store.TypeHash): first the current one (or deleted), then one event per
// change: changed, deleted or expired. States a slow client had no time to
// take are skipped, never sent out of order.
func (h *handler) watchKey(kind, typ string) handlerFunc {
	return func(c *gin.Context) error {
		key, err := h.key(c)
		if err != nil {
			return err
		}
		if err := acceptsEventStream(c); err != nil {
			return err
		}
		ctx := c.Request.Context()
		w, err := h.store.Watch(ctx, key, typ, h.cfg.MaxPageBytes)
		if err != nil {
			return err
		}
		defer w.Close()
		if headOnly(c) {
			return nil
		}
		last := watchedState{lastEventID: strings.Trim(c.GetHeader("Last-Event-ID"), `"`)}
		serveStream(h, c, kind, w.C, func(s *stream, st store.KeyState, ok bool) bool {
			if !ok {
				if errors.Is(w.Err(), store.ErrWrongType) {
					apiErr, _ := toAPIError(w.Err())
					_ = s.event("error", "", streamError{Code: apiErr.Code, Message: apiErr.Message})
				} else {
					s.fail(w.Err())
				}
				return false
			}
			err := last.send(s, key, st)
			switch {
			case errors.Is(err, errNotUTF8):
				_ = s.event("error", "", streamError{Code: CodeNotAcceptable, Message: err.Error()})
				return false
			case err != nil:
				s.writeFailed(err)
				return false
			}
			return true
		})
		return nil
	}
}

var errNotUTF8 = errors.New(errNotUTF8JSON.Message)

// watchedState is what a watch stream last sent, so that a state read
// again (for another watcher, or after a change that changed nothing) is
// not sent twice.
type watchedState struct {
	sent        bool
	exists      bool
	tag         string
	expires     time.Time // zero: no TTL
	lastEventID string
}

// send writes st if it differs from what was sent last.
func (w *watchedState) send(s *stream, key string, st store.KeyState) error {
	exists := st.Type != ""
	var expires time.Time
	if exists && st.TTL >= 0 {
		expires = st.At.Add(st.TTL)
	}
	if !exists {
		if w.sent && !w.exists {
			return nil
		}
		name := "deleted"
		if w.sent && !w.expires.IsZero() && !time.Now().Add(expiryGrace).Before(w.expires) {
			name = "expired"
		}
		w.sent, w.exists, w.tag, w.expires = true, false, "", time.Time{}
		return s.deliver(name, "", goneState{Key: key})
	}
	var data any
	var tag string
	if st.Fields != nil || st.Type == store.TypeHash {
		tag = hashTag(st.Fields)
		for f, v := range st.Fields {
			if !utf8.ValidString(f) || !utf8.ValidString(v) {
				return errNotUTF8
			}
		}
		data = hashState{Key: key, Fields: st.Fields, TTLSeconds: ttlSeconds(st.TTL), ETag: tag, Partial: st.Partial}
	} else {
		if !utf8.ValidString(st.Value) {
			return errNotUTF8
		}
		tag = quoted(st.Tag())
		data = stringState{Key: key, Value: st.Value, TTLSeconds: ttlSeconds(st.TTL), ETag: tag}
	}
	first := !w.sent
	sameTTL := w.expires.IsZero() == expires.IsZero() && w.expires.Sub(expires).Abs() < time.Second
	if w.sent && w.exists && w.tag == tag && sameTTL {
		return nil
	}
	w.sent, w.exists, w.tag, w.expires = true, true, tag, expires
	if first && w.lastEventID != "" && w.lastEventID == strings.Trim(tag, `"`) {
		// The client has this state already (Last-Event-ID).
		return nil
	}
	name := "changed"
	if first {
		name = "state"
	}
	return s.deliver(name, tag, data)
}

// expiryGrace is how close to its expiry a key that disappears counts as
// expired rather than deleted: Redis expires a key within about 100 ms of
// its time, and a clock read is not exact.
const expiryGrace = 50 * time.Millisecond

// deliver writes an event and counts it.
func (s *stream) deliver(name, id string, data any) error {
	if err := s.event(name, id, data); err != nil {
		return err
	}
	s.h.metrics.Delivered(s.kind)
	return nil
}
