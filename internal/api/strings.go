package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// stringStore is what the string routes (/v1/kv and the tutorial's) need.
type stringStore interface {
	Get(ctx context.Context, key string) (store.String, error)
	Set(ctx context.Context, key, value string, ttl time.Duration) error
	SetIf(ctx context.Context, key, value string, ttl time.Duration, cond store.Condition) error
	DeleteIf(ctx context.Context, key string, cond store.Condition) error
	Incr(ctx context.Context, key string, by int64, once store.Once) (int64, bool, error)
	GetMany(ctx context.Context, keys []string, budget int) ([]store.Found, error)
}

type stringResponse struct {
	Key        string `json:"key"`
	Value      string `json:"value"`
	TTLSeconds int64  `json:"ttl_seconds"`
}

// writtenResponse answers a write of a value: what was written, without
// the value itself, which the client has (ETag carries its tag).
type writtenResponse struct {
	Key        string `json:"key"`
	TTLSeconds int64  `json:"ttl_seconds"`
}

type intResponse struct {
	Key   string `json:"key"`
	Field string `json:"field,omitempty"`
	Value int64  `json:"value"`
}

type putStringRequest struct {
	Value      *string     `json:"value"`
	TTLSeconds optionalTTL `json:"ttl_seconds"`
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
	ttl, err := ttlFromSeconds(req.TTLSeconds.seconds)
	if err != nil {
		return err
	}
	ctx := c.Request.Context()
	err = writeTagged(c, value,
		func() error { return h.store.Set(ctx, key, value, ttl) },
		func(cond store.Condition) error { return h.store.SetIf(ctx, key, value, ttl, cond) })
	if err != nil {
		return err
	}
	resp := writtenResponse{Key: key, TTLSeconds: -1}
	if req.TTLSeconds.seconds != nil {
		resp.TTLSeconds = *req.TTLSeconds.seconds
	}
	h.reply(c, http.StatusOK, resp)
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
	done, err := readConditions(c, s.Value)
	if err != nil {
		return err
	}
	source(c, s)
	if done {
		return nil
	}
	if prefersRaw(c.GetHeader("Accept")) {
		// The bytes as they are, whatever they hold: the TTL goes in a
		// header, as the body has no room for it.
		c.Header("X-TTL-Seconds", strconv.FormatInt(ttlSeconds(s.TTL), 10))
		c.Header("Content-Length", strconv.Itoa(len(s.Value)))
		c.Header("Content-Type", "application/octet-stream")
		c.Status(http.StatusOK)
		_, _ = c.Writer.WriteString(s.Value)
		return nil
	}
	h.reply(c, http.StatusOK, stringResponse{Key: key, Value: s.Value, TTLSeconds: ttlSeconds(s.TTL)})
	return nil
}

// prefersRaw says whether an Accept header asks for a value's bytes as
// they are (application/octet-stream) rather than JSON: octet-stream is
// acceptable and JSON is not, or less so.
func prefersRaw(accept string) bool {
	if accept == "" {
		return false
	}
	q := acceptQuality(accept)
	raw, ok := q["application/octet-stream"]
	if !ok {
		return false
	}
	// A wildcard yields to a type named at the same quality.
	json := max(q["application/json"], 0.999*max(q["*/*"], q["application/*"]))
	return raw > 0 && raw > json
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
	o, err := once(c)
	if err != nil {
		return err
	}
	n, again, err := h.store.Incr(c.Request.Context(), key, by, o)
	if err != nil {
		return err
	}
	replayed(c, again)
	h.reply(c, http.StatusOK, intResponse{Key: key, Value: n})
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
	// UnprocessedKeys are the keys left unread because the values read
	// reached MAX_PAGE_BYTES (as DynamoDB's BatchGetItem does past its
	// 16 MB): ask for them again.
	UnprocessedKeys []string `json:"unprocessed_keys,omitempty"`
}

// batchGet reads many strings with their TTLs in one request, answering
// each key in the order asked, until the values read reach MAX_PAGE_BYTES.
// A key named twice is refused: it would only make the answer larger.
func (h *handler) batchGet(c *gin.Context) error {
	var req batchGetRequest
	if err := h.decode(c, &req, false); err != nil {
		return err
	}
	if len(req.Keys) == 0 || len(req.Keys) > MaxBatchKeys {
		return invalid(fmt.Sprintf("keys must hold from 1 to %d keys", MaxBatchKeys))
	}
	seen := make(map[string]bool, len(req.Keys))
	for _, k := range req.Keys {
		if err := checkName("key", k, h.cfg.MaxKeyBytes); err != nil {
			return err
		}
		if seen[k] {
			return invalid(fmt.Sprintf("keys names %q more than once", k))
		}
		seen[k] = true
	}
	found, err := h.store.GetMany(c.Request.Context(), req.Keys, h.cfg.MaxPageBytes)
	if err != nil {
		return err
	}
	resp := batchGetResponse{Items: make([]batchItem, len(found)), UnprocessedKeys: req.Keys[len(found):]}
	for i, f := range found {
		item := batchItem{Key: req.Keys[i]}
		if f.Err != nil {
			e, _ := toAPIError(f.Err)
			item.Error = &errorDetail{Code: e.Code, Message: e.Message}
		} else if !utf8.ValidString(f.Value) {
			// As the key's own GET answers it.
			item.Error = &errorDetail{Code: errNotUTF8JSON.Code, Message: errNotUTF8JSON.Message}
		} else {
			v, secs := f.Value, ttlSeconds(f.TTL)
			item.Value, item.TTLSeconds = &v, &secs
		}
		resp.Items[i] = item
	}
	h.reply(c, http.StatusOK, resp)
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
