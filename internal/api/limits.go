package api

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// MaxURLBytes bounds a request's target (its path and query): past it,
// 414 uri_too_long. The longest key a route takes (MAX_KEY_BYTES, at most
// three bytes escaped per byte) fits in its default.
const MaxURLBytes = 8 << 10

// headerLimit refuses requests whose target is longer than MaxURLBytes, or
// whose header names and values add up to more than maxBytes, with the
// API's error shape. net/http's own limit is set to Config.HeaderCap, a
// little above maxBytes, since its refusal (put in JSON by
// ServerErrorsAsJSON) cannot say which limit was met.
func (h *handler) headerLimit(maxBytes int) gin.HandlerFunc {
	return func(c *gin.Context) {
		if len(c.Request.RequestURI) > MaxURLBytes {
			h.respond(c, &Error{Code: CodeURITooLong, Message: fmt.Sprintf("the request's path and query are longer than %d bytes", MaxURLBytes)})
			return
		}
		n := 0
		for k, vs := range c.Request.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4
			}
		}
		if n > maxBytes {
			h.respond(c, &Error{Code: CodeHeadersTooLarge, Message: fmt.Sprintf("request headers are larger than %d bytes", maxBytes)})
			return
		}
		c.Next()
	}
}

// clientLimiter is a token bucket per client address (x/time/rate), with
// buckets idle for longer than idleAfter forgotten so that a scan from many
// addresses cannot grow memory without bound.
type clientLimiter struct {
	rps   rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*bucket
	calls   int
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

const idleAfter = time.Minute

func newClientLimiter(rps float64, burst int) *clientLimiter {
	return &clientLimiter{rps: rate.Limit(rps), burst: burst, clients: map[string]*bucket{}}
}

// bucket returns client's bucket, made full when new. l.mu must be held.
func (l *clientLimiter) bucket(client string, now time.Time) *rate.Limiter {
	l.calls++
	if l.calls%4096 == 0 {
		for k, b := range l.clients {
			if now.Sub(b.seen) > idleAfter {
				delete(l.clients, k)
			}
		}
	}
	b, ok := l.clients[client]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.rps, l.burst)}
		l.clients[client] = b
	}
	b.seen = now
	return b.lim
}

// allow takes a token for client, or says how long until one is free.
func (l *clientLimiter) allow(client string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.bucket(client, now).ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// wait says how long until client has a token, without taking one: 0 when
// it has one now.
func (l *clientLimiter) wait(client string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.clients[client]; !ok {
		return 0
	}
	lim := l.bucket(client, now)
	if tokens := lim.TokensAt(now); tokens < 1 {
		return time.Duration((1 - tokens) / float64(l.rps) * float64(time.Second))
	}
	return 0
}

// take spends one of client's tokens (it may go below zero).
func (l *clientLimiter) take(client string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bucket(client, now).AllowN(now, 1)
}

// rateLimit answers 429 with Retry-After once a client address exceeds
// RATE_LIMIT_RPS (with bursts of RATE_LIMIT_BURST), and counts it.
func (h *handler) rateLimit(l *clientLimiter) gin.HandlerFunc {
	return func(c *gin.Context) {
		if ok, wait := l.allow(c.ClientIP(), time.Now()); !ok {
			h.refuse(c, wait, "too many requests from this address; retry after the time in Retry-After")
			return
		}
		c.Next()
	}
}

// refuse answers 429 with a Retry-After of wait, rounded up to a second,
// and counts it in dubebox_http_rate_limited_total.
func (h *handler) refuse(c *gin.Context, wait time.Duration, msg string) {
	h.metrics.RateLimited()
	c.Header("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	h.respond(c, &Error{Code: CodeRateLimited, Message: msg})
}

// inflight refuses a data request at once, with 503 overloaded and
// Retry-After, while limit others are being served: before its body is
// read, so that what requests hold in memory is bounded by limit times
// one request's body and answer.
func (h *handler) inflight(limit int) gin.HandlerFunc {
	return h.atMost(limit, fmt.Sprintf("the service is serving %d requests, its bound (MAX_INFLIGHT_REQUESTS); retry after the time in Retry-After", limit))
}

// streamLimit refuses a stream with 503 overloaded while limit are open.
func (h *handler) streamLimit(limit int) gin.HandlerFunc {
	return h.atMost(limit, fmt.Sprintf("the service holds %d streams, its bound (MAX_SSE_STREAMS); retry after the time in Retry-After", limit))
}

// atMost lets limit requests through at once and refuses the others with
// 503 overloaded and msg.
func (h *handler) atMost(limit int, msg string) gin.HandlerFunc {
	var n atomic.Int64
	return func(c *gin.Context) {
		if n.Add(1) > int64(limit) {
			n.Add(-1)
			h.respond(c, &Error{Code: CodeOverloaded, Message: msg})
			return
		}
		defer n.Add(-1)
		c.Next()
	}
}
