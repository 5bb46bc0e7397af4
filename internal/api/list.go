package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
)

// MaxListValues bounds the values one request pushes, pops or reads from a
// list, so that a request's work and its answer stay bounded.
const MaxListValues = 1000

// defaultPage is how many values a list read returns without ?limit.
const defaultPage = 100

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
	Values     []string `json:"values"`
	End        *string  `json:"end"`
	TTLSeconds *int64   `json:"ttl_seconds"`
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
	ttl, err := ttlFromSeconds(req.TTLSeconds)
	if err != nil {
		return err
	}
	n, d, err := h.store.Push(c.Request.Context(), key, at, req.Values, ttl)
	if err != nil {
		return err
	}
	secs := ttlSeconds(d)
	c.JSON(http.StatusOK, lengthResponse{Key: key, Length: n, TTLSeconds: &secs})
	return nil
}

type popRequest struct {
	End   *string `json:"end"`
	Count *int    `json:"count"`
}

// pop takes values from the head (or the tail) of a list; the list's key
// goes with its last value.
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
	values, left, err := h.store.Pop(c.Request.Context(), key, at, n)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, popResponse{Key: key, Values: values, Length: left})
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
	c.JSON(http.StatusOK, removeResponse{Key: key, Removed: removed, Length: left})
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
	c.JSON(http.StatusOK, lengthResponse{Key: key, Length: left})
	return nil
}

// getList reads a page of a list: ?offset= (from 0) and ?limit= (1 to
// MaxListValues, default 100).
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
	l, err := h.store.Range(c.Request.Context(), key, offset, limit)
	if err != nil {
		return err
	}
	resp := listResponse{Key: key, Values: l.Values, Length: l.Length, TTLSeconds: ttlSeconds(l.TTL)}
	if next := offset + int64(len(l.Values)); len(l.Values) > 0 && next < l.Length {
		resp.NextOffset = &next
	}
	c.JSON(http.StatusOK, resp)
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
	c.JSON(http.StatusOK, lengthResponse{Key: key, Length: n})
	return nil
}

// queryInt reads an optional whole-number query parameter within lo..hi.
func queryInt(c *gin.Context, name string, def, lo, hi int64) (int64, error) {
	raw, ok := c.GetQuery(name)
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, invalid(fmt.Sprintf("%s must be a whole number from %d to %d", name, lo, hi))
	}
	return n, nil
}
