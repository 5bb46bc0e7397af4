package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
)

// The seed tutorial's routes keep their original JSON shapes.

func (h *handler) seedSet(c *gin.Context) {
	key, err := h.key(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	value := c.Param("value")
	if err := h.checkValue(value); err != nil {
		h.respond(c, err)
		return
	}
	ttl, err := ttlFromQuery(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	if err := h.store.Set(c.Request.Context(), key, value, ttl); err != nil {
		h.respond(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"message": "Stored " + key + " → " + value + " in Redis"})
}

func (h *handler) seedGet(c *gin.Context) {
	key, err := h.key(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	s, err := h.store.Get(c.Request.Context(), key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// The seed answered a missing key with 200 and a null value.
		c.JSON(http.StatusOK, gin.H{"key": key, "value": nil})
	case err != nil:
		h.respond(c, err)
	default:
		c.JSON(http.StatusOK, gin.H{"key": key, "value": s.Value})
	}
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

func (h *handler) putString(c *gin.Context) {
	key, err := h.key(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	var req putStringRequest
	if err := h.decode(c, &req, false); err != nil {
		h.respond(c, err)
		return
	}
	if req.Value == nil {
		h.respond(c, invalid("value is required and must be a string"))
		return
	}
	if err := h.checkValue(*req.Value); err != nil {
		h.respond(c, err)
		return
	}
	ttl, err := ttlFromSeconds(req.TTLSeconds)
	if err != nil {
		h.respond(c, err)
		return
	}
	if err := h.store.Set(c.Request.Context(), key, *req.Value, ttl); err != nil {
		h.respond(c, err)
		return
	}
	resp := stringResponse{Key: key, Value: *req.Value, TTLSeconds: -1}
	if req.TTLSeconds != nil {
		resp.TTLSeconds = *req.TTLSeconds
	}
	c.JSON(http.StatusOK, resp)
}

func (h *handler) getString(c *gin.Context) {
	key, err := h.key(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	s, err := h.store.Get(c.Request.Context(), key)
	if err != nil {
		h.respond(c, err)
		return
	}
	c.JSON(http.StatusOK, stringResponse{Key: key, Value: s.Value, TTLSeconds: ttlSeconds(s.TTL)})
}

func (h *handler) deleteString(c *gin.Context) {
	key, err := h.key(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	if err := h.store.Delete(c.Request.Context(), key); err != nil {
		h.respond(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h *handler) getTTL(c *gin.Context) {
	key, err := h.key(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	d, err := h.store.TTL(c.Request.Context(), key)
	h.ttlReply(c, key, d, err)
}

type putTTLRequest struct {
	TTLSeconds *int64 `json:"ttl_seconds"`
}

func (h *handler) putTTL(c *gin.Context) {
	key, err := h.key(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	var req putTTLRequest
	if err := h.decode(c, &req, false); err != nil {
		h.respond(c, err)
		return
	}
	if req.TTLSeconds == nil {
		h.respond(c, invalid("ttl_seconds is required"))
		return
	}
	ttl, err := ttlFromSeconds(req.TTLSeconds)
	if err != nil {
		h.respond(c, err)
		return
	}
	d, err := h.store.Expire(c.Request.Context(), key, ttl)
	h.ttlReply(c, key, d, err)
}

func (h *handler) deleteTTL(c *gin.Context) {
	key, err := h.key(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	d, err := h.store.Persist(c.Request.Context(), key)
	h.ttlReply(c, key, d, err)
}

func (h *handler) ttlReply(c *gin.Context, key string, d time.Duration, err error) {
	if err != nil {
		h.respond(c, err)
		return
	}
	c.JSON(http.StatusOK, ttlResponse{Key: key, TTLSeconds: ttlSeconds(d)})
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

func (h *handler) incr(c *gin.Context) {
	key, err := h.key(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	by, err := h.by(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	n, err := h.store.Incr(c.Request.Context(), key, by)
	if err != nil {
		h.respond(c, err)
		return
	}
	c.JSON(http.StatusOK, intResponse{Key: key, Value: n})
}
