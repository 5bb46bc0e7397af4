package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Answers and request bodies are JSON through go-json-experiment/json (the
// v2 API proposed for Go's standard library), whose defaults are what the
// API's document promises: object member names match exactly (not
// case-insensitively), a name given twice is refused, and so is invalid
// UTF-8, raw or as an escaped lone surrogate, which encoding/json would
// quietly turn into U+FFFD.

// encodeOptions writes answers as they are: '<', '>' and '&' are not
// escaped (encoding/json's HTML escaping made them six bytes each), and
// hash fields come in a stable order.
var encodeOptions = json.JoinOptions(
	jsontext.EscapeForHTML(false),
	json.Deterministic(true),
)

// decodeOptions refuse what the document does not describe: members it
// does not name, and null anywhere but in an optionalTTL, besides the
// defaults above. (By default null decodes as the zero value: "by": null
// would add 0 and a null in "values" would push "".)
var decodeOptions = json.JoinOptions(
	json.RejectUnknownMembers(true),
	json.WithUnmarshalers(json.UnmarshalFromFunc(refuseNull)),
)

// errNull is the reason a null is refused.
var errNull = errors.New("must not be null")

func refuseNull(dec *jsontext.Decoder, v any) error {
	if _, ok := v.(*optionalTTL); !ok && dec.PeekKind() == 'n' {
		return errNull
	}
	return errors.ErrUnsupported // decode as usual
}

// optionalTTL is a ttl_seconds the document lets be absent or null, which
// mean the same (given says whether it was there, for the one place where
// they do not: a transaction's expire, where null removes the TTL).
type optionalTTL struct {
	seconds *int64
	given   bool
}

func (o *optionalTTL) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	o.given = true
	if dec.PeekKind() == 'n' {
		_, err := dec.ReadToken()
		o.seconds = nil
		return err
	}
	var n int64
	if err := json.UnmarshalDecode(dec, &n); err != nil {
		return err
	}
	o.seconds = &n
	return nil
}

// errNotUTF8JSON answers a JSON read of a value that is not UTF-8.
var errNotUTF8JSON = &Error{Code: CodeNotAcceptable, Message: "a value is not UTF-8, which JSON cannot carry: read a string's bytes as they are with Accept: application/octet-stream on GET /v1/kv/{key}"}

// jsonable refuses values JSON cannot carry (not UTF-8, written by another
// client) before anything is written: the encoder finds them only as it
// writes, and once part of a 200 is out there is no telling the client.
func jsonable(values ...string) error {
	for _, v := range values {
		if !utf8.ValidString(v) {
			return errNotUTF8JSON
		}
	}
	return nil
}

// jsonableFields is jsonable for a hash's field names and values.
func jsonableFields(fields map[string]string) error {
	for f, v := range fields {
		if err := jsonable(f, v); err != nil {
			return err
		}
	}
	return nil
}

// reply answers status with v as JSON. The encoder writes to the
// connection as it goes, holding at most about one value at a time, so a
// large page is never built whole in memory.
func (h *handler) reply(c *gin.Context, status int, v any) {
	c.Header("Content-Type", "application/json; charset=utf-8")
	c.Status(status)
	err := json.MarshalWrite(c.Writer, v, encodeOptions)
	switch {
	case err == nil:
	case !c.Writer.Written():
		// Nothing went out: a value JSON cannot carry that the handler
		// did not check (see jsonable) is 406, never an empty 200 nor a
		// value with U+FFFD in place of its bytes; any other failure is a
		// 500 whose cause is logged.
		if strings.Contains(err.Error(), "invalid UTF-8") {
			h.respond(c, errNotUTF8JSON)
			return
		}
		h.respond(c, fmt.Errorf("encoding the answer: %w", err))
	default:
		// Once the status is sent, a failure to write (the client left)
		// can only end the answer early; there is nothing left to tell
		// the client.
	}
}

// decode reads the JSON object in the request body into dst: bodies over
// the limit (never read past it), invalid UTF-8 (escapes included),
// duplicate or unknown members, member names in another case, values of
// another type than dst's fields (so any nesting the document does not
// describe) and data after the object are refused. With optional, an empty
// body leaves dst as it is.
func (h *handler) decode(c *gin.Context, dst any, optional bool) error {
	body, err := readBody(c, h.maxBody)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return invalid("request body is empty; want a JSON object")
	}
	if first := bytes.TrimLeft(body, " \t\r\n"); first[0] != '{' {
		return invalid("request body must be a JSON object")
	}
	if err := json.Unmarshal(body, dst, decodeOptions); err != nil {
		return decodeError(err, h.maxBody)
	}
	return nil
}

// readBody reads the request's body, refusing one over limit bytes (and
// never reading past it).
func readBody(c *gin.Context, limit int64) ([]byte, error) {
	if c.Request.ContentLength > limit {
		return nil, tooLarge(fmt.Sprintf("request body is larger than %d bytes", limit))
	}
	// One buffer of the announced size (within the limit): reading into a
	// growing one would allocate about twice the body as it doubles.
	// MAX_INFLIGHT_REQUESTS bounds how many such buffers exist at once.
	var buf bytes.Buffer
	if n := c.Request.ContentLength; n > 0 {
		buf.Grow(int(n) + 1)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(c.Writer, c.Request.Body, limit)); err != nil {
		return nil, decodeError(err, limit)
	}
	return buf.Bytes(), nil
}

// decodeError says what is wrong with a body in words for the client.
func decodeError(err error, limit int64) error {
	var (
		mbe      *http.MaxBytesError
		syntax   *jsontext.SyntacticError
		semantic *json.SemanticError
	)
	switch {
	case errors.As(err, &mbe):
		return tooLarge(fmt.Sprintf("request body is larger than %d bytes", limit))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("request body is not valid JSON: it ends too early")
	case errors.As(err, &syntax):
		return invalid(fmt.Sprintf("request body is not valid JSON (at byte %d): %s", syntax.ByteOffset, plain(syntax.Err)))
	case errors.As(err, &semantic):
		return invalid(semanticMessage(semantic))
	}
	return invalid("request body is not a valid JSON object")
}

// semanticMessage names the member that could not be decoded and why.
func semanticMessage(e *json.SemanticError) string {
	where := strings.TrimPrefix(string(e.JSONPointer), "/")
	switch {
	case errors.Is(e.Err, json.ErrUnknownName):
		return "request body has an unknown member " + quote(where)
	case where == "":
		return "request body must be a JSON object"
	case errors.Is(e.Err, errNull):
		return fmt.Sprintf("%s must not be null", where)
	case e.GoType != nil:
		return fmt.Sprintf("%s must be %s", where, kindOf(e.GoType.String()))
	}
	return fmt.Sprintf("%s: %s", where, plain(e.Err))
}

func quote(s string) string { return `"` + s + `"` }

// plain is an error's message without the package's prefix.
func plain(err error) string {
	if err == nil {
		return "invalid"
	}
	s := err.Error()
	for _, p := range []string{"jsontext: ", "json: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

// kindOf names a Go type as a JSON type for a message.
func kindOf(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "int64", "int":
		return "a whole number"
	case "string":
		return "a string"
	case "map[string]string":
		return "an object of strings"
	case "[]string":
		return "an array of strings"
	}
	return "of another type"
}
