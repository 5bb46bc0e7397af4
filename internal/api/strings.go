package api

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/elnormous/contenttype"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// stringStore is what the string routes (/v1/kv and the tutorial's) need.
type stringStore interface {
	Get(ctx context.Context, key string) (store.String, error)
	Set(ctx context.Context, key, value, typ string, ttl time.Duration) error
	SetIf(ctx context.Context, key, value, typ string, ttl time.Duration, cond store.Condition) error
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
	if typ, ok, err := bodyType(c); err != nil {
		return err
	} else if ok {
		return h.putBytes(c, key, typ)
	}
	if c.GetHeader(ttlHeader) != "" {
		return invalid(ttlHeader + " goes with a PUT of the value's bytes; in a JSON body, send ttl_seconds")
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
	return h.setString(c, key, value, "", ttl, req.TTLSeconds.seconds)
}

// putBytes stores the request's body as the value, byte for byte, with
// media type typ ("" for bytes without a type of their own) and the TTL of
// the X-TTL-Seconds header.
func (h *handler) putBytes(c *gin.Context, key, typ string) error {
	var secs *int64
	if raw := c.GetHeader(ttlHeader); raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			n = 0
		}
		secs = &n
	}
	ttl, err := ttlFromSeconds(secs)
	if err != nil {
		return invalid(fmt.Sprintf("%s must be a whole number from 1 to %d", ttlHeader, MaxTTLSeconds))
	}
	body, err := readBody(c, int64(h.cfg.MaxValueBytes))
	var large *Error
	if errors.As(err, &large) && large.Code == CodePayloadTooLarge {
		return tooLarge(fmt.Sprintf("value is longer than %d bytes", h.cfg.MaxValueBytes))
	} else if err != nil {
		return err
	}
	return h.setString(c, key, string(body), typ, ttl, secs)
}

// setString writes a string, conditionally when the request asks, and
// answers what was written.
func (h *handler) setString(c *gin.Context, key, value, typ string, ttl time.Duration, secs *int64) error {
	ctx := c.Request.Context()
	err := writeTagged(c, quoted(store.ValueTag(value, typ)),
		func() error { return h.store.Set(ctx, key, value, typ, ttl) },
		func(cond store.Condition) error { return h.store.SetIf(ctx, key, value, typ, ttl, cond) })
	if err != nil {
		return err
	}
	resp := writtenResponse{Key: key, TTLSeconds: -1}
	if secs != nil {
		resp.TTLSeconds = *secs
	}
	h.reply(c, http.StatusOK, resp)
	return nil
}

// ttlHeader carries a value's TTL in whole seconds beside its bytes, on a
// PUT of them and on a read of them, where the body has no room for it.
const ttlHeader = "X-TTL-Seconds"

// octetStream is the type of bytes without a type of their own.
const octetStream = "application/octet-stream"

// bodyType says whether a PUT carries the value's bytes rather than a JSON
// body, and with which media type, kept with the value and served back
// ("" for application/octet-stream, bytes without a type of their own).
// JSON is a body without a Content-Type, with a JSON one, or with
// application/x-www-form-urlencoded: curl -d sends that, and the README's
// examples (and every script copied from them) send JSON with it.
func bodyType(c *gin.Context) (string, bool, error) {
	header := c.GetHeader("Content-Type")
	if header == "" {
		return "", false, nil
	}
	mt, params, err := mime.ParseMediaType(header)
	if err != nil {
		return "", false, invalid("Content-Type is not a valid media type: " + plain(err))
	}
	switch {
	case mt == "application/json", strings.HasSuffix(mt, "+json"), mt == "application/x-www-form-urlencoded":
		return "", false, nil
	case mt == octetStream:
		return "", true, nil
	}
	typ := mime.FormatMediaType(mt, params)
	if len(typ) > maxMediaType {
		return "", false, invalid(fmt.Sprintf("Content-Type is longer than %d bytes", maxMediaType))
	}
	return typ, true, nil
}

// maxMediaType bounds a kept media type, as RFC 6838 bounds a type's and a
// subtype's names to 127 characters each.
const maxMediaType = 255

func (h *handler) getString(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	s, err := h.store.Get(readContext(c), key)
	if err != nil {
		return err
	}
	done, err := readConditions(c, quoted(s.Tag()))
	if err != nil {
		return err
	}
	source(c, s)
	if done {
		return nil
	}
	if typ, ok := rawType(c, s.Type); ok {
		// The bytes as they are, whatever they hold: the TTL goes in a
		// header, as the body has no room for it.
		c.Header(ttlHeader, strconv.FormatInt(ttlSeconds(s.TTL), 10))
		c.Header("Content-Length", strconv.Itoa(len(s.Value)))
		c.Header("Content-Type", typ)
		c.Status(http.StatusOK)
		_, _ = c.Writer.WriteString(s.Value)
		return nil
	}
	if err := jsonable(s.Value); err != nil {
		return err
	}
	h.reply(c, http.StatusOK, stringResponse{Key: key, Value: s.Value, TTLSeconds: ttlSeconds(s.TTL)})
	return nil
}

// rawType says whether a read of a value of media type typ answers its
// bytes rather than JSON, and as which type: its own, when Accept takes
// it, or application/octet-stream. A value written with a type of its own
// is served as that type first (a browser's Accept: */* shows a picture);
// any other is JSON first, as it always was, and its bytes only when
// Accept prefers application/octet-stream.
func rawType(c *gin.Context, typ string) (string, bool) {
	// The offers are compared by position: MediaType.Equal compares
	// parameters with reflection, which cost a near-cache hit more than
	// its SHA-1 (bench/results.md, issue 24).
	offered, asJSON := untypedOffers, 0
	if typ != "" {
		offered, asJSON = []contenttype.MediaType{contenttype.NewMediaType(typ), octetStreamType, jsonType}, 2
	}
	switch i := negotiate(c, offered); {
	case i < 0 || i == asJSON:
		return "", false
	case typ != "" && i == 0:
		return typ, true
	}
	return octetStream, true
}

var (
	jsonType        = contenttype.NewMediaType("application/json")
	octetStreamType = contenttype.NewMediaType(octetStream)
	untypedOffers   = []contenttype.MediaType{jsonType, octetStreamType}
)

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
