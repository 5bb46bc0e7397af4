package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
)

// MaxTTLSeconds is the longest TTL accepted: about 68 years, far below the
// point where Redis's millisecond expiry would overflow.
const MaxTTLSeconds = math.MaxInt32

// checkName validates a key or a hash field name: not empty, at most max
// bytes of valid UTF-8, no control characters and no slash (a key is one
// path segment; an encoded slash would otherwise be ambiguous).
func checkName(what, s string, maxBytes int) error {
	switch {
	case s == "":
		return invalid(what + " must not be empty")
	case len(s) > maxBytes:
		return invalid(fmt.Sprintf("%s is longer than %d bytes", what, maxBytes))
	case !utf8.ValidString(s):
		return invalid(what + " is not valid UTF-8")
	case strings.ContainsRune(s, '/'):
		return invalid(what + " must not contain '/'")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return invalid(what + " must not contain control characters")
	}
	return nil
}

func (h *handler) key(c *gin.Context) (string, error) {
	k := c.Param("key")
	return k, checkName("key", k, h.cfg.MaxKeyBytes)
}

func (h *handler) keyField(c *gin.Context) (string, string, error) {
	k, err := h.key(c)
	if err != nil {
		return "", "", err
	}
	f := c.Param("field")
	return k, f, checkName("field", f, h.cfg.MaxKeyBytes)
}

func (h *handler) checkValue(v string) error {
	if len(v) > h.cfg.MaxValueBytes {
		return tooLarge(fmt.Sprintf("value is longer than %d bytes", h.cfg.MaxValueBytes))
	}
	return nil
}

// ttlFromSeconds validates a TTL given in seconds. A nil pointer (the field
// was left out) means no TTL.
func ttlFromSeconds(s *int64) (time.Duration, error) {
	if s == nil {
		return 0, nil
	}
	if *s <= 0 || *s > MaxTTLSeconds {
		return 0, invalid(fmt.Sprintf("ttl_seconds must be a whole number from 1 to %d", MaxTTLSeconds))
	}
	return time.Duration(*s) * time.Second, nil
}

// ttlFromQuery reads the seed route's optional ?ttl=<seconds>.
func ttlFromQuery(c *gin.Context) (time.Duration, error) {
	raw, ok := c.GetQuery("ttl")
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n <= 0 || n > MaxTTLSeconds {
		return 0, invalid(fmt.Sprintf("ttl must be a whole number of seconds from 1 to %d", MaxTTLSeconds))
	}
	return time.Duration(n) * time.Second, nil
}

// ttlSeconds is the API's TTL: -1 for no expiry, else whole seconds rounded
// up, so that a key about to expire never shows 0 (which would read as
// "expired").
func ttlSeconds(d time.Duration) int64 {
	if d == store.NoExpiry {
		return -1
	}
	return int64((d + time.Second - 1) / time.Second)
}

// decode reads the JSON object in the request body into dst: unknown fields,
// a second value after the object and bodies over the limit are refused, and
// the body is never read past the limit. With optional, an empty body leaves
// dst as it is.
func (h *handler) decode(c *gin.Context, dst any, optional bool) error {
	if c.Request.ContentLength > h.maxBody {
		return tooLarge(fmt.Sprintf("request body is larger than %d bytes", h.maxBody))
	}
	body := http.MaxBytesReader(c.Writer, c.Request.Body, h.maxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		if optional && errors.Is(err, io.EOF) {
			return nil
		}
		return decodeError(err, h.maxBody)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return decodeError(err, h.maxBody)
		}
		return invalid("request body has data after the JSON object")
	}
	return nil
}

func decodeError(err error, limit int64) error {
	var (
		mbe    *http.MaxBytesError
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return tooLarge(fmt.Sprintf("request body is larger than %d bytes", limit))
	case errors.Is(err, io.EOF):
		return invalid("request body is empty; want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("request body is not valid JSON: it ends too early")
	case errors.As(err, &syntax):
		return invalid(fmt.Sprintf("request body is not valid JSON (at byte %d)", syntax.Offset))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return invalid("request body must be a JSON object")
		}
		return invalid(fmt.Sprintf("%s must be %s", typ.Field, jsonKind(typ.Type.Kind().String())))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return invalid("request body has an unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return invalid("request body is not a valid JSON object")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int64", "int":
		return "a whole number"
	case "string":
		return "a string"
	case "map":
		return "an object of strings"
	}
	return "of another type"
}
