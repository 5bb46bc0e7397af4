package api

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
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

// The page sizes of reads: how many items a page holds without ?limit=,
// and at most.
const (
	defaultPage = 100
	maxPage     = 1000
)

// queryInt reads an optional whole-number query parameter within lo..hi.
func queryInt(c *gin.Context, name string, def, lo, hi int64) (int64, error) {
	raw, ok := c.GetQuery(name)
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, invalid(fmt.Sprintf("%s must be a whole number from %d to %d", name, lo, hi))
	}
	return n, nil
}

// IdempotencyKeyHeader names the header that makes a non-idempotent write
// (an increment, a push, a pop) apply once however often it is retried.
const IdempotencyKeyHeader = "Idempotency-Key"

// maxIdempotencyKey bounds an Idempotency-Key: room for a UUID or any
// client's own scheme, as Stripe allows.
const maxIdempotencyKey = 255

// once reads a write's Idempotency-Key: 1 to 255 visible ASCII characters,
// or none.
func once(c *gin.Context) (store.Once, error) {
	vs := c.Request.Header.Values(IdempotencyKeyHeader)
	switch {
	case len(vs) == 0:
		return store.Once{}, nil
	case len(vs) > 1:
		return store.Once{}, invalid("send one Idempotency-Key")
	}
	k := vs[0]
	ok := k != "" && len(k) <= maxIdempotencyKey
	for i := 0; ok && i < len(k); i++ {
		ok = k[i] > ' ' && k[i] < 0x7f
	}
	if !ok {
		return store.Once{}, invalid(fmt.Sprintf("Idempotency-Key must be 1 to %d visible ASCII characters", maxIdempotencyKey))
	}
	return store.Once{Key: k}, nil
}

// replayed marks an answer that an Idempotency-Key gave again, from the
// write that first used it.
func replayed(c *gin.Context, again bool) {
	if again {
		c.Header("Idempotent-Replayed", "true")
	}
}

// refuseUnknownQuery answers 400 to a request with a query parameter its
// route does not take (a misspelt ?limt=5 would otherwise be ignored and
// the default used), naming it and those the route takes. taken maps
// "METHOD /route" to its parameters, from the document (queryParams); HEAD
// takes what GET takes.
func (h *handler) refuseUnknownQuery(taken map[string][]string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.URL.RawQuery == "" {
			c.Next()
			return
		}
		method := c.Request.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		names := taken[method+" "+strings.ReplaceAll(c.FullPath(), `\:`, ":")]
		query, err := url.ParseQuery(c.Request.URL.RawQuery)
		if err != nil {
			h.respond(c, invalid("the query string is not valid: "+plain(err)))
			return
		}
		for _, name := range slices.Sorted(maps.Keys(query)) {
			if !slices.Contains(names, name) {
				msg := fmt.Sprintf("unknown query parameter %q: this route takes none", name)
				if len(names) > 0 {
					msg = fmt.Sprintf("unknown query parameter %q: this route takes %s", name, strings.Join(names, ", "))
				}
				h.respond(c, invalid(msg))
				return
			}
		}
		c.Next()
	}
}
