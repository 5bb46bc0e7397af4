package api

import (
	"net/http"
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
func etag(value string) string { return `"` + store.Tag(value) + `"` }

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
	return nil, nil
}

// notModified sets the ETag of a read's value and, when If-None-Match
// names it (compared weakly, as RFC 9110 says for If-None-Match) or is *,
// answers 304; it says whether it did, and the read is then answered.
func notModified(c *gin.Context, value string) bool {
	tag := etag(value)
	c.Header("ETag", tag)
	header := strings.Join(c.Request.Header.Values("If-None-Match"), ",")
	if header == "" {
		return false
	}
	tags, err := entityTags(header)
	if err != nil {
		return false
	}
	for _, t := range tags {
		if t == "*" || strings.TrimPrefix(t, "W/") == tag {
			c.Status(http.StatusNotModified)
			return true
		}
	}
	return false
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

// refuseConditions answers 400 to a write with If-Match or If-None-Match
// on a route that does not take them.
func (h *handler) refuseConditions(c *gin.Context) {
	route := c.Request.Method + " " + c.FullPath()
	conditional := c.GetHeader("If-Match") != "" || c.GetHeader("If-None-Match") != ""
	if conditional && !IsRead(c.Request.Method, c.FullPath()) && !conditionalWrites[route] {
		h.respond(c, invalid("this route does not take If-Match or If-None-Match: they apply to PUT and DELETE of /v1/kv/:key and /v1/hash/:key/:field"))
		return
	}
	c.Next()
}
