package store

import (
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Tune sets the client options the store's promises rest on; run and the
// tests both build their clients through it. timeout is REDIS_TIMEOUT.
func Tune(o *redis.UniversalOptions, timeout time.Duration) *redis.UniversalOptions {
	o.DialTimeout = timeout
	o.ReadTimeout = timeout
	o.WriteTimeout = timeout
	if o.PoolTimeout == 0 {
		o.PoolTimeout = timeout
	}
	// Honour the per-call deadline the store sets, so a stalled Redis costs
	// a request REDIS_TIMEOUT and no more.
	o.ContextTimeoutEnabled = true
	// A dead Redis is answered 503 at once: retrying the command or the dial
	// inside the client would only turn that into a 504 at the deadline.
	// Broken pooled connections are still detected and replaced on checkout.
	o.MaxRetries = -1
	o.DialerRetries = 1
	// One pool: REDIS_POOL_SIZE is then the real bound on connections,
	// pipelines included.
	o.PipelinePoolSize = -1
	// RESP2: the store needs no push notifications, and under RESP3 go-redis
	// checks the socket for pending pushes around every command, which
	// costs a system call and about 5% of the CPU of a GET (bench/results.md).
	o.Protocol = 2
	// CLIENT SETINFO and CLIENT MAINT_NOTIFICATIONS cost a round trip per new
	// connection, and Redis 7.0 refuses both.
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return o
}
