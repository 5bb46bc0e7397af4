package api

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/dubebox/dubebox/observability"
	"github.com/go-json-experiment/json"
	"go.uber.org/zap"
)

// net/http refuses a request it cannot parse (a malformed percent-encoding
// in the path, a bad Host header, a request line or headers over the
// server's cap) before any handler runs, with a plain-text answer it writes
// straight to the connection in one write and with no hook to change it.
// Its shape is fixed: the status line, then exactly serverErrorHeaders,
// then the status again as the body. An answer from a handler always has a
// Date header, so it never starts that way.
const serverErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// ServerErrorsAsJSON wraps the API's listener so that those answers come
// in the API's JSON error shape with a request id, logged as one line and
// counted under the unmatched route like any other refused request.
func ServerErrorsAsJSON(ln net.Listener, log *zap.Logger, m *observability.Metrics) net.Listener {
	return &errorListener{Listener: ln, log: log.Named("http"), metrics: m}
}

type errorListener struct {
	net.Listener
	log     *zap.Logger
	metrics *observability.Metrics
}

func (l *errorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &errorConn{Conn: c, l: l}, nil
}

type errorConn struct {
	net.Conn
	l *errorListener
}

func (c *errorConn) Write(p []byte) (int, error) {
	status, reason, ok := serverError(p)
	if !ok {
		return c.Conn.Write(p)
	}
	code := CodeInvalidArgument
	if status == http.StatusRequestHeaderFieldsTooLarge {
		code = CodeHeadersTooLarge
	}
	msg := "the request line or headers could not be parsed"
	if reason != "" {
		msg += ": " + reason
	}
	id := newRequestID()
	body, _ := json.Marshal(errorBody{Error: errorDetail{Code: code, Message: msg}, RequestID: id})
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nX-Request-Id: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n",
		status, http.StatusText(status), id, len(body))
	b.Write(body)
	// Logged and counted before the answer goes out, as the access log and
	// the metrics middleware do for a handler's answer; at info, since it
	// is the client's fault, as the access log has a 400.
	c.l.log.Info("request", zap.String("route", UnmatchedRoute), zap.Int("status", status), zap.String("error", msg),
		zap.String("client_ip", remoteIP(c.RemoteAddr())), zap.String("request_id", id))
	c.l.metrics.ObserveRequest(context.Background(), "", UnmatchedRoute, status, 0)
	if _, err := c.Conn.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// serverError recognises net/http's own refusal and returns its status and
// the reason it gives, if any ("400 Bad Request: malformed Host header").
func serverError(p []byte) (int, string, bool) {
	rest, ok := bytes.CutPrefix(p, []byte("HTTP/1.1 "))
	if !ok {
		return 0, "", false
	}
	// Every answer's first write starts with the status line: look only at
	// what follows it, not through the whole write, since this runs on
	// every response.
	end := bytes.IndexByte(rest, '\r')
	if end < 3 {
		return 0, "", false
	}
	line := rest[:end]
	body, ok := bytes.CutPrefix(rest[end:], []byte(serverErrorHeaders))
	if !ok {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(line[:3]))
	if err != nil || status < 400 {
		return 0, "", false
	}
	_, reason, _ := bytes.Cut(body, []byte(": "))
	return status, string(reason), true
}

func remoteIP(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
