package api

import (
	"net"
	"net/netip"
	"strings"

	"github.com/gin-gonic/gin"
)

// prefixes parses TRUSTED_PROXIES: CIDRs, or single addresses.
func prefixes(v []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range v {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// trustedPeer reports whether the connection comes from one of the
// trusted proxies.
func trustedPeer(remoteAddr string, trusted []netip.Prefix) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// traceHeaders are the W3C trace context headers a client may send.
var traceHeaders = []string{"Traceparent", "Tracestate", "Baggage"}

// untrustedTrace drops the trace context of a request that does not come
// from a trusted proxy, before the tracing middleware reads it: a client
// could otherwise choose its trace id and have every one of its requests
// sampled (their export is a share of the CPU). Such a request starts a
// trace of its own, sampled at OTEL_TRACES_SAMPLER_ARG; a proxy in
// TRUSTED_PROXIES that propagates traceparent keeps the whole trace.
func untrustedTrace(trusted []netip.Prefix) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !trustedPeer(c.Request.RemoteAddr, trusted) {
			for _, h := range traceHeaders {
				delete(c.Request.Header, h)
			}
		}
		c.Next()
	}
}

// checkPrefixes is TRUSTED_PROXIES's rule: every entry a CIDR or an
// address.
func checkPrefixes(v []string) string {
	for _, s := range v {
		s = strings.TrimSpace(s)
		if _, err := netip.ParsePrefix(s); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(s); err == nil {
			continue
		}
		return "want CIDRs or addresses, comma-separated (10.0.0.0/8,192.168.1.10)"
	}
	return ""
}
