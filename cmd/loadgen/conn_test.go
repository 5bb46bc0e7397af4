package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestConn(t *testing.T) {
	t.Parallel()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			w.WriteHeader(http.StatusCreated)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	c := newConn(hostPort(u), time.Second)
	t.Cleanup(c.close)
	ctx := context.Background()

	send := func(method, body string) int {
		t.Helper()
		var req *http.Request
		var err error
		if body != "" {
			req, err = http.NewRequestWithContext(ctx, method, srv.URL+"/x", strings.NewReader(body))
		} else {
			req, err = http.NewRequestWithContext(ctx, method, srv.URL+"/x", nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		code, err := c.do(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		return code
	}
	for range 5 {
		if got := send(http.MethodGet, ""); got != http.StatusOK {
			t.Fatalf("GET answered %d", got)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("5 requests used %d connections, want 1 kept alive", got)
	}
	// The server drops the idle connection: the next request, with a body,
	// is sent again on a new one.
	srv.CloseClientConnections()
	if got := send(http.MethodPut, `{"value":"v"}`); got != http.StatusCreated {
		t.Fatalf("PUT after the server closed the connection answered %d", got)
	}
	if got := conns.Load(); got != 2 {
		t.Errorf("connections after a redial: %d, want 2", got)
	}
	// A POST is not sent twice: the server may have acted on it.
	srv.CloseClientConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/x", strings.NewReader(`{"by":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if code, err := c.do(ctx, req); err == nil {
		t.Errorf("POST on a connection the server closed answered %d, want an error", code)
	}
	if got := conns.Load(); got != 2 {
		t.Errorf("connections after a failed POST: %d, want 2 (no retry)", got)
	}
}
