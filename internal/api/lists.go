package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
)

// listStore is what the list routes need.
type listStore interface {
	Push(ctx context.Context, key, end string, values []string, ttl time.Duration, once store.Once) (int64, time.Duration, bool, error)
	Pop(ctx context.Context, key, end string, count, budget int, once store.Once) ([]string, int64, bool, error)
	Remove(ctx context.Context, key, value string, count int64) (removed, length int64, err error)
	Trim(ctx context.Context, key string, start, stop int64) (int64, error)
	Range(ctx context.Context, key string, offset, limit int64, budget int) (store.List, error)
	Len(ctx context.Context, key string) (int64, error)
}

// MaxListValues bounds the values one request pushes, pops or reads from a
// list, so that a request's work and its answer stay bounded; a pop or a
// read also stops at MAX_PAGE_BYTES, and MAX_LIST_LENGTH bounds the list.
const MaxListValues = maxPage

type listResponse struct {
	Key        string   `json:"key"`
	Values     []string `json:"values"`
	Length     int64    `json:"length"`
	TTLSeconds int64    `json:"ttl_seconds"`
	// NextOffset is where the next page starts, when there is one.
	NextOffset *int64 `json:"next_offset,omitempty"`
}

type lengthResponse struct {
	Key        string `json:"key"`
	Length     int64  `json:"length"`
	TTLSeconds *int64 `json:"ttl_seconds,omitempty"`
}

type popResponse struct {
	Key    string   `json:"key"`
	Values []string `json:"values"`
	Length int64    `json:"length"`
}

type removeResponse struct {
	Key     string `json:"key"`
	Removed int64  `json:"removed"`
	Length  int64  `json:"length"`
}

// end reads which end of a list a request names, or def.
func end(v *string, def string) (string, error) {
	switch {
	case v == nil:
		return def, nil
	case *v == store.Head, *v == store.Tail:
		return *v, nil
	}
	return "", invalid(`end must be "head" or "tail"`)
}

// count reads how many values a request names: 1 to MaxListValues, or def.
func count(v *int, def int) (int, error) {
	switch {
	case v == nil:
		return def, nil
	case *v < 1 || *v > MaxListValues:
		return 0, invalid(fmt.Sprintf("count must be from 1 to %d", MaxListValues))
	}
	return *v, nil
}

type pushRequest struct {
	Values     []string    `json:"values"`
	End        *string     `json:"end"`
	TTLSeconds optionalTTL `json:"ttl_seconds"`
}

// push adds values at the tail (or the head) of a list, creating it, and
// sets its TTL in the same step when asked.
func (h *handler) push(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	var req pushRequest
	if err := h.decode(c, &req, false); err != nil {
		return err
	}
	if len(req.Values) == 0 || len(req.Values) > MaxListValues {
		return invalid(fmt.Sprintf("values must hold from 1 to %d values", MaxListValues))
	}
	for _, v := range req.Values {
		if err := h.checkValue(v); err != nil {
			return err
		}
	}
	at, err := end(req.End, store.Tail)
	if err != nil {
		return err
	}
	ttl, err := ttlFromSeconds(req.TTLSeconds.seconds)
	if err != nil {
		return err
	}
	o, err := once(c)
	if err != nil {
		return err
	}
	n, d, again, err := h.store.Push(c.Request.Context(), key, at, req.Values, ttl, o)
	if err != nil {
		return err
	}
	replayed(c, again)
	secs := ttlSeconds(d)
	h.reply(c, http.StatusOK, lengthResponse{Key: key, Length: n, TTLSeconds: &secs})
	return nil
}

type popRequest struct {
	End   *string `json:"end"`
	Count *int    `json:"count"`
}

// pop takes values from the head (or the tail) of a list: count of them,
// or fewer when they would take the answer past MAX_PAGE_BYTES (one always
// comes). The list's key goes with its last value.
func (h *handler) pop(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	var req popRequest
	if err := h.decode(c, &req, true); err != nil {
		return err
	}
	at, err := end(req.End, store.Head)
	if err != nil {
		return err
	}
	n, err := count(req.Count, 1)
	if err != nil {
		return err
	}
	o, err := once(c)
	if err != nil {
		return err
	}
	values, left, again, err := h.store.Pop(c.Request.Context(), key, at, n, h.cfg.MaxPageBytes, o)
	if err != nil {
		return err
	}
	replayed(c, again)
	if err := jsonable(values...); err != nil {
		return err
	}
	h.reply(c, http.StatusOK, popResponse{Key: key, Values: values, Length: left})
	return nil
}

type removeRequest struct {
	Value *string `json:"value"`
	Count *int64  `json:"count"`
}

// removeValues removes the values equal to value (count of them from the
// head, from the tail when negative, all when 0 or absent).
func (h *handler) removeValues(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	var req removeRequest
	if err := h.decode(c, &req, false); err != nil {
		return err
	}
	value, err := h.requiredValue(req.Value)
	if err != nil {
		return err
	}
	var n int64
	if req.Count != nil {
		n = *req.Count
	}
	removed, left, err := h.store.Remove(c.Request.Context(), key, value, n)
	if err != nil {
		return err
	}
	h.reply(c, http.StatusOK, removeResponse{Key: key, Removed: removed, Length: left})
	return nil
}

type trimRequest struct {
	Start *int64 `json:"start"`
	Stop  *int64 `json:"stop"`
}

// trim keeps the values from start to stop, inclusive, zero-based, negative
// from the tail (Redis's LTRIM).
func (h *handler) trim(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	var req trimRequest
	if err := h.decode(c, &req, false); err != nil {
		return err
	}
	if req.Start == nil || req.Stop == nil {
		return invalid("start and stop are required")
	}
	left, err := h.store.Trim(c.Request.Context(), key, *req.Start, *req.Stop)
	if err != nil {
		return err
	}
	h.reply(c, http.StatusOK, lengthResponse{Key: key, Length: left})
	return nil
}

// getList reads a page of a list: ?offset= (from 0) and ?limit= (1 to
// MaxListValues, default 100); a page also stops before a value that would
// take it past MAX_PAGE_BYTES, and next_offset says where to go on.
func (h *handler) getList(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	offset, err := queryInt(c, "offset", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", defaultPage, 1, MaxListValues)
	if err != nil {
		return err
	}
	l, err := h.store.Range(c.Request.Context(), key, offset, limit, h.cfg.MaxPageBytes)
	if err != nil {
		return err
	}
	if err := jsonable(l.Values...); err != nil {
		return err
	}
	resp := listResponse{Key: key, Values: l.Values, Length: l.Length, TTLSeconds: ttlSeconds(l.TTL)}
	if next := offset + int64(len(l.Values)); len(l.Values) > 0 && next < l.Length {
		resp.NextOffset = &next
	}
	h.reply(c, http.StatusOK, resp)
	return nil
}

func (h *handler) listLength(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	n, err := h.store.Len(c.Request.Context(), key)
	if err != nil {
		return err
	}
	h.reply(c, http.StatusOK, lengthResponse{Key: key, Length: n})
	return nil
}
