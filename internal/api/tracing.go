package api

import (
	"cmp"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"
)

// tracingScope names the instrumentation that makes the server spans.
const tracingScope = "github.com/dubebox/dubebox/internal/api/serverspans"

// serverSpans starts the server span of every request but the scrapes of
// /metrics, continuing the caller's trace when its headers name one. The
// spans are otelgin's (v0.65): the same name, kind, status and attributes
// (semantic conventions v1.39.0), which TestServerSpansMatchOtelgin holds
// it to. It replaced otelgin because otelgin computes every attribute, and
// records its HTTP metrics into a meter (here a no-op one: the request
// metrics are Prometheus's), for every request, sampled or not: about 7 µs
// of CPU per request, a sixth of a near-cache hit's (bench/results.md,
// issue 24). Here the name and attributes are computed only for a span
// that records. That changes no sampling decision: the samplers the
// service offers (OTEL_TRACES_SAMPLER) decide on the trace id and the
// parent, not on the name or the attributes.
//
// service is the server's name (server.address); its port comes from the
// request's Host.
func serverSpans(service string, tp trace.TracerProvider, prop propagation.TextMapPropagator) gin.HandlerFunc {
	tracer := tp.Tracer(tracingScope)
	return func(c *gin.Context) {
		if c.Request.URL.Path == "/metrics" {
			// Scrapes every few seconds would bury the traces that matter.
			c.Next()
			return
		}
		ctx := prop.Extract(c.Request.Context(), propagation.HeaderCarrier(c.Request.Header))
		// The name is set, like the attributes, only on a span that
		// records: the samplers do not read it either.
		ctx, span := tracer.Start(ctx, "", trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		recording := span.IsRecording()
		if recording {
			span.SetName(spanName(c))
			span.SetAttributes(requestAttrs(c, service)...)
		}
		// Unlike otelgin, the request keeps the span's context once it
		// ends: the middleware before this one needs nothing else, and
		// another copy of the request would cost each one an allocation.
		c.Request = c.Request.WithContext(ctx)
		c.Next()
		if !recording {
			return
		}
		status := c.Writer.Status()
		switch {
		case status < 100 || status >= 600:
			span.SetStatus(codes.Error, "Invalid HTTP status code "+strconv.Itoa(status))
		case status >= 500:
			span.SetStatus(codes.Error, "")
		}
		if n := c.Writer.Size(); n > 0 {
			span.SetAttributes(semconv.HTTPResponseBodySize(n))
		}
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	}
}

// spanName is the method and the route template ("GET /v1/kv/:key"), or
// the method alone where no route matched; "HTTP" stands for a method
// HTTP does not define.
func spanName(c *gin.Context) string {
	method := strings.ToUpper(c.Request.Method)
	if _, ok := methods[method]; !ok {
		method = "HTTP"
	}
	if route := c.FullPath(); route != "" {
		return method + " " + route
	}
	return method
}

var methods = map[string]attribute.KeyValue{
	http.MethodConnect: semconv.HTTPRequestMethodConnect,
	http.MethodDelete:  semconv.HTTPRequestMethodDelete,
	http.MethodGet:     semconv.HTTPRequestMethodGet,
	http.MethodHead:    semconv.HTTPRequestMethodHead,
	http.MethodOptions: semconv.HTTPRequestMethodOptions,
	http.MethodPatch:   semconv.HTTPRequestMethodPatch,
	http.MethodPost:    semconv.HTTPRequestMethodPost,
	http.MethodPut:     semconv.HTTPRequestMethodPut,
	http.MethodTrace:   semconv.HTTPRequestMethodTrace,
}

// requestAttrs are the span's attributes known before the handler runs.
func requestAttrs(c *gin.Context, service string) []attribute.KeyValue {
	r := c.Request
	attrs := make([]attribute.KeyValue, 0, 14)
	host, port := splitHostPort(r.Host)
	if service != "" {
		// The server's own name first, as otelgin has it.
		var p int
		host, p = splitHostPort(service)
		if p > 0 {
			port = p
		}
	}
	attrs = append(attrs, semconv.ServerAddress(host))
	// A method HTTP does not define is reported as GET, with the method
	// sent as http.request.method_original, as otelgin does.
	if method, ok := methods[r.Method]; ok || r.Method == "" {
		attrs = append(attrs, cmp.Or(method, semconv.HTTPRequestMethodGet))
	} else {
		method, ok := methods[strings.ToUpper(r.Method)]
		if !ok {
			method = semconv.HTTPRequestMethodGet
		}
		attrs = append(attrs, method, semconv.HTTPRequestMethodOriginal(r.Method))
	}
	scheme, defaultPort := "http", 80
	if r.TLS != nil {
		scheme, defaultPort = "https", 443
	}
	attrs = append(attrs, semconv.URLScheme(scheme))
	if port > 0 && port != defaultPort {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	if peer, peerPort := splitHostPort(r.RemoteAddr); peer != "" {
		attrs = append(attrs, semconv.NetworkPeerAddress(peer))
		if peerPort > 0 {
			attrs = append(attrs, semconv.NetworkPeerPort(peerPort))
		}
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
	}
	// Gin's ClientIP follows X-Forwarded-For from trusted proxies only.
	if ip := c.ClientIP(); ip != "" {
		attrs = append(attrs, semconv.ClientAddress(ip))
	}
	if r.URL.Path != "" {
		attrs = append(attrs, semconv.URLPath(r.URL.Path))
	}
	name, version, _ := strings.Cut(r.Proto, "/")
	if name = strings.ToLower(name); name != "" && name != "http" {
		attrs = append(attrs, semconv.NetworkProtocolName(name))
	}
	if version != "" {
		attrs = append(attrs, semconv.NetworkProtocolVersion(version))
	}
	return append(attrs, semconv.HTTPRoute(c.FullPath()))
}

// splitHostPort splits "host:port", "[v6]:port", or a host alone (port
// -1), as the semantic conventions' server.address and server.port want.
func splitHostPort(hostport string) (string, int) {
	if strings.HasPrefix(hostport, "[") {
		end := strings.LastIndexByte(hostport, ']')
		if end < 0 {
			return "", -1
		}
		if !strings.Contains(hostport[end:], ":") {
			return hostport[1:end], -1
		}
	} else if !strings.Contains(hostport, ":") {
		return hostport, -1
	}
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", -1
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return host, -1
	}
	return host, int(port)
}
