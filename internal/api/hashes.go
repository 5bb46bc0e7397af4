package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
)

// hashStore is what the hash routes need.
type hashStore interface {
	HSet(ctx context.Context, key string, fields map[string]string, ttl time.Duration) (time.Duration, error)
	HScan(ctx context.Context, key string, cursor uint64, limit, budget int) (store.HashPage, error)
	HGet(ctx context.Context, key, field string) (string, error)
	HSetField(ctx context.Context, key, field, value string) error
	HDelField(ctx context.Context, key, field string) error
	HIncr(ctx context.Context, key, field string, by int64, once store.Once) (int64, bool, error)
	HSetFieldIf(ctx context.Context, key, field, value string, cond store.Condition) error
	HDelFieldIf(ctx context.Context, key, field string, cond store.Condition) error
}

// MaxHashFieldsPerWrite bounds the fields one PUT of a hash writes, so that
// one request's work in Redis stays bounded; MAX_HASH_FIELDS bounds the
// hash itself.
const MaxHashFieldsPerWrite = 1000

// hashPageResponse is a page of a hash's fields.
type hashPageResponse struct {
	Key        string            `json:"key"`
	Fields     map[string]string `json:"fields"`
	TTLSeconds int64             `json:"ttl_seconds"`
	// NextCursor continues the reading; absent at the end.
	NextCursor string `json:"next_cursor,omitempty"`
}

// hashWrittenResponse answers a write of a hash: the names of the fields
// it set (sorted) and the hash's TTL after it, not their values.
type hashWrittenResponse struct {
	Key        string   `json:"key"`
	Fields     []string `json:"fields"`
	TTLSeconds int64    `json:"ttl_seconds"`
}

type fieldResponse struct {
	Key   string `json:"key"`
	Field string `json:"field"`
	Value string `json:"value"`
}

type fieldWrittenResponse struct {
	Key   string `json:"key"`
	Field string `json:"field"`
}

type putHashRequest struct {
	Fields     map[string]string `json:"fields"`
	TTLSeconds optionalTTL       `json:"ttl_seconds"`
}

func (h *handler) putHash(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	var req putHashRequest
	if err := h.decode(c, &req, false); err != nil {
		return err
	}
	if len(req.Fields) == 0 || len(req.Fields) > MaxHashFieldsPerWrite {
		return invalid(fmt.Sprintf("fields must hold from 1 to %d fields", MaxHashFieldsPerWrite))
	}
	names := make([]string, 0, len(req.Fields))
	for f, v := range req.Fields {
		if err := checkName("field", f, h.cfg.MaxKeyBytes); err != nil {
			return err
		}
		if err := h.checkValue(v); err != nil {
			return err
		}
		names = append(names, f)
	}
	ttl, err := ttlFromSeconds(req.TTLSeconds.seconds)
	if err != nil {
		return err
	}
	left, err := h.store.HSet(c.Request.Context(), key, req.Fields, ttl)
	if err != nil {
		return err
	}
	slices.Sort(names)
	h.reply(c, http.StatusOK, hashWrittenResponse{Key: key, Fields: names, TTLSeconds: ttlSeconds(left)})
	return nil
}

// getHash reads a page of a hash: ?limit= (1 to 1000 fields, default 100)
// and the opaque ?cursor= of the previous page. A page also stops once its
// names and values reach MAX_PAGE_BYTES.
func (h *handler) getHash(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", defaultPage, 1, maxPage)
	if err != nil {
		return err
	}
	var cursor uint64
	if raw := c.Query("cursor"); raw != "" {
		if cursor, err = strconv.ParseUint(raw, 10, 64); err != nil || cursor == 0 {
			return invalid("cursor is not one this service gave: pass next_cursor as it came, or none to start")
		}
	}
	page, err := h.store.HScan(c.Request.Context(), key, cursor, int(limit), h.cfg.MaxPageBytes)
	if err != nil {
		return err
	}
	if err := jsonableFields(page.Fields); err != nil {
		return err
	}
	resp := hashPageResponse{Key: key, Fields: page.Fields, TTLSeconds: ttlSeconds(page.TTL)}
	if page.Next != 0 {
		resp.NextCursor = strconv.FormatUint(page.Next, 10)
	}
	h.reply(c, http.StatusOK, resp)
	return nil
}

func (h *handler) getField(c *gin.Context) error {
	key, field, err := h.keyField(c)
	if err != nil {
		return err
	}
	v, err := h.store.HGet(c.Request.Context(), key, field)
	if err != nil {
		return err
	}
	if done, err := readConditions(c, etag(v)); done || err != nil {
		return err
	}
	if err := jsonable(v); err != nil {
		return err
	}
	h.reply(c, http.StatusOK, fieldResponse{Key: key, Field: field, Value: v})
	return nil
}

type putFieldRequest struct {
	Value *string `json:"value"`
}

func (h *handler) putField(c *gin.Context) error {
	key, field, err := h.keyField(c)
	if err != nil {
		return err
	}
	var req putFieldRequest
	if err := h.decode(c, &req, false); err != nil {
		return err
	}
	value, err := h.requiredValue(req.Value)
	if err != nil {
		return err
	}
	ctx := c.Request.Context()
	err = writeTagged(c, etag(value),
		func() error { return h.store.HSetField(ctx, key, field, value) },
		func(cond store.Condition) error { return h.store.HSetFieldIf(ctx, key, field, value, cond) })
	if err != nil {
		return err
	}
	h.reply(c, http.StatusOK, fieldWrittenResponse{Key: key, Field: field})
	return nil
}

func (h *handler) deleteField(c *gin.Context) error {
	key, field, err := h.keyField(c)
	if err != nil {
		return err
	}
	ctx := c.Request.Context()
	err = conditional(c,
		func() error { return h.store.HDelField(ctx, key, field) },
		deleteIf(func(cond store.Condition) error { return h.store.HDelFieldIf(ctx, key, field, cond) }))
	if err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

func (h *handler) incrField(c *gin.Context) error {
	key, field, err := h.keyField(c)
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
	n, again, err := h.store.HIncr(c.Request.Context(), key, field, by, o)
	if err != nil {
		return err
	}
	replayed(c, again)
	h.reply(c, http.StatusOK, intResponse{Key: key, Field: field, Value: n})
	return nil
}
