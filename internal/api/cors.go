package api

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/gin-gonic/gin"
	"github.com/rs/cors"
)

// corsMaxAge is how long a browser may keep a preflight's answer.
const corsMaxAge = 600

// The request headers a page may send and the answer headers it may read:
// those the document names.
var (
	corsRequestHeaders = []string{"Authorization", "Content-Type", "If-Match", "If-None-Match", IdempotencyKeyHeader, "Cache-Control"}
	corsExposedHeaders = []string{"ETag", "X-Request-ID", "X-Cache", "Idempotent-Replayed", "Retry-After"}
	corsMethods        = []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete}
)

// checkOrigins is the rule for CORS_ALLOWED_ORIGINS: each an origin as a
// browser sends it (scheme://host[:port], nothing after), or * alone and
// only with a token, since with * any page its visitors open can use a
// token-less instance.
func checkOrigins(origins []string, token bool) string {
	for _, o := range origins {
		if o == "*" {
			if len(origins) > 1 {
				return "* stands alone: any origin"
			}
			if !token {
				return "* needs API_TOKEN: without a token any page a visitor opens could use the API through the visitor's browser; name the origins instead"
			}
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Sprintf("%q is not an origin: want scheme://host[:port], as https://app.example.com", o)
		}
	}
	return ""
}

// corsPolicy answers cross-origin requests from CORS_ALLOWED_ORIGINS (rs/cors
// does the work): a preflight is answered here, before auth, since a
// browser sends no token with it; other requests get the headers that let
// the page read their answer, errors included. With no origin configured
// it is nil and no answer has CORS headers.
func corsPolicy(origins []string) gin.HandlerFunc {
	if len(origins) == 0 {
		return nil
	}
	c := cors.New(cors.Options{
		AllowedOrigins:       origins,
		AllowedMethods:       corsMethods,
		AllowedHeaders:       corsRequestHeaders,
		ExposedHeaders:       corsExposedHeaders,
		MaxAge:               corsMaxAge,
		OptionsSuccessStatus: http.StatusNoContent,
	})
	return func(ctx *gin.Context) {
		c.HandlerFunc(ctx.Writer, ctx.Request)
		if ctx.Request.Method == http.MethodOptions && ctx.GetHeader("Access-Control-Request-Method") != "" {
			ctx.Abort()
			return
		}
		ctx.Next()
	}
}

// trustedOrigin reports whether a request's Origin is one CORS_ALLOWED_ORIGINS
// names, so that the browser guard lets its writes through.
func trustedOrigin(origins []string, origin string) bool {
	return origin != "" && (slices.Contains(origins, origin) || slices.Equal(origins, []string{"*"}))
}
