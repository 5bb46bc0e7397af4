package api

import (
	"errors"

	"github.com/elnormous/contenttype"
	"github.com/gin-gonic/gin"
)

// negotiate picks, by the request's Accept header (RFC 9110, section
// 12.5.1: qualities, q=0, the most specific range), which of offered a
// route answers, and returns its index, or -1 when Accept rules out every
// one. Where ranges of the same quality match several, the first offered
// wins: a route lists its own preference first. No Accept header, or one
// that cannot be parsed, accepts the first.
func negotiate(c *gin.Context, offered []contenttype.MediaType) int {
	accept := c.GetHeader("Accept")
	if accept == "" {
		return 0
	}
	chosen, _, err := contenttype.GetAcceptableMediaTypeFromHeader(accept, offered)
	switch {
	case errors.Is(err, contenttype.ErrNoAcceptableTypeFound):
		return -1
	case err != nil:
		return 0
	}
	for i, t := range offered {
		if t.Type == chosen.Type && t.Subtype == chosen.Subtype {
			return i
		}
	}
	return 0
}
