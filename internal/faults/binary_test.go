//go:build faults

package faults

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/dubebox/dubebox/internal/api"
	"github.com/dubebox/dubebox/internal/redistest"
)

// TestBinary checks the built binary's exit statuses: 2 with one line
// naming the variable for bad configuration, 0 after SIGTERM, and its
// healthcheck subcommand.
func TestBinary(t *testing.T) {
	bad := exec.CommandContext(t.Context(), binary)
	bad.Env = []string{"MAX_KEY_BYTES=lots"}
	var stderr bytes.Buffer
	bad.Stderr = &stderr
	err := bad.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("bad config: got %v, want exit status 2", err)
	}
	if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "MAX_KEY_BYTES") {
		t.Errorf("bad config: want one line naming MAX_KEY_BYTES, got %q", stderr.String())
	}

	rs := redistest.Start(t)
	s := start(t, rs.Addr)
	_, port, _ := net.SplitHostPort(s.addr)
	check := exec.CommandContext(t.Context(), binary, "healthcheck")
	check.Env = []string{"HTTP_ADDR=127.0.0.1:" + port}
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("dubebox healthcheck: %v %s", err, out)
	}
	if code, _, err := get(s.base + "/"); err != nil || code != 200 {
		t.Errorf("GET /: %d %v", code, err)
	}
	if err := s.proc.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.proc.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v, want exit status 0", err)
	}
}

// TestHeaderLimitAnswersJSON sends header blocks over MAX_HEADER_BYTES at
// its default and at its largest value to the real server: up to the
// server's own cap, MAX_HEADER_BYTES + api.HeaderSlack, the router's JSON
// 431 answers; past it, net/http refuses the request before any handler
// runs, so that what a connection can make the server hold stays close to
// MAX_HEADER_BYTES, and the listener (api.ServerErrorsAsJSON) gives that
// refusal the same JSON shape; only the message differs.
func TestHeaderLimitAnswersJSON(t *testing.T) {
	rs := redistest.Start(t)
	for _, limit := range []int{16 << 10, 1 << 20} {
		s := start(t, rs.Addr, "MAX_HEADER_BYTES="+strconv.Itoa(limit))
		for _, tc := range []struct {
			size int
			json bool
		}{{limit + 1, true}, {limit + api.HeaderSlack/2, true}, {limit + api.HeaderSlack + 8<<10, false}} {
			// tc.json says whether the router answers (with its own
			// message) rather than net/http (through the listener).
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.base+"/v1/kv/k", nil)
			// Two headers, so that the per-line overhead counts too.
			req.Header.Set("X-Pad-A", strings.Repeat("a", tc.size/2))
			req.Header.Set("X-Pad-B", strings.Repeat("b", tc.size-tc.size/2))
			resp, err := quick.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			json := resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge &&
				strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") &&
				resp.Header.Get("X-Request-ID") != "" && strings.Contains(string(body), `"headers_too_large"`)
			router := !strings.Contains(string(body), "could not be parsed")
			if !json || router != tc.json {
				t.Errorf("MAX_HEADER_BYTES=%d, headers of %d bytes: %d %q %q; want 431 in JSON, from the router: %v", limit, tc.size, resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.json)
			}
		}
		t.Logf("faults: header limit %d: a header block just over it answered by the router, one past the server's cap %d refused by net/http; both 431 in JSON", limit, limit+api.HeaderSlack)
	}
}
