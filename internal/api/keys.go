package api

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
)

// MaxKeysPage bounds the keys one listing request asks Redis for.
const MaxKeysPage = 1000

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
	c.JSON(http.StatusOK, resp)
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
