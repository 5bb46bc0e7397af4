package api

import (
	"errors"
	"net/http"
	"unicode/utf8"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
)

// The original Flask tutorial's routes keep their JSON shapes.

type seedSetResponse struct {
	Message string `json:"message"`
}

type seedGetResponse struct {
	Key   string  `json:"key"`
	Value *string `json:"value"`
}

func (h *handler) seedSet(c *gin.Context) error {
	key, err := h.key(c)
	if err != nil {
		return err
	}
	value, err := param(c, "value")
	if err != nil {
		return err
	}
	if !utf8.ValidString(value) {
		return invalid("value is not valid UTF-8")
	}
	if err := h.checkValue(value); err != nil {
		return err
	}
	ttl, err := ttlFromQuery(c)
	if err != nil {
		return err
	}
	if err := h.store.Set(c.Request.Context(), key, value, "", ttl); err != nil {
		return err
	}
	h.reply(c, http.StatusOK, seedSetResponse{Message: "Stored " + key + " → " + value + " in Redis"})
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
		h.reply(c, http.StatusOK, seedGetResponse{Key: key})
	case err != nil:
		return err
	default:
		done, err := readConditions(c, quoted(s.Tag()))
		if err != nil {
			return err
		}
		source(c, s)
		if done {
			return nil
		}
		if err := jsonable(s.Value); err != nil {
			return err
		}
		h.reply(c, http.StatusOK, seedGetResponse{Key: key, Value: &s.Value})
	}
	return nil
}
