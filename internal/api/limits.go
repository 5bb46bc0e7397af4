package api

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// headerLimit refuses requests whose header names and values add up to more
// than maxBytes, with the API's error shape. net/http's own MaxHeaderBytes
// stays as a hard cap far above it, since its refusal is plain text.
func (h *handler) headerLimit(maxBytes int) gin.HandlerFunc {
	return func(c *gin.Context) {
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
	rps     rate.Limit
	burst   int
	refused prometheus.Counter

	mu      sync.Mutex
	clients map[string]*bucket
	calls   int
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

const idleAfter = time.Minute

func newClientLimiter(rps float64, burst int, refused prometheus.Counter) *clientLimiter {
	return &clientLimiter{rps: rate.Limit(rps), burst: burst, refused: refused, clients: map[string]*bucket{}}
}

// allow takes a token for client, or says how long until one is free.
func (l *clientLimiter) allow(client string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
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
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// rateLimit answers 429 with Retry-After once a client address exceeds
// RATE_LIMIT_RPS (with bursts of RATE_LIMIT_BURST), and counts it.
func (h *handler) rateLimit(l *clientLimiter) gin.HandlerFunc {
	return func(c *gin.Context) {
		ok, wait := l.allow(c.ClientIP(), time.Now())
		if !ok {
			l.refused.Inc()
			c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			h.respond(c, &Error{Code: CodeRateLimited, Message: "too many requests from this address; retry after the time in Retry-After"})
			return
		}
		c.Next()
	}
}
