package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"time"
)

// conn is one worker's own keep-alive HTTP/1.1 connection, used for plain
// http:// targets. A worker waits for each answer before it sends again, so
// it needs no pool: the request is written with Request.Write and the answer
// read with http.ReadResponse on the worker's goroutine. http.Client's
// transport runs two goroutines per connection and hands every request and
// answer between them; on a machine where the generator shares the cores
// with the server under test, those wake-ups cost the generator about twice
// the CPU per request (bench/results.md), CPU taken from the server and
// added to the latency being measured. It redials after any error and after
// an answer that closes the connection.
type conn struct {
	addr    string
	timeout time.Duration
	nc      net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	stop    func() bool
}

func newConn(addr string, timeout time.Duration) *conn {
	return &conn{addr: addr, timeout: timeout}
}

// do sends req and returns the answer's status, or 0 and the error when
// there was no answer. An idempotent request that fails on a reused
// connection is sent once more on a new one, as http.Client does: the
// server may have closed the connection while it sat idle. A POST or PATCH
// is not, since the server may have acted on it.
func (c *conn) do(ctx context.Context, req *http.Request) (int, error) {
	reused := c.nc != nil
	code, err := c.try(ctx, req)
	if err != nil && reused && idempotent(req.Method) && ctx.Err() == nil {
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return 0, err
			}
		}
		code, err = c.try(ctx, req)
	}
	return code, err
}

func idempotent(method string) bool {
	return method != http.MethodPost && method != http.MethodPatch
}

func (c *conn) try(ctx context.Context, req *http.Request) (int, error) {
	if c.nc == nil {
		if err := c.dial(ctx); err != nil {
			return 0, err
		}
	}
	code, keep, err := c.roundTrip(req)
	if err != nil || !keep {
		c.close()
	}
	return code, err
}

func (c *conn) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return err
	}
	c.nc, c.br, c.bw = nc, bufio.NewReader(nc), bufio.NewWriter(nc)
	// The end of the run unblocks a worker waiting on a slow server.
	c.stop = context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	return nil
}

func (c *conn) roundTrip(req *http.Request) (code int, keep bool, err error) {
	if err := c.nc.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, false, err
	}
	if err := req.Write(c.bw); err != nil {
		return 0, false, err
	}
	if err := c.bw.Flush(); err != nil {
		return 0, false, err
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		return 0, false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return 0, false, err
	}
	return resp.StatusCode, !resp.Close, nil
}

func (c *conn) close() {
	if c.nc == nil {
		return
	}
	c.stop()
	_ = c.nc.Close()
	c.nc = nil
}
