package api

import (
	"net"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// browserGuard keeps pages on other sites from using the API through a
// visitor's browser, which matters most for an instance without a token
// (anyone's browser can reach a service on its own machine):
//
//   - a write from another origin is refused: Go's CrossOriginProtection,
//     from the browser's Sec-Fetch-Site (or Origin) header; clients that
//     are not browsers send neither and are not affected;
//   - the tutorial's /set, a write through a GET, which browsers send from
//     any page (an <img>), is refused from another site as well;
//   - a page on an origin CORS_ALLOWED_ORIGINS names passes both checks:
//     CORS lets it call the API, writes included;
//   - without a token (and without ALLOW_NO_AUTH), only a Host that names
//     this machine (localhost, a loopback address) is answered, so that a
//     page whose name was rebound to 127.0.0.1 (DNS rebinding) cannot read
//     either.
func (h *handler) browserGuard() gin.HandlerFunc {
	cop := http.NewCrossOriginProtection()
	hostCheck := h.cfg.APIToken == "" && !h.cfg.AllowNoAuth
	origins := h.cfg.CORSAllowedOrigins
	return func(c *gin.Context) {
		if hostCheck && !loopbackHost(c.Request.Host) {
			h.respond(c, &Error{Code: CodeForbidden, Message: "without API_TOKEN this instance answers only requests to localhost (a page on another site must not reach it); set API_TOKEN, or ALLOW_NO_AUTH=true"})
			return
		}
		if trustedOrigin(origins, c.GetHeader("Origin")) {
			// A page CORS_ALLOWED_ORIGINS names may write, as CORS lets it.
			c.Next()
			return
		}
		if err := cop.Check(c.Request); err != nil {
			h.respond(c, &Error{Code: CodeForbidden, Message: "a write from a page on another origin is refused"})
			return
		}
		if site := c.GetHeader("Sec-Fetch-Site"); (site == "cross-site" || site == "same-site") && !IsRead(c.Request.Method, c.FullPath()) {
			h.respond(c, &Error{Code: CodeForbidden, Message: "a write from a page on another site is refused"})
			return
		}
		c.Next()
	}
}

// loopbackHost reports whether a Host header names this machine:
// localhost (or a name under it) or a loopback address, with any port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dataHeaders mark a data answer as one no cache may keep (it may hold
// what only the token's holder may see) and whose type a browser must not
// guess.
func dataHeaders(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Next()
}
