package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// The original Flask tutorial's routes keep their JSON shapes.

func (h *handler) seedSet(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	value, err := param(c, "value")
	if err != nil {
		return err
	}
	if err := h.checkValue(value); err != nil {
		return err
	}
	ttl, err := ttlFromQuery(c)
	if err != nil {
		return err
	}
	if err := h.store.Set(c.Request.Context(), key, value, ttl); err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"message": "Stored " + key + " → " + value + " in Redis"})
	return nil
}

func (h *handler) seedGet(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	s, err := h.store.Get(readContext(c), key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// The tutorial answered a missing key with 200 and a null value.
		c.JSON(http.StatusOK, gin.H{"key": key, "value": nil})
	case err != nil:
		return err
	default:
		source(c, s)
		tag := etag(s.Value)
		c.Header("ETag", tag)
		if notModified(c, tag) {
			c.Status(http.StatusNotModified)
			return nil
		}
		c.JSON(http.StatusOK, gin.H{"key": key, "value": s.Value})
	}
	return nil
}

type stringResponse struct {
	Key        string `json:"key"`
	Value      string `json:"value"`
	TTLSeconds int64  `json:"ttl_seconds"`
}

type ttlResponse struct {
	Key        string `json:"key"`
	TTLSeconds int64  `json:"ttl_seconds"`
}

type intResponse struct {
	Key   string `json:"key"`
	Field string `json:"field,omitempty"`
	Value int64  `json:"value"`
}

type putStringRequest struct {
	Value      *string `json:"value"`
	TTLSeconds *int64  `json:"ttl_seconds"`
}

func (h *handler) putString(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	var req putStringRequest
	if err := h.decode(c, &req, false); err != nil {
		return err
	}
	value, err := h.requiredValue(req.Value)
	if err != nil {
		return err
	}
	ttl, err := ttlFromSeconds(req.TTLSeconds)
	if err != nil {
		return err
	}
	cond, err := condition(c)
	if err != nil {
		return err
	}
	if cond != nil {
		err = h.store.SetIf(c.Request.Context(), key, value, ttl, *cond)
	} else {
		err = h.store.Set(c.Request.Context(), key, value, ttl)
	}
	if err != nil {
		return err
	}
	c.Header("ETag", etag(value))
	resp := stringResponse{Key: key, Value: value, TTLSeconds: -1}
	if req.TTLSeconds != nil {
		resp.TTLSeconds = *req.TTLSeconds
	}
	c.JSON(http.StatusOK, resp)
	return nil
}

func (h *handler) getString(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	s, err := h.store.Get(readContext(c), key)
	if err != nil {
		return err
	}
	source(c, s)
	tag := etag(s.Value)
	c.Header("ETag", tag)
	if notModified(c, tag) {
		c.Status(http.StatusNotModified)
		return nil
	}
	c.JSON(http.StatusOK, stringResponse{Key: key, Value: s.Value, TTLSeconds: ttlSeconds(s.TTL)})
	return nil
}

// deleteKey deletes a key that holds typ (any type for store.AnyType); a
// string's, with If-Match, only while its value has that tag.
func (h *handler) deleteKey(typ string) func(*gin.Context) error {
	return func(c *gin.Context) error {
		key, err := h.key(c)
		if err != nil {
			return err
		}
		cond, err := condition(c)
		if err != nil {
			return err
		}
		if cond != nil && typ == store.TypeString {
			err = h.store.DeleteIf(c.Request.Context(), key, *cond)
		} else {
			err = h.store.Delete(c.Request.Context(), key, typ)
		}
		if err != nil {
			return err
		}
		c.Status(http.StatusNoContent)
		return nil
	}
}

type keyInfoResponse struct {
	Key        string `json:"key"`
	Type       string `json:"type"`
	TTLSeconds int64  `json:"ttl_seconds"`
}

func (h *handler) keyInfo(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	info, err := h.store.Info(c.Request.Context(), key)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, keyInfoResponse{Key: key, Type: info.Type, TTLSeconds: ttlSeconds(info.TTL)})
	return nil
}

// ttlOf answers a TTL route that takes no body, reading (store.TTL) or
// removing (store.Persist) the TTL of a key that holds typ.
func (h *handler) ttlOf(typ string, op func(ctx context.Context, key, typ string) (time.Duration, error)) func(*gin.Context) error {
	return func(c *gin.Context) error {
		key, err := h.key(c)
		if err != nil {
			return err
		}
		d, err := op(c.Request.Context(), key, typ)
		return ttlReply(c, key, d, err)
	}
}

type putTTLRequest struct {
	TTLSeconds *int64 `json:"ttl_seconds"`
}

// putTTL sets the TTL of a key that holds typ.
func (h *handler) putTTL(typ string) func(*gin.Context) error {
	return func(c *gin.Context) error {
		key, err := h.key(c)
		if err != nil {
			return err
		}
		var req putTTLRequest
		if err := h.decode(c, &req, false); err != nil {
			return err
		}
		if req.TTLSeconds == nil {
			return invalid("ttl_seconds is required")
		}
		ttl, err := ttlFromSeconds(req.TTLSeconds)
		if err != nil {
			return err
		}
		d, err := h.store.Expire(c.Request.Context(), key, typ, ttl)
		return ttlReply(c, key, d, err)
	}
}

// ttlReply answers a TTL route: the key's TTL after the operation, or err.
func ttlReply(c *gin.Context, key string, d time.Duration, err error) error {
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, ttlResponse{Key: key, TTLSeconds: ttlSeconds(d)})
	return nil
}

type incrRequest struct {
	By *int64 `json:"by"`
}

// by reads an increment request; an empty body or a missing "by" means 1.
func (h *handler) by(c *gin.Context) (int64, error) {
	var req incrRequest
	if err := h.decode(c, &req, true); err != nil {
		return 0, err
	}
	if req.By == nil {
		return 1, nil
	}
	return *req.By, nil
}

func (h *handler) incr(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	by, err := h.by(c)
	if err != nil {
		return err
	}
	n, err := h.store.Incr(c.Request.Context(), key, by)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, intResponse{Key: key, Value: n})
	return nil
}

// MaxBatchKeys bounds the keys one batch read names.
const MaxBatchKeys = 100

// batchGetPath is the batch read, a custom method in the style of Google's
// API guidelines: a POST, so that many long keys fit (a query string counts
// toward MAX_HEADER_BYTES), but a read, which the read token may call.
const batchGetPath = "/v1/kv:batchGet"

type batchGetRequest struct {
	Keys []string `json:"keys"`
}

// batchItem is one key's answer: its value and TTL, or the error that
// reading it alone would have answered (not_found, wrong_type).
type batchItem struct {
	Key        string       `json:"key"`
	Value      *string      `json:"value,omitempty"`
	TTLSeconds *int64       `json:"ttl_seconds,omitempty"`
	Error      *errorDetail `json:"error,omitempty"`
}

type batchGetResponse struct {
	Items []batchItem `json:"items"`
}

// batchGet reads many strings with their TTLs in one request, answering
// each key in the order asked.
func (h *handler) batchGet(c *gin.Context) error {
	var req batchGetRequest
	if err := h.decode(c, &req, false); err != nil {
		return err
	}
	if len(req.Keys) == 0 || len(req.Keys) > MaxBatchKeys {
		return invalid(fmt.Sprintf("keys must hold from 1 to %d keys", MaxBatchKeys))
	}
	for _, k := range req.Keys {
		if err := checkName("key", k, h.cfg.MaxKeyBytes); err != nil {
			return err
		}
	}
	found, err := h.store.GetMany(c.Request.Context(), req.Keys)
	if err != nil {
		return err
	}
	resp := batchGetResponse{Items: make([]batchItem, len(found))}
	for i, f := range found {
		item := batchItem{Key: req.Keys[i]}
		if f.Err != nil {
			e, _ := toAPIError(f.Err)
			item.Error = &errorDetail{Code: e.Code, Message: e.Message}
		} else {
			v, secs := f.Value, ttlSeconds(f.TTL)
			item.Value, item.TTLSeconds = &v, &secs
		}
		resp.Items[i] = item
	}
	c.JSON(http.StatusOK, resp)
	return nil
}

// readContext is the request's context for a read, telling the store to
// skip the near cache when the client asks with Cache-Control: no-cache.
func readContext(c *gin.Context) context.Context {
	ctx := c.Request.Context()
	if strings.Contains(strings.ToLower(c.GetHeader("Cache-Control")), "no-cache") {
		return store.WithoutNearCache(ctx)
	}
	return ctx
}

// source says where a string came from: X-Cache: near or redis, and on the
// server span (a read from the near cache has no Redis span under it).
func source(c *gin.Context, s store.String) {
	if s.Near {
		c.Header("X-Cache", "near")
		trace.SpanFromContext(c.Request.Context()).SetAttributes(attribute.Bool("dubebox.near_cache", true))
		return
	}
	c.Header("X-Cache", "redis")
}
