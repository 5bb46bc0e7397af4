package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

type hashResponse struct {
	Key        string            `json:"key"`
	Fields     map[string]string `json:"fields"`
	TTLSeconds int64             `json:"ttl_seconds"`
}

type fieldResponse struct {
	Key   string `json:"key"`
	Field string `json:"field"`
	Value string `json:"value"`
}

type putHashRequest struct {
	Fields     map[string]string `json:"fields"`
	TTLSeconds *int64            `json:"ttl_seconds"`
}

func (h *handler) putHash(c *gin.Context) {
	key, err := h.key(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	var req putHashRequest
	if err := h.decode(c, &req, false); err != nil {
		h.respond(c, err)
		return
	}
	if len(req.Fields) == 0 {
		h.respond(c, invalid("fields is required and must hold at least one field"))
		return
	}
	for f, v := range req.Fields {
		if err := checkName("field", f, h.cfg.MaxKeyBytes); err != nil {
			h.respond(c, err)
			return
		}
		if err := h.checkValue(v); err != nil {
			h.respond(c, err)
			return
		}
	}
	ttl, err := ttlFromSeconds(req.TTLSeconds)
	if err != nil {
		h.respond(c, err)
		return
	}
	hash, err := h.store.HSet(c.Request.Context(), key, req.Fields, ttl)
	if err != nil {
		h.respond(c, err)
		return
	}
	c.JSON(http.StatusOK, hashResponse{Key: key, Fields: hash.Fields, TTLSeconds: ttlSeconds(hash.TTL)})
}

func (h *handler) getHash(c *gin.Context) {
	key, err := h.key(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	hash, err := h.store.HGetAll(c.Request.Context(), key)
	if err != nil {
		h.respond(c, err)
		return
	}
	c.JSON(http.StatusOK, hashResponse{Key: key, Fields: hash.Fields, TTLSeconds: ttlSeconds(hash.TTL)})
}

func (h *handler) deleteHash(c *gin.Context) {
	key, err := h.key(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	if err := h.store.HDelete(c.Request.Context(), key); err != nil {
		h.respond(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h *handler) getField(c *gin.Context) {
	key, field, err := h.keyField(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	v, err := h.store.HGet(c.Request.Context(), key, field)
	if err != nil {
		h.respond(c, err)
		return
	}
	c.JSON(http.StatusOK, fieldResponse{Key: key, Field: field, Value: v})
}

type putFieldRequest struct {
	Value *string `json:"value"`
}

func (h *handler) putField(c *gin.Context) {
	key, field, err := h.keyField(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	var req putFieldRequest
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
	if err := h.store.HSetField(c.Request.Context(), key, field, *req.Value); err != nil {
		h.respond(c, err)
		return
	}
	c.JSON(http.StatusOK, fieldResponse{Key: key, Field: field, Value: *req.Value})
}

func (h *handler) deleteField(c *gin.Context) {
	key, field, err := h.keyField(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	if err := h.store.HDelField(c.Request.Context(), key, field); err != nil {
		h.respond(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h *handler) incrField(c *gin.Context) {
	key, field, err := h.keyField(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	by, err := h.by(c)
	if err != nil {
		h.respond(c, err)
		return
	}
	n, err := h.store.HIncr(c.Request.Context(), key, field, by)
	if err != nil {
		h.respond(c, err)
		return
	}
	c.JSON(http.StatusOK, intResponse{Key: key, Field: field, Value: n})
}
