package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
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
// bytes of valid UTF-8, no control characters, no slash and not . or .. (a
// key is one path segment; an encoded slash would otherwise be ambiguous).
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
	case s == "." || s == "..":
		return invalid(what + " must not be . or .. (proxies and clients rewrite such path segments)")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return invalid(what + " must not contain control characters")
	}
	return nil
}

// param is the path parameter name, unescaped as a path segment: %XX
// sequences are decoded and '+' stays '+'. The router matches the escaped
// path (URL.RawPath) when the request has one, so that an encoded slash
// stays inside its segment, and then the value is still escaped; without
// one (net/http leaves RawPath empty when the path is escaped the default
// way) the value comes from the decoded path and is used as it is.
func param(c *gin.Context, name string) (string, error) {
	v := c.Param(name)
	if c.Request.URL.RawPath == "" {
		return v, nil
	}
	v, err := url.PathUnescape(v)
	if err != nil {
		return "", invalid(name + " is not a valid percent-encoded path segment")
	}
	return v, nil
}

func (h *handler) key(c *gin.Context) (string, error) {
	k, err := param(c, "key")
	if err != nil {
		return "", err
	}
	return k, checkName("key", k, h.cfg.MaxKeyBytes)
}

func (h *handler) keyField(c *gin.Context) (string, string, error) {
	k, err := h.key(c)
	if err != nil {
		return "", "", err
	}
	f, err := param(c, "field")
	if err != nil {
		return "", "", err
	}
	return k, f, checkName("field", f, h.cfg.MaxKeyBytes)
}

func (h *handler) checkValue(v string) error {
	if len(v) > h.cfg.MaxValueBytes {
		return tooLarge(fmt.Sprintf("value is longer than %d bytes", h.cfg.MaxValueBytes))
	}
	return nil
}

// requiredValue checks a body's "value": present, a string, within
// MAX_VALUE_BYTES.
func (h *handler) requiredValue(v *string) (string, error) {
	if v == nil {
		return "", invalid("value is required and must be a string")
	}
	return *v, h.checkValue(*v)
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

// ttlFromQuery reads the optional ?ttl=<seconds> of the tutorial's /set.
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

// maxJSONDepth bounds the nesting of a request body: the API's bodies nest
// two levels, and a deeply nested one is an attack on the parser.
const maxJSONDepth = 8

// decode reads the JSON object in the request body into dst: bodies over
// the limit (never read past it), duplicate keys, nesting past maxJSONDepth,
// unknown fields and data after the object are refused. With optional, an
// empty body leaves dst as it is.
func (h *handler) decode(c *gin.Context, dst any, optional bool) error {
	if c.Request.ContentLength > h.maxBody {
		return tooLarge(fmt.Sprintf("request body is larger than %d bytes", h.maxBody))
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, h.maxBody))
	if err != nil {
		return decodeError(err, h.maxBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return invalid("request body is empty; want a JSON object")
	}
	if !utf8.Valid(body) {
		// encoding/json would quietly turn the bad bytes into U+FFFD.
		return invalid("request body is not valid UTF-8")
	}
	if err := checkStructure(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err, h.maxBody)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("request body has data after the JSON object")
	}
	return nil
}

// checkStructure walks the first JSON value of body and refuses duplicate
// keys in an object (encoding/json would silently keep the last) and
// nesting deeper than maxJSONDepth.
func checkStructure(body []byte) error {
	type frame struct {
		object  bool
		keys    map[string]bool
		wantKey bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return decodeError(err, 0)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if len(stack) == maxJSONDepth {
					return invalid(fmt.Sprintf("request body nests deeper than %d levels", maxJSONDepth))
				}
				stack = append(stack, &frame{object: t == '{', keys: map[string]bool{}, wantKey: t == '{'})
				continue
			default:
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return nil
				}
				top = stack[len(stack)-1]
			}
		case string:
			if top != nil && top.object && top.wantKey {
				if top.keys[t] {
					return invalid(fmt.Sprintf("request body repeats the key %q", t))
				}
				top.keys[t] = true
				top.wantKey = false
				continue
			}
		}
		if top == nil {
			return nil // a bare scalar: Decode reports it as not an object
		}
		if top.object {
			top.wantKey = true
		}
	}
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
