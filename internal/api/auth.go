package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Failed authentications are limited per client address with a budget of
// their own, whether or not RATE_LIMIT_RPS is set: an address that has
// failed authBurst times in a row must wait a second per further attempt,
// so guessing a token costs time. The budget applies to wrong tokens only:
// the right token is always let in, so that other clients' failures behind
// the same address (a NAT, a proxy not in TRUSTED_PROXIES) never lock a
// client out.
const (
	authFailureRPS   = 1
	authFailureBurst = 10
)

// MinTokenBytes is the shortest token API_TOKEN and API_READ_TOKEN accept:
// with the failure budget, a token of 16 random characters cannot be
// guessed in any useful time.
const MinTokenBytes = 16

// tokens splits API_TOKEN or API_READ_TOKEN: one token, or two separated
// by a comma while a rotation is under way (the new one and the old).
func tokens(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// checkTokens is the rule for one of the token variables.
func checkTokens(v string) string {
	ts := tokens(v)
	if len(ts) > 2 {
		return "holds more than two tokens: one, or the new and the old one while rotating"
	}
	for _, t := range ts {
		if len(t) < MinTokenBytes {
			return fmt.Sprintf("a token must be at least %d characters (a random one: openssl rand -hex 32)", MinTokenBytes)
		}
		for i := 0; i < len(t); i++ {
			if t[i] <= ' ' || t[i] >= 0x7f {
				return "a token must be visible ASCII, without spaces"
			}
		}
	}
	return ""
}

// tokenSums are tokens' SHA-256 sums: comparing sums of a fixed length in
// constant time tells nothing of a token's length either.
func tokenSums(v string) [][sha256.Size]byte {
	var out [][sha256.Size]byte
	for _, t := range tokens(v) {
		out = append(out, sha256.Sum256([]byte(t)))
	}
	return out
}

// matches reports whether sum is one of sums, looking at every one of
// them in constant time.
func matches(sum [sha256.Size]byte, sums [][sha256.Size]byte) bool {
	ok := 0
	for _, s := range sums {
		ok |= subtle.ConstantTimeCompare(sum[:], s[:])
	}
	return ok == 1
}

// bearer takes the token of an Authorization header: its scheme is
// case-insensitive, as RFC 9110 (section 11.1) says.
func bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimLeft(token, " "), true
}

// auth requires "Authorization: Bearer <token>" when API_TOKEN is set: a
// full token may do anything, a read token only read (403 otherwise). The
// token is compared first, in constant time: the right one passes whatever
// its address's failures; a wrong or missing one is answered 429 while its
// address is over its budget of failures, and 401 otherwise.
func (h *handler) auth(failures *clientLimiter) gin.HandlerFunc {
	if h.cfg.APIToken == "" {
		return func(c *gin.Context) { c.Next() }
	}
	full, read := tokenSums(h.cfg.APIToken), tokenSums(h.cfg.APIReadToken)
	return func(c *gin.Context) {
		got, ok := bearer(c.GetHeader("Authorization"))
		sum := sha256.Sum256([]byte(got))
		switch {
		case ok && matches(sum, full):
			c.Next()
			return
		case ok && matches(sum, read):
			if !IsRead(c.Request.Method, c.FullPath()) {
				h.respond(c, &Error{Code: CodeForbidden, Message: "this token may only read"})
				return
			}
			c.Next()
			return
		}
		client, now := c.ClientIP(), time.Now()
		if wait := failures.wait(client, now); wait > 0 {
			h.refuse(c, wait, "too many failed authentications from this address; retry after the time in Retry-After")
			return
		}
		failures.take(client, now)
		h.respond(c, &Error{Code: CodeUnauthorized, Message: "missing or wrong bearer token"})
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
	return method == http.MethodGet || method == http.MethodHead
}
