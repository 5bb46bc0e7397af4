package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The store's sentinel errors. Every error it returns wraps exactly one of
// them (or is an unexpected internal error), so the HTTP layer can map them to
// a status without knowing anything about Redis.
var (
	// ErrNotFound means the key, or the hash field, does not exist.
	ErrNotFound = errors.New("not found")
	// ErrWrongType means the key holds another type: a string route on a hash
	// or the reverse.
	ErrWrongType = errors.New("key holds another type")
	// ErrNotInteger means an increment met a value that is not an integer, or
	// would overflow a 64-bit integer.
	ErrNotInteger = errors.New("value is not an integer or would overflow")
	// ErrUnavailable means Redis could not be reached (refused, reset, loading,
	// authentication failed, or no pooled connection within the pool timeout).
	ErrUnavailable = errors.New("redis unavailable")
	// ErrTimeout means a Redis call did not finish within REDIS_TIMEOUT. A
	// write that timed out may still have been applied.
	ErrTimeout = errors.New("redis call timed out")
	// ErrCanceled means the caller gave up (its context was canceled: an
	// HTTP client that hung up) before Redis answered. A write may still
	// have been applied. It says nothing about Redis's health.
	ErrCanceled = errors.New("canceled by the caller")
	// ErrTooManyItems means a write would take a hash past MAX_HASH_FIELDS
	// fields, or a list past MAX_LIST_LENGTH values; nothing was written.
	ErrTooManyItems = errors.New("the write would take the key past its bound on items")
	// ErrInsufficientStorage means Redis refused a write because it reached
	// maxmemory under the noeviction policy.
	ErrInsufficientStorage = errors.New("redis is out of memory")
	// ErrNotDurable means a write was applied on the primary but fewer
	// replicas than REDIS_WAIT_REPLICAS acknowledged it within
	// REDIS_WAIT_TIMEOUT: it may be lost if the primary fails now.
	ErrNotDurable = errors.New("write not acknowledged by enough replicas")
)

// wrap turns a go-redis error into one of the sentinels, keeping the original
// for the logs. op names the store operation, never the key or the value.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w: %w", op, classify(err), err)
}

// classify picks the sentinel for a go-redis error. Reply errors are matched
// on Redis's stable error prefixes.
func classify(err error) error {
	var netErr net.Error
	switch {
	case errors.Is(err, ErrNotDurable):
		return ErrNotDurable
	case errors.Is(err, redis.Nil):
		return ErrNotFound
	case errors.Is(err, context.Canceled):
		// Before the timeout: a canceled call can also look like a
		// network error, as go-redis closes the connection it was on.
		return ErrCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return ErrTimeout
	case errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed):
		return ErrUnavailable
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		switch {
		case strings.HasPrefix(msg, "WRONGTYPE"):
			return ErrWrongType
		case strings.HasPrefix(msg, "OOM"):
			return ErrInsufficientStorage
		case strings.Contains(msg, "not an integer"), strings.Contains(msg, "overflow"):
			return ErrNotInteger
		case strings.HasPrefix(msg, "LOADING"), strings.HasPrefix(msg, "NOAUTH"),
			strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "MASTERDOWN"),
			strings.HasPrefix(msg, "BUSY"), strings.HasPrefix(msg, "TRYAGAIN"),
			strings.HasPrefix(msg, "CLUSTERDOWN"), strings.HasPrefix(msg, "READONLY"),
			// A slot still moving after the redirections a call follows.
			strings.HasPrefix(msg, "MOVED"), strings.HasPrefix(msg, "ASK"):
			return ErrUnavailable
		}
		return errInternal
	}
	// Anything else that is not a reply is the connection failing: refused,
	// reset, EOF or a closed pool.
	return ErrUnavailable
}

// errInternal marks a Redis reply the store did not expect. It is not
// exported: callers see it as "none of the sentinels", which the HTTP layer
// answers with 500.
var errInternal = errors.New("unexpected redis reply")

// IsAuthError reports whether Redis refused the credentials, so that the
// operator is told to check REDIS_USERNAME and REDIS_PASSWORD rather than
// that Redis is down.
func IsAuthError(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	return strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH") ||
		strings.Contains(msg, "invalid password") || strings.Contains(msg, "invalid username-password")
}
