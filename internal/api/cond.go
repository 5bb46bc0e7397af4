package api

import (
	"net/http"
	"slices"
	"strings"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
)

// Conditional requests (RFC 9110, section 13): a string's and a hash
// field's GET answers an ETag, the value's SHA-1, and honours
// If-None-Match with 304; their PUT and DELETE honour If-Match (write only
// if the value is still the one read: compare-and-set) and PUT honours
// If-None-Match: * (create only). The comparison runs in Redis, in the
// write's own atomic step, so two writers cannot both win.

// etag is a value's entity tag as HTTP carries it. It tags the value only:
// a 304 means the value is unchanged, though its TTL counts down.
func etag(value string) string { return quoted(store.Tag(value)) }

// quoted is an entity tag as HTTP carries it.
func quoted(tag string) string { return `"` + tag + `"` }

// conditionalWrites are the write routes that take If-Match and
// If-None-Match; every other write refuses them (see refuseConditions)
// rather than ignore a condition its client relies on.
var conditionalWrites = map[string]bool{
	"PUT /v1/kv/:key":             true,
	"DELETE /v1/kv/:key":          true,
	"PUT /v1/hash/:key/:field":    true,
	"DELETE /v1/hash/:key/:field": true,
}

// conditional runs a write: plain when the request has no If-Match or
// If-None-Match, else ifCond with the condition they make.
func conditional(c *gin.Context, plain func() error, ifCond func(store.Condition) error) error {
	cond, err := condition(c)
	switch {
	case err != nil:
		return err
	case cond == nil:
		return plain()
	}
	return ifCond(*cond)
}

// writeTagged runs a write, conditional when the request has If-Match or
// If-None-Match, and answers tag, the ETag of the value written, so that
// the next conditional write can name it without a read.
func writeTagged(c *gin.Context, tag string, plain func() error, ifCond func(store.Condition) error) error {
	if err := conditional(c, plain, ifCond); err != nil {
		return err
	}
	c.Header("ETag", tag)
	return nil
}

// deleteIf runs a conditional delete. If-None-Match: * holds only when
// there is nothing to delete, and then the answer is the one without it:
// 404, as RFC 9110 has a request whose precondition held answered as if it
// had none.
func deleteIf(del func(store.Condition) error) func(store.Condition) error {
	return func(cond store.Condition) error {
		if err := del(cond); err != nil || !cond.Absent {
			return err
		}
		return store.ErrNotFound
	}
}

// condition reads a write's If-Match or If-None-Match; nil when it has
// neither. Only an unquoted * is the wildcard: a quoted "*" is an ordinary
// tag, which no value has.
func condition(c *gin.Context) (*store.Condition, error) {
	match := strings.Join(c.Request.Header.Values("If-Match"), ",")
	noneMatch := strings.Join(c.Request.Header.Values("If-None-Match"), ",")
	switch {
	case match != "" && noneMatch != "":
		return nil, invalid("send If-Match or If-None-Match, not both")
	case noneMatch != "":
		if strings.TrimSpace(noneMatch) != "*" {
			return nil, invalid("on a write, If-None-Match takes only * (create only)")
		}
		return &store.Condition{Absent: true}, nil
	case match != "":
		return matchCondition(match)
	}
	return nil, nil
}

// matchCondition reads an If-Match list: *, or entity tags one of which
// the value must have.
func matchCondition(match string) (*store.Condition, error) {
	tags, err := entityTags(match)
	if err != nil {
		return nil, err
	}
	cond := &store.Condition{}
	for _, t := range tags {
		switch {
		case t == "*":
			cond.Exists = true
		case !strings.HasPrefix(t, "W/"):
			// If-Match compares strongly: a weak tag never matches.
			cond.Match = append(cond.Match, strings.Trim(t, `"`))
		}
	}
	if cond.Exists {
		cond.Match = nil
	} else if len(cond.Match) == 0 {
		cond.Match = []string{"weak tags never match"}
	}
	return cond, nil
}

// readConditions applies a read's preconditions as RFC 9110 orders them:
// If-Match first (412 unless a tag matches strongly, or *), then
// If-None-Match (304 when a tag matches weakly, or for *), and sets tag,
// the value's ETag, on a 200 or 304. It says whether the read is answered
// already.
func readConditions(c *gin.Context, tag string) (bool, error) {
	if header := strings.Join(c.Request.Header.Values("If-Match"), ","); header != "" {
		tags, err := entityTags(header)
		if err != nil {
			return false, err
		}
		if !slices.ContainsFunc(tags, func(t string) bool { return t == "*" || t == tag }) {
			return false, &Error{Code: CodePreconditionFailed, Message: "the value's entity tag is none of those If-Match names: it has changed since"}
		}
	}
	header := strings.Join(c.Request.Header.Values("If-None-Match"), ",")
	var tags []string
	if header != "" {
		var err error
		if tags, err = entityTags(header); err != nil {
			return false, err
		}
	}
	c.Header("ETag", tag)
	for _, t := range tags {
		if t == "*" || strings.TrimPrefix(t, "W/") == tag {
			c.Status(http.StatusNotModified)
			return true, nil
		}
	}
	return false, nil
}

// entityTags splits an If-Match or If-None-Match list: *, or quoted tags,
// optionally weak (W/"...").
func entityTags(header string) ([]string, error) {
	var out []string
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		quoted := strings.TrimPrefix(t, "W/")
		ok := t == "*" || (len(quoted) >= 2 && quoted[0] == '"' && quoted[len(quoted)-1] == '"' && !strings.ContainsAny(quoted[1:len(quoted)-1], `"`))
		if !ok {
			return nil, invalid(`If-Match and If-None-Match take * or quoted entity tags, as ETag gives them: "..."`)
		}
		out = append(out, t)
	}
	return out, nil
}

// taggedReads are the reads whose answer carries an ETag, and so take
// If-Match and If-None-Match (HEAD as GET).
var taggedReads = map[string]bool{
	"/v1/kv/:key":          true,
	"/v1/hash/:key/:field": true,
	"/get/:key":            true,
}

// refuseConditions answers 400 to a request with If-Match or If-None-Match
// on a route that does not take them, rather than ignore a condition its
// client relies on.
func (h *handler) refuseConditions(c *gin.Context) {
	method, route := c.Request.Method, c.FullPath()
	conditional := c.GetHeader("If-Match") != "" || c.GetHeader("If-None-Match") != ""
	switch {
	case !conditional:
	case method == http.MethodGet || method == http.MethodHead:
		if !taggedReads[route] {
			h.respond(c, invalid("this route's answer has no entity tag, so it takes no If-Match or If-None-Match: reads of /v1/kv/:key, /v1/hash/:key/:field and /get/:key do"))
			return
		}
	case !conditionalWrites[method+" "+route]:
		h.respond(c, invalid("this route does not take If-Match or If-None-Match: they apply to PUT and DELETE of /v1/kv/:key and /v1/hash/:key/:field"))
		return
	}
	c.Next()
}
