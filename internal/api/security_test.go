package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/dubebox/dubebox/internal/api"
	"github.com/dubebox/dubebox/internal/redistest"
	"go.opentelemetry.io/otel/trace"
)

const (
	rightToken = "right-token-0123456789"
	nextToken  = "next-token-0123456789"
)

// behind sends a request as a trusted proxy at 10.0.0.1 would, for the
// client at client.
func (e *env) behind(t *testing.T, client, method, path, body string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	var r *http.Request
	if body != "" {
		r = httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(body))
	} else {
		r = httptest.NewRequestWithContext(t.Context(), method, path, nil)
	}
	r.RemoteAddr = "10.0.0.1:4000"
	r.Header.Set("X-Forwarded-For", client)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// TestTrustedProxies has an attacker behind the same load balancer as a
// client with the right token send wrong tokens until its address is over
// its budget: with TRUSTED_PROXIES set to the load balancer, the budget is
// the attacker's own and the client is never refused; the access log
// names each real client; without TRUSTED_PROXIES, X-Forwarded-For is not
// believed. And whatever the address's failures, the right token passes.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", func(c *api.Config, _ *api.Deps) {
		c.APIToken, c.TrustedProxies = rightToken, []string{"10.0.0.0/24"}
	})
	for range 30 {
		if w := e.behind(t, "203.0.113.66", "GET", "/v1/kv/k", "", "Authorization", "Bearer wrong-token-0123456789"); w.Code != 401 && w.Code != 429 {
			t.Fatalf("a wrong token: %d", w.Code)
		}
		if w := e.behind(t, "198.51.100.7", "GET", "/v1/kv/k", "", "Authorization", "Bearer "+rightToken); w.Code != 404 {
			t.Fatalf("the right token behind the same proxy as an attacker: %d %s", w.Code, w.Body.String())
		}
	}
	if w := e.behind(t, "203.0.113.66", "GET", "/v1/kv/k", "", "Authorization", "Bearer wrong-token-0123456789"); w.Code != 429 {
		t.Errorf("the attacker after 31 failures: %d, want 429", w.Code)
	}
	// The right token from the attacker's own address still passes.
	if w := e.behind(t, "203.0.113.66", "GET", "/v1/kv/k", "", "Authorization", "Bearer "+rightToken); w.Code != 404 {
		t.Errorf("the right token from an address over its budget: %d, want it let in (404)", w.Code)
	}
	ips := map[string]bool{}
	for _, l := range e.logs.FilterMessage("request").All() {
		ips[l.ContextMap()["client_ip"].(string)] = true
	}
	if !ips["203.0.113.66"] || !ips["198.51.100.7"] || ips["10.0.0.1"] {
		t.Errorf("the access log's client_ip: %v, want the clients behind the proxy", ips)
	}

	// Without TRUSTED_PROXIES, a forged X-Forwarded-For changes nothing:
	// the budget is the connection's.
	plain := newEnv(t, "", withToken(rightToken))
	for i := range 12 {
		r := httptest.NewRequestWithContext(t.Context(), "GET", "/v1/kv/k", nil)
		r.RemoteAddr = "192.0.2.9:1234"
		r.Header.Set("X-Forwarded-For", "203.0.113."+string(rune('0'+i%10)))
		r.Header.Set("Authorization", "Bearer wrong-token-0123456789")
		w := httptest.NewRecorder()
		plain.h.ServeHTTP(w, r)
		if i == 11 && w.Code != 429 {
			t.Errorf("forged X-Forwarded-For escaped the connection's budget: %d", w.Code)
		}
	}
}

// TestTokenRotation runs with two tokens in API_TOKEN, as during a
// rotation: both are let in, anything else is not; the bearer scheme's
// case does not matter (RFC 9110).
func TestTokenRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", withToken(nextToken+","+rightToken))
	for _, tc := range []struct {
		auth string
		code int
	}{
		{"Bearer " + rightToken, 404},
		{"Bearer " + nextToken, 404},
		{"bearer " + nextToken, 404},
		{"BEARER " + rightToken, 404},
		{"Bearer " + nextToken + "," + rightToken, 401},
		{"Bearer " + rightToken[:len(rightToken)-1], 401},
		{"Basic " + rightToken, 401},
	} {
		if w := e.do(t, "GET", "/v1/kv/nothing", "", "Authorization", tc.auth); w.Code != tc.code {
			t.Errorf("Authorization %q: %d, want %d", tc.auth, w.Code, tc.code)
		}
	}
}

// TestBrowserGuard checks what a browser's requests from another site
// meet: without a token (and without ALLOW_NO_AUTH) only a Host naming
// this machine is answered; a write whose Sec-Fetch-Site or Origin says it
// comes from another origin is refused, the tutorial's /set (a write by
// GET) too, while a read is answered (the browser keeps the answer from
// the page) and clients that are not browsers are not affected.
func TestBrowserGuard(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", func(c *api.Config, _ *api.Deps) { c.AllowNoAuth = false })
	for _, tc := range []struct {
		name, method, path, body string
		host                     string
		headers                  []string
		code                     int
	}{
		{"read on localhost", "GET", "/v1/kv/nothing", "", "localhost:5000", nil, 404},
		{"read on 127.0.0.1", "GET", "/v1/kv/nothing", "", "127.0.0.1:5000", nil, 404},
		{"read on [::1]", "GET", "/v1/kv/nothing", "", "[::1]:5000", nil, 404},
		{"read on a rebound name", "GET", "/v1/kv/nothing", "", "rebind.evil.example:5000", nil, 403},
		{"write on a rebound name", "PUT", "/v1/kv/k", `{"value":"v"}`, "rebind.evil.example", nil, 403},
		{"cross-site text/plain POST", "POST", "/v1/list/l/push", `{"values":["pwned"]}`, "localhost:5000",
			[]string{"Sec-Fetch-Site", "cross-site", "Content-Type", "text/plain", "Origin", "https://evil.example"}, 403},
		{"same-site form POST", "POST", "/v1/kv/n/incr", "", "localhost:5000",
			[]string{"Sec-Fetch-Site", "same-site", "Content-Type", "application/x-www-form-urlencoded", "Origin", "http://localhost:3000"}, 403},
		{"old browser, Origin only", "POST", "/v1/kv/n/incr", "", "localhost:5000", []string{"Origin", "https://evil.example"}, 403},
		{"cross-site /set by an <img>", "GET", "/set/csrf/pwned", "", "localhost:5000", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"cross-site read", "GET", "/v1/kv/nothing", "", "localhost:5000", []string{"Sec-Fetch-Site", "cross-site"}, 404},
		{"same-origin write", "PUT", "/v1/kv/k", `{"value":"v"}`, "localhost:5000",
			[]string{"Sec-Fetch-Site", "same-origin", "Origin", "http://localhost:5000"}, 200},
		{"curl's write", "POST", "/v1/kv/n/incr", "", "localhost:5000", nil, 200},
	} {
		r := httptest.NewRequestWithContext(t.Context(), tc.method, tc.path, strings.NewReader(tc.body))
		r.Host = tc.host
		for i := 0; i+1 < len(tc.headers); i += 2 {
			r.Header.Set(tc.headers[i], tc.headers[i+1])
		}
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		if w.Code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body.String(), tc.code)
		}
	}
	if keys := keysOf(t, e); keys["csrf"] != "" || keys["l"] != "" {
		t.Errorf("a refused write changed Redis: %v", keys)
	}
}

// TestCrossOriginPageInChromium opens a page of another origin in headless
// Chromium that tries what a malicious site would against a token-less
// instance on the visitor's machine: a text/plain POST, a form POST, the
// tutorial's /set from an <img>, and a read; and then the instance itself
// under a name rebound to 127.0.0.1. Nothing is written, nothing is read.
func TestCrossOriginPageInChromium(t *testing.T) {
	t.Parallel()
	browser := needChromium(t)
	e := newEnv(t, "", func(c *api.Config, _ *api.Deps) { c.AllowNoAuth = false })
	e.do(t, "PUT", "/v1/kv/secret", `{"value":"the-secret-value"}`, "Host", "localhost")
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	apiURL := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	page := `<!doctype html><title>evil</title><form id=f method=POST action="` + apiURL + `/v1/kv/form/incr" target=sink enctype="text/plain"><input name=x value=y></form>
<iframe name=sink></iframe><img src="` + apiURL + `/set/csrf/pwned"><script>
window.result = 'pending';
fetch('` + apiURL + `/v1/list/l/push', {method: 'POST', mode: 'no-cors', headers: {'Content-Type': 'text/plain'}, body: '{"values":["pwned"]}'})
  .catch(() => {})
  .then(() => fetch('` + apiURL + `/v1/kv/secret'))
  .then(r => r.text()).then(t => { window.result = t }, e => { window.result = 'blocked: ' + e });
document.getElementById('f').submit();
</script>`
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(evil.Close)

	ctx := headlessChromium(t, browser, chromedp.Flag("host-resolver-rules", "MAP rebind.evil.example 127.0.0.1"))
	if err := chromedp.Do(ctx, chromedp.Navigate(evil.URL)); err != nil {
		t.Fatalf("the page in Chromium: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.result !== 'pending'`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the page's requests never ended: %v", err)
	}
	// The form and the image load on their own; give them a moment.
	time.Sleep(500 * time.Millisecond)
	result, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.result`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(result, "the-secret-value") {
		t.Errorf("a page on another origin read the value: %q", result)
	}
	for _, k := range []string{"csrf", "l", "form"} {
		if exists(t, e, k) {
			t.Errorf("a page on another origin wrote %s", k)
		}
	}
	// DNS rebinding: the page's own name now points at 127.0.0.1, so the
	// browser takes the API for the page's origin and would let it read.
	rebound := strings.Replace(srv.URL, "127.0.0.1", "rebind.evil.example", 1)
	if err := chromedp.Do(ctx, chromedp.Navigate(rebound+"/v1/kv/secret")); err != nil {
		t.Fatalf("the rebound name in Chromium: %v", err)
	}
	body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(body, "the-secret-value") || !strings.Contains(body, "forbidden") {
		t.Errorf("under a rebound name the API answered %q, want 403 forbidden", body)
	}
	t.Logf("a page on another origin saw %q", result)
}

// TestTraceContextFromTrustedProxiesOnly sends the same sampled
// traceparent from a client and through a trusted proxy: only the proxy's
// is followed, so a client cannot choose to have its requests traced.
func TestTraceContextFromTrustedProxiesOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", func(c *api.Config, _ *api.Deps) { c.TrustedProxies = []string{"10.0.0.0/24"} })
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	e.do(t, "GET", "/healthz", "", "traceparent", parent)
	e.behind(t, "203.0.113.1", "GET", "/healthz", "", "traceparent", parent)
	var followed, fresh int
	for _, s := range e.spans.Ended() {
		if s.SpanKind() != trace.SpanKindServer {
			continue
		}
		if s.SpanContext().TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736" {
			followed++
		} else {
			fresh++
		}
	}
	if followed != 1 || fresh != 1 {
		t.Errorf("%d server spans followed the traceparent and %d started their own, want 1 each (the proxy's, the client's)", followed, fresh)
	}
}

// TestRequestHeadLimits checks the URL bound and the data answers' own
// headers.
func TestRequestHeadLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	w := e.do(t, "GET", "/v1/kv/"+strings.Repeat("k", api.MaxURLBytes), "")
	if w.Code != http.StatusRequestURITooLong || errorCode(t, w) != "uri_too_long" {
		t.Errorf("a path over MaxURLBytes: %d %s", w.Code, w.Body.String())
	}
	if line := e.logs.FilterMessage("request").All(); len(line) != 1 || len(line[0].ContextMap()["path"].(string)) > 1100 {
		t.Errorf("the long path was logged whole, or not at all")
	}
	w = e.do(t, "PUT", "/v1/kv/k", `{"value":"v"}`)
	if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("a data answer's headers: %v", w.Header())
	}
}

// TestReadinessIsShared calls /readyz many times at once: the answers
// share one Redis check a second, and a failure says only that the store
// does not answer.
func TestReadinessIsShared(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	e := newEnv(t, srv.Addr)
	before := sample(t, e.metrics, "dubebox_redis_commands_total", "command", "ping", "status", "ok", "node", srv.Addr)
	for range 50 {
		if w := e.do(t, "GET", "/readyz", ""); w.Code != 200 {
			t.Fatalf("/readyz: %d", w.Code)
		}
	}
	if n := sample(t, e.metrics, "dubebox_redis_commands_total", "command", "ping", "status", "ok", "node", srv.Addr) - before; n > 2 {
		t.Errorf("50 calls of /readyz sent %v PINGs, want one a second", n)
	}
	srv.Kill()
	time.Sleep(1100 * time.Millisecond)
	w := e.do(t, "GET", "/readyz", "")
	if w.Code != 503 || !strings.Contains(w.Body.String(), "not ready: the store does not answer") {
		t.Errorf("/readyz with Redis gone: %d %s", w.Code, w.Body.String())
	}
}

// TestLoggedPaths checks the path that reaches the access line and the
// span: a path that only partly matches the tutorial's /set/:key/:value
// keeps its path (nothing was redacted, as no value was taken from it),
// and a long path is cut to a bounded length in both.
func TestLoggedPaths(t *testing.T) {
	t.Parallel()
	long := "/v1/nothing/" + strings.Repeat("p", 6000)
	for _, tc := range []struct {
		name, path string
		status     int
		want       func(string) bool
	}{
		{"partly the tutorial's route", "/set/k/v/extra", 404, func(p string) bool { return p == "/set/k/v/extra" }},
		{"long", long, 404, func(p string) bool {
			return strings.HasPrefix(long, strings.TrimSuffix(p, "…")) && len(p) <= 1100 && len(p) > 1000
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "")
			if w := e.do(t, "GET", tc.path, ""); w.Code != tc.status {
				t.Fatalf("GET: %d %s", w.Code, w.Body.String())
			}
			lines := e.logs.FilterMessage("request").All()
			if len(lines) != 1 {
				t.Fatalf("want one access line, got %d", len(lines))
			}
			if p, _ := lines[0].ContextMap()["path"].(string); !tc.want(p) {
				t.Errorf("logged path %.80q (%d bytes)", p, len(p))
			}
			var spanPath string
			for _, s := range e.spans.Ended() {
				if s.SpanKind() == trace.SpanKindServer {
					spanPath = attrs(s)["url.path"].AsString()
				}
			}
			if !tc.want(spanPath) {
				t.Errorf("span url.path %.80q (%d bytes)", spanPath, len(spanPath))
			}
		})
	}
}
