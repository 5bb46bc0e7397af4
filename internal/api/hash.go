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

func (h *handler) putHash(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	var req putHashRequest
	if err := h.decode(c, &req, false); err != nil {
		return err
	}
	if len(req.Fields) == 0 {
		return invalid("fields is required and must hold at least one field")
	}
	for f, v := range req.Fields {
		if err := checkName("field", f, h.cfg.MaxKeyBytes); err != nil {
			return err
		}
		if err := h.checkValue(v); err != nil {
			return err
		}
	}
	ttl, err := ttlFromSeconds(req.TTLSeconds)
	if err != nil {
		return err
	}
	hash, err := h.store.HSet(c.Request.Context(), key, req.Fields, ttl)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, hashResponse{Key: key, Fields: hash.Fields, TTLSeconds: ttlSeconds(hash.TTL)})
	return nil
}

func (h *handler) getHash(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	hash, err := h.store.HGetAll(c.Request.Context(), key)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, hashResponse{Key: key, Fields: hash.Fields, TTLSeconds: ttlSeconds(hash.TTL)})
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
	tag := etag(v)
	c.Header("ETag", tag)
	if notModified(c, tag) {
		c.Status(http.StatusNotModified)
		return nil
	}
	c.JSON(http.StatusOK, fieldResponse{Key: key, Field: field, Value: v})
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
	cond, err := condition(c)
	if err != nil {
		return err
	}
	if cond != nil {
		err = h.store.HSetFieldIf(c.Request.Context(), key, field, value, *cond)
	} else {
		err = h.store.HSetField(c.Request.Context(), key, field, value)
	}
	if err != nil {
		return err
	}
	c.Header("ETag", etag(value))
	c.JSON(http.StatusOK, fieldResponse{Key: key, Field: field, Value: value})
	return nil
}

func (h *handler) deleteField(c *gin.Context) error {
	key, field, err := h.keyField(c)
	if err != nil {
		return err
	}
	cond, err := condition(c)
	if err != nil {
		return err
	}
	if cond != nil {
		err = h.store.HDelFieldIf(c.Request.Context(), key, field, *cond)
	} else {
		err = h.store.HDelField(c.Request.Context(), key, field)
	}
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
	n, err := h.store.HIncr(c.Request.Context(), key, field, by)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, intResponse{Key: key, Field: field, Value: n})
	return nil
}
