package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
	"go.uber.org/zap/zapcore"
)

// The error codes of the API: a contract with clients, the docs and the
// dashboards. Each has one HTTP status, in statusOf.
const (
	CodeInvalidArgument      = "invalid_argument"
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeRateLimited          = "rate_limited"
	CodeHeadersTooLarge      = "headers_too_large"
	CodeURITooLong           = "uri_too_long"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeNotAcceptable        = "not_acceptable"
	CodeNotSupported         = "not_supported"
	CodeCrossSlot            = "cross_slot"
	CodeWrongType            = "wrong_type"
	CodeNotInteger           = "not_integer"
	CodeTooManyItems         = "too_many_items"
	CodePayloadTooLarge      = "payload_too_large"
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	CodeInsufficientStorage  = "insufficient_storage"
	CodeUnavailable          = "unavailable"
	CodeOverloaded           = "overloaded"
	CodeTimeout              = "timeout"
	CodeDurabilityUnknown    = "durability_unknown"
	CodePreconditionFailed   = "precondition_failed"
	CodeClientClosedRequest  = "client_closed_request"
	CodeInternal             = "internal"
)

// StatusClientClosedRequest is nginx's status for a request whose client
// hung up before it was answered. No client ever reads it: it is what the
// access log and dubebox_http_requests_total record, so that a client
// leaving is told apart from a failure of the service.
const StatusClientClosedRequest = 499

var statusOf = map[string]int{
	CodeInvalidArgument:      http.StatusBadRequest,
	CodeUnauthorized:         http.StatusUnauthorized,
	CodeForbidden:            http.StatusForbidden,
	CodeRateLimited:          http.StatusTooManyRequests,
	CodeHeadersTooLarge:      http.StatusRequestHeaderFieldsTooLarge,
	CodeURITooLong:           http.StatusRequestURITooLong,
	CodeNotFound:             http.StatusNotFound,
	CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	CodeNotAcceptable:        http.StatusNotAcceptable,
	CodeNotSupported:         http.StatusNotImplemented,
	CodeCrossSlot:            http.StatusBadRequest,
	CodeWrongType:            http.StatusConflict,
	CodeNotInteger:           http.StatusConflict,
	CodeTooManyItems:         http.StatusConflict,
	CodePayloadTooLarge:      http.StatusRequestEntityTooLarge,
	CodeIdempotencyKeyReused: http.StatusUnprocessableEntity,
	CodeInsufficientStorage:  http.StatusInsufficientStorage,
	CodeUnavailable:          http.StatusServiceUnavailable,
	CodeOverloaded:           http.StatusServiceUnavailable,
	CodeTimeout:              http.StatusGatewayTimeout,
	CodeDurabilityUnknown:    http.StatusGatewayTimeout,
	CodePreconditionFailed:   http.StatusPreconditionFailed,
	CodeClientClosedRequest:  StatusClientClosedRequest,
	CodeInternal:             http.StatusInternalServerError,
}

// Error is an error the API answers as it is: its code picks the status, its
// message is shown to the client. Validation failures are made as Errors;
// store errors are turned into Errors by toAPIError.
type Error struct {
	Code    string
	Message string
	// Cause, when set, is the failure underneath: it is logged with the
	// request, never shown to the client.
	Cause error
	// Index, when set, is the operation of a transaction the error is
	// about.
	Index *int
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Message + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

func invalid(msg string) *Error  { return &Error{Code: CodeInvalidArgument, Message: msg} }
func tooLarge(msg string) *Error { return &Error{Code: CodePayloadTooLarge, Message: msg} }

// storeErrors maps the store's sentinels to what the client is told. The
// messages say what happened without internals (addresses, Redis replies).
var storeErrors = []struct {
	err error
	api Error
}{
	{store.ErrNotFound, Error{Code: CodeNotFound, Message: "the key, or the hash field, does not exist"}},
	{store.ErrWrongType, Error{Code: CodeWrongType, Message: "the key holds another type: use the /v1/kv routes for strings, /v1/hash for hashes, /v1/list for lists and /v1/keys for any key"}},
	{store.ErrNotInteger, Error{Code: CodeNotInteger, Message: "the value is not an integer, or the increment would overflow a 64-bit integer"}},
	{store.ErrTooManyItems, Error{Code: CodeTooManyItems, Message: "the write would take the hash past MAX_HASH_FIELDS fields, or the list past MAX_LIST_LENGTH values: nothing was written"}},
	{store.ErrIdempotencyKeyReused, Error{Code: CodeIdempotencyKeyReused, Message: "this Idempotency-Key was used for another write of this key (other arguments): nothing was written; use a new key for a new write"}},
	{store.ErrNoIdempotencyRecord, Error{Code: CodeInvalidArgument, Message: "Idempotency-Key cannot be used on a key that holds '}' without a hash tag ({...}): nothing was written"}},
	{store.ErrInsufficientStorage, Error{Code: CodeInsufficientStorage, Message: "the store is full and refuses writes; reads still work"}},
	{store.ErrTimeout, Error{Code: CodeTimeout, Message: "the store did not answer in time; a write may still have been applied: read before retrying it, or retry it with the same Idempotency-Key"}},
	{store.ErrNotDurable, Error{Code: CodeDurabilityUnknown, Message: "the write is applied on the primary, but fewer replicas than REDIS_WAIT_REPLICAS acknowledged it in time: it may be lost if the primary fails now"}},
	{store.ErrPreconditionFailed, Error{Code: CodePreconditionFailed, Message: "the key (or field) is not as If-Match or If-None-Match requires: nothing was written; read it again and retry"}},
	{store.ErrCanceled, Error{Code: CodeClientClosedRequest, Message: "the client closed the request before it was answered; a write may still have been applied"}},
	{store.ErrNotSupported, Error{Code: CodeNotSupported, Message: "key watches need one Redis server or Sentinel; on a Redis Cluster, publish changes to a channel and subscribe to it instead"}},
	{store.ErrCrossSlot, Error{Code: CodeCrossSlot, Message: "the keys map to more than one Redis Cluster slot: give them one hash tag, as {user:1}:cart and {user:1}:total"}},
	{store.ErrUnavailable, Error{Code: CodeUnavailable, Message: "the store is unavailable; retry shortly"}},
}

// errorBody is the one shape of every error response.
type errorBody struct {
	Error     errorDetail `json:"error"`
	RequestID string      `json:"request_id"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Index   *int   `json:"index,omitempty"`
}

// handlerFunc is a route handler that returns its failure instead of
// answering it: handle turns it into a Gin handler that answers the error
// through respond, so that every failure takes the one path below.
type handlerFunc func(c *gin.Context) error

func (h *handler) handle(fn handlerFunc) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := fn(c); err != nil {
			h.respond(c, err)
		}
	}
}

// respond is the one place where an error becomes an HTTP response. API
// errors are answered as they are; store errors by their sentinel; anything
// else, and an API error whose code has no status, is answered as a bare
// 500. A request whose client hung up is recorded as 499, whatever error
// that left behind. Failures that are not the client's doing (500, 503,
// 504, 507) are noted with their cause for the request's one log line
// (see accessLog), at warn (error for a 500); errors the API made itself
// (validation, auth) need no more than the status on that line.
func (h *handler) respond(c *gin.Context, err error) {
	if errors.Is(c.Request.Context().Err(), context.Canceled) {
		err = store.ErrCanceled
	}
	apiErr, status := toAPIError(err)
	var made *Error
	if !errors.As(err, &made) || made.Cause != nil || status == http.StatusInternalServerError {
		switch status {
		case http.StatusInternalServerError:
			c.Set(failureKey, &failure{err: err, level: zapcore.ErrorLevel})
		case http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusInsufficientStorage:
			c.Set(failureKey, &failure{err: err, level: zapcore.WarnLevel})
		}
	}
	h.answer(c, apiErr)
}

// answer writes an API error in the one error shape, with the headers its
// status calls for, and stops the handlers after this one.
func (h *handler) answer(c *gin.Context, apiErr Error) {
	// The headers a handler set for the answer it meant to give describe
	// an entity this answer does not carry.
	for _, name := range entityHeaders {
		c.Writer.Header().Del(name)
	}
	status := statusOf[apiErr.Code]
	switch status {
	case http.StatusServiceUnavailable:
		if c.Writer.Header().Get("Retry-After") == "" {
			c.Header("Retry-After", "1")
		}
	case http.StatusUnauthorized:
		c.Header("WWW-Authenticate", `Bearer realm="dubebox"`)
	}
	c.Abort()
	h.reply(c, status, errorBody{
		Error:     errorDetail{Code: apiErr.Code, Message: apiErr.Message, Index: apiErr.Index},
		RequestID: requestID(c),
	})
}

// entityHeaders are the headers of a value's answer, never of an error.
var entityHeaders = []string{"ETag", "X-Cache", "Idempotent-Replayed", "X-TTL-Seconds"}

// toAPIError maps any error to what the client is told and its status. A
// code missing from statusOf is a bug; it is answered as internal (500)
// rather than with Gin's default of 200.
func toAPIError(err error) (Error, int) {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		if status, ok := statusOf[apiErr.Code]; ok {
			return *apiErr, status
		}
		return Error{Code: CodeInternal, Message: internalMessage}, http.StatusInternalServerError
	}
	for _, se := range storeErrors {
		if errors.Is(err, se.err) {
			return se.api, statusOf[se.api.Code]
		}
	}
	return Error{Code: CodeInternal, Message: internalMessage}, http.StatusInternalServerError
}

const internalMessage = "internal error; quote the request_id when reporting it"

// reason names why Redis failed in words fit for a probe's answer; the full
// error goes to the log.
func reason(err error) string {
	if store.IsAuthError(err) {
		return "redis refused the credentials (REDIS_USERNAME, REDIS_PASSWORD)"
	}
	switch {
	case errors.Is(err, store.ErrTimeout):
		return "redis did not answer PING in time"
	case errors.Is(err, store.ErrUnavailable):
		return "redis is unreachable or refused the connection"
	default:
		return "redis answered PING with an error"
	}
}
