package api

import (
	"errors"
	"net/http"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/dubebox/dubebox/observability"
	"github.com/gin-gonic/gin"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The error codes of the API: a contract with clients, the docs and the
// dashboards. Each has one HTTP status, in statusOf.
const (
	CodeInvalidArgument     = "invalid_argument"
	CodeUnauthorized        = "unauthorized"
	CodeForbidden           = "forbidden"
	CodeRateLimited         = "rate_limited"
	CodeHeadersTooLarge     = "headers_too_large"
	CodeNotFound            = "not_found"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeWrongType           = "wrong_type"
	CodeNotInteger          = "not_integer"
	CodePayloadTooLarge     = "payload_too_large"
	CodeInsufficientStorage = "insufficient_storage"
	CodeUnavailable         = "unavailable"
	CodeTimeout             = "timeout"
	CodeDurabilityUnknown   = "durability_unknown"
	CodePreconditionFailed  = "precondition_failed"
	CodeInternal            = "internal"
)

var statusOf = map[string]int{
	CodeInvalidArgument:     http.StatusBadRequest,
	CodeUnauthorized:        http.StatusUnauthorized,
	CodeForbidden:           http.StatusForbidden,
	CodeRateLimited:         http.StatusTooManyRequests,
	CodeHeadersTooLarge:     http.StatusRequestHeaderFieldsTooLarge,
	CodeNotFound:            http.StatusNotFound,
	CodeMethodNotAllowed:    http.StatusMethodNotAllowed,
	CodeWrongType:           http.StatusConflict,
	CodeNotInteger:          http.StatusConflict,
	CodePayloadTooLarge:     http.StatusRequestEntityTooLarge,
	CodeInsufficientStorage: http.StatusInsufficientStorage,
	CodeUnavailable:         http.StatusServiceUnavailable,
	CodeTimeout:             http.StatusGatewayTimeout,
	CodeDurabilityUnknown:   http.StatusGatewayTimeout,
	CodePreconditionFailed:  http.StatusPreconditionFailed,
	CodeInternal:            http.StatusInternalServerError,
}

// Error is an error the API answers as it is: its code picks the status, its
// message is shown to the client. Validation failures are made as Errors;
// store errors are turned into Errors by fromStore.
type Error struct {
	Code    string
	Message string
	// Cause, when set, is the failure underneath: it is logged with the
	// request, never shown to the client.
	Cause error
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
	{store.ErrWrongType, Error{Code: CodeWrongType, Message: "the key holds another type: use the /v1/kv routes for strings, /v1/hash for hashes and /v1/keys for any key"}},
	{store.ErrNotInteger, Error{Code: CodeNotInteger, Message: "the value is not an integer, or the increment would overflow a 64-bit integer"}},
	{store.ErrInsufficientStorage, Error{Code: CodeInsufficientStorage, Message: "the store is full and refuses writes; reads still work"}},
	{store.ErrTimeout, Error{Code: CodeTimeout, Message: "the store did not answer in time"}},
	{store.ErrNotDurable, Error{Code: CodeDurabilityUnknown, Message: "the write is applied on the primary, but fewer replicas than REDIS_WAIT_REPLICAS acknowledged it in time: it may be lost if the primary fails now"}},
	{store.ErrPreconditionFailed, Error{Code: CodePreconditionFailed, Message: "the key (or field) is not as If-Match or If-None-Match requires: nothing was written; read it again and retry"}},
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
// else, and an API error whose code has no status, is logged in full and
// answered as a bare 500. Failures of Redis itself (503, 504, 507) are
// logged at warn with the underlying error, once per request. Errors the API
// made itself (validation, auth) are only in the access log.
func (h *handler) respond(c *gin.Context, err error) {
	apiErr, status := toAPIError(err)
	var made *Error
	if !errors.As(err, &made) || made.Cause != nil || status == http.StatusInternalServerError {
		switch status {
		case http.StatusInternalServerError:
			h.logFailure(c, zapcore.ErrorLevel, err)
		case http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusInsufficientStorage:
			h.logFailure(c, zapcore.WarnLevel, err)
		}
	}
	switch status {
	case http.StatusServiceUnavailable:
		c.Header("Retry-After", "1")
	case http.StatusUnauthorized:
		c.Header("WWW-Authenticate", `Bearer realm="dubebox"`)
	}
	c.AbortWithStatusJSON(status, errorBody{
		Error:     errorDetail{Code: apiErr.Code, Message: apiErr.Message},
		RequestID: requestID(c),
	})
}

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

func (h *handler) logFailure(c *gin.Context, level zapcore.Level, err error) {
	ce := h.log.Check(level, "request failed")
	if ce == nil {
		return
	}
	fields := append([]zap.Field{
		zap.Error(err),
		zap.String("method", c.Request.Method),
		zap.String("route", route(c)),
		zap.String("request_id", requestID(c)),
	}, observability.TraceFields(c.Request.Context())...)
	ce.Write(fields...)
}
