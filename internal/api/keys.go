package api

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
)

// keyStore is what the routes on a key of any type need.
type keyStore interface {
	Info(ctx context.Context, key string) (store.Info, error)
	Delete(ctx context.Context, key, typ string) error
	TTL(ctx context.Context, key, typ string) (time.Duration, error)
	Expire(ctx context.Context, key, typ string, ttl time.Duration) (time.Duration, error)
	Persist(ctx context.Context, key, typ string) (time.Duration, error)
	Keys(ctx context.Context, prefix, typ string, cursor store.Cursor, limit int) ([]string, *store.Cursor, error)
}

// The types a route may require of its key (store's names).
const (
	anyType    = store.AnyType
	typeString = store.TypeString
	typeHash   = store.TypeHash
	typeList   = store.TypeList
)

// MaxKeysPage bounds the keys one listing request asks Redis for.
const MaxKeysPage = maxPage

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
	h.reply(c, http.StatusOK, keyInfoResponse{Key: key, Type: info.Type, TTLSeconds: ttlSeconds(info.TTL)})
	return nil
}

// deleteKey deletes a key that holds typ (any type for anyType); a
// string's, with If-Match, only while its value has that tag.
func (h *handler) deleteKey(typ string) func(*gin.Context) error {
	return func(c *gin.Context) error {
		key, err := h.key(c)
		if err != nil {
			return err
		}
		ctx := c.Request.Context()
		del := func() error { return h.store.Delete(ctx, key, typ) }
		if typ == typeString {
			// Only a string's DELETE takes If-Match (refuseConditions).
			err = conditional(c, del, deleteIf(func(cond store.Condition) error { return h.store.DeleteIf(ctx, key, cond) }))
		} else {
			err = del()
		}
		if err != nil {
			return err
		}
		c.Status(http.StatusNoContent)
		return nil
	}
}

type ttlResponse struct {
	Key        string `json:"key"`
	TTLSeconds int64  `json:"ttl_seconds"`
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
		return h.ttlReply(c, key, d, err)
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
		return h.ttlReply(c, key, d, err)
	}
}

// ttlReply answers a TTL route: the key's TTL after the operation, or err.
func (h *handler) ttlReply(c *gin.Context, key string, d time.Duration, err error) error {
	if err != nil {
		return err
	}
	h.reply(c, http.StatusOK, ttlResponse{Key: key, TTLSeconds: ttlSeconds(d)})
	return nil
}

// keyTypes are the types GET /v1/keys?type= filters on: Redis's names.
var keyTypes = []string{"string", "hash", "list", "set", "zset", "stream"}

type keysResponse struct {
	Keys []string `json:"keys"`
	// NextCursor continues the listing; absent when it is done.
	NextCursor string `json:"next_cursor,omitempty"`
}

// listKeys lists keys page by page with SCAN (never KEYS): ?prefix= (glob
// characters match only themselves), ?type=, ?limit= (1 to MaxKeysPage,
// default 100) and the opaque ?cursor= of the previous page.
func (h *handler) listKeys(c *gin.Context) error {
	prefix := c.Query("prefix")
	switch {
	case len(prefix) > h.cfg.MaxKeyBytes:
		return invalid(fmt.Sprintf("prefix is longer than %d bytes", h.cfg.MaxKeyBytes))
	case !utf8.ValidString(prefix), strings.IndexFunc(prefix, unicode.IsControl) >= 0:
		return invalid("prefix must be UTF-8 without control characters")
	}
	typ := c.Query("type")
	if typ != "" && !slices.Contains(keyTypes, typ) {
		return invalid("type must be one of " + strings.Join(keyTypes, ", "))
	}
	limit, err := queryInt(c, "limit", defaultPage, 1, MaxKeysPage)
	if err != nil {
		return err
	}
	cursor, err := decodeCursor(c.Query("cursor"))
	if err != nil {
		return err
	}
	keys, next, err := h.store.Keys(c.Request.Context(), prefix, typ, cursor, int(limit))
	if err != nil {
		return err
	}
	resp := keysResponse{Keys: keys}
	if next != nil {
		resp.NextCursor = encodeCursor(*next)
	}
	h.reply(c, http.StatusOK, resp)
	return nil
}

// A cursor is opaque to clients: which shard and where on it, encoded.
func encodeCursor(c store.Cursor) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d.%d", c.Shard, c.Pos))
}

func decodeCursor(s string) (store.Cursor, error) {
	if s == "" {
		return store.Cursor{}, nil
	}
	bad := invalid("cursor is not one this service gave: pass next_cursor as it came, or none to start")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return store.Cursor{}, bad
	}
	shard, pos, ok := strings.Cut(string(b), ".")
	n, err1 := strconv.Atoi(shard)
	p, err2 := strconv.ParseUint(pos, 10, 64)
	if !ok || err1 != nil || err2 != nil || n < 0 || n > 16384 {
		return store.Cursor{}, bad
	}
	return store.Cursor{Shard: n, Pos: p}, nil
}
