package api

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Failed authentications are limited per client address with a budget of
// their own, whether or not RATE_LIMIT_RPS is set: an address that has
// failed authBurst times in a row must wait a second per further attempt,
// so guessing a token costs time. A client with the right token is only
// held back while its address is over that budget.
const (
	authFailureRPS   = 1
	authFailureBurst = 10
)

// auth requires "Authorization: Bearer <token>" when API_TOKEN is set: the
// full token may do anything, API_READ_TOKEN's only read (403 otherwise).
// Tokens are compared in constant time so they cannot be guessed by timing,
// and an address over its budget of failures is answered 429 before its
// token is even compared, so it cannot be guessed by volume either.
func (h *handler) auth(failures *clientLimiter) gin.HandlerFunc {
	if h.cfg.APIToken == "" {
		return func(c *gin.Context) { c.Next() }
	}
	full, read := []byte(h.cfg.APIToken), []byte(h.cfg.APIReadToken)
	return func(c *gin.Context) {
		client, now := c.ClientIP(), time.Now()
		if wait := failures.wait(client, now); wait > 0 {
			h.refuse(c, wait, "too many failed authentications from this address; retry after the time in Retry-After")
			return
		}
		got, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		switch {
		case ok && subtle.ConstantTimeCompare([]byte(got), full) == 1:
			c.Next()
		case ok && len(read) > 0 && subtle.ConstantTimeCompare([]byte(got), read) == 1:
			if !IsRead(c.Request.Method, c.FullPath()) {
				h.respond(c, &Error{Code: CodeForbidden, Message: "this token may only read"})
				return
			}
			c.Next()
		default:
			failures.take(client, now)
			h.respond(c, &Error{Code: CodeUnauthorized, Message: "missing or wrong bearer token"})
		}
	}
}

// IsRead reports whether a route only reads, which the read token may
// call: every GET but the tutorial's /set, which writes through a GET, and
// the batch read, a POST.
func IsRead(method, route string) bool {
	switch {
	case route == batchGetPath:
		return true
	case strings.HasPrefix(route, "/set/"):
		return false
	}
	return method == http.MethodGet
}
