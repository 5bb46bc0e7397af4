package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/dubebox/dubebox/internal/api"
	"github.com/dubebox/dubebox/internal/config"
)

// TestNullIsRefused sends null where the document allows none: each is
// 400 naming the member, and nothing is written; ttl_seconds of a write
// may be null (the same as absent).
func TestNullIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	for _, tc := range []struct{ method, path, body, member string }{
		{"POST", "/v1/kv/n/incr", `{"by":null}`, "by"},
		{"PUT", "/v1/kv/s", `{"value":null}`, "value"},
		{"PUT", "/v1/kv/s/ttl", `{"ttl_seconds":null}`, "ttl_seconds"},
		{"PUT", "/v1/hash/h", `{"fields":null}`, "fields"},
		{"PUT", "/v1/hash/h", `{"fields":{"f":null}}`, "fields/f"},
		{"POST", "/v1/hash/h/f/incr", `{"by":null}`, "by"},
		{"POST", "/v1/list/l/push", `{"values":null}`, "values"},
		{"POST", "/v1/list/l/push", `{"values":["a",null]}`, "values/1"},
		{"POST", "/v1/list/l/push", `{"values":["a"],"end":null}`, "end"},
		{"POST", "/v1/list/l/pop", `{"count":null}`, "count"},
		{"POST", "/v1/list/l/remove", `{"value":"a","count":null}`, "count"},
		{"POST", "/v1/list/l/trim", `{"start":null,"stop":1}`, "start"},
		{"POST", "/v1/kv:batchGet", `{"keys":null}`, "keys"},
	} {
		w := e.do(t, tc.method, tc.path, tc.body)
		if w.Code != http.StatusBadRequest || errorCode(t, w) != api.CodeInvalidArgument || !strings.Contains(w.Body.String(), tc.member+" must not be null") {
			t.Errorf("%s %s %s: %d %s, want 400 saying %s must not be null", tc.method, tc.path, tc.body, w.Code, w.Body.String(), tc.member)
		}
	}
	if keys := keysOf(t, e); len(keys) != 0 {
		t.Errorf("refused requests wrote %v", keys)
	}
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/v1/kv/s", `{"value":"v","ttl_seconds":null}`},
		{"PUT", "/v1/hash/h", `{"fields":{"f":"v"},"ttl_seconds":null}`},
		{"POST", "/v1/list/l/push", `{"values":["v"],"ttl_seconds":null}`},
	} {
		if w := e.do(t, tc.method, tc.path, tc.body); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"ttl_seconds":-1`) {
			t.Errorf("%s %s %s: %d %s, want 200 without a TTL", tc.method, tc.path, tc.body, w.Code, w.Body.String())
		}
	}
}

// TestUnknownQueryParameters: a query parameter the route does not take
// (a misspelling) is refused naming it, rather than ignored.
func TestUnknownQueryParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.do(t, "POST", "/v1/list/l/push", `{"values":["a","b","c"]}`)
	for _, tc := range []struct {
		method, path string
		status       int
		says         string
	}{
		{"GET", "/v1/list/l?limt=5", 400, `unknown query parameter \"limt\": this route takes offset, limit`},
		{"HEAD", "/v1/list/l?limt=5", 400, "limt"},
		{"GET", "/v1/kv/k?ttl=5", 400, `unknown query parameter \"ttl\": this route takes none`},
		{"GET", "/v1/list/l?limit=2&offset=1", 200, `"values":["b","c"]`},
		{"GET", "/v1/keys?prefix=l&type=list&limit=10", 200, `"keys":["l"]`},
		{"GET", "/set/s/v?ttl=60&x=1", 400, `unknown query parameter \"x\": this route takes ttl`},
		{"GET", "/v1/list/l?limit=%ZZ", 400, "query string is not valid"},
	} {
		w := e.do(t, tc.method, tc.path, "")
		if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.says) {
			t.Errorf("%s %s: %d %s, want %d with %s", tc.method, tc.path, w.Code, w.Body.String(), tc.status, tc.says)
		}
	}
	if exists(t, e, "s") {
		t.Errorf("a refused /set wrote s")
	}
}

// concrete turns a route's template into a path with keys that exist.
var routeParam = regexp.MustCompile(`/:([a-z]+)`)

func concrete(route string) string {
	return routeParam.ReplaceAllStringFunc(strings.ReplaceAll(route, `\:`, ":"), func(p string) string {
		switch p {
		case "/:asset":
			return "/index.js"
		case "/:field":
			return "/f"
		}
		return "/k"
	})
}

// TestHeadAndOptionsOnEveryRoute goes over the router's routes through a
// real HTTP server: HEAD answers wherever GET does (the tutorial's /set
// aside, a write) with GET's status and headers and no body; OPTIONS is
// 204 with Allow; a method a path does not serve is 405 with the same
// Allow.
func TestHeadAndOptionsOnEveryRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.do(t, "PUT", "/v1/kv/k", `{"value":"v"}`)
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	type answer struct {
		StatusCode    int
		Header        http.Header
		ContentLength int64
	}
	send := func(method, path string) (answer, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.Header.Get("Content-Type") == "text/event-stream" && method == http.MethodGet {
			// A stream goes on until its client leaves.
			return answer{resp.StatusCode, resp.Header, resp.ContentLength}, ""
		}
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header, resp.ContentLength}, string(b)
	}
	methods := map[string][]string{}
	for _, r := range routesOf(t, e) {
		methods[r.Path] = append(methods[r.Path], r.Method)
	}
	for route, ms := range methods {
		path := concrete(route)
		if slices.Contains(ms, http.MethodGet) && route != "/set/:key/:value" {
			g, gbody := send(http.MethodGet, path)
			h, hbody := send(http.MethodHead, path)
			if h.StatusCode != g.StatusCode || hbody != "" {
				t.Errorf("HEAD %s: %d with %d bytes, GET %d: want GET's status and no body", path, h.StatusCode, len(hbody), g.StatusCode)
			}
			for name := range g.Header {
				if name != "X-Request-Id" && name != "Date" && h.Header.Get(name) != g.Header.Get(name) {
					t.Errorf("HEAD %s: %s %q, GET's %q", path, name, h.Header.Get(name), g.Header.Get(name))
				}
			}
			if int(g.ContentLength) != len(gbody) && g.ContentLength != -1 {
				t.Errorf("GET %s: Content-Length %d for %d bytes", path, g.ContentLength, len(gbody))
			}
		}
		o, obody := send(http.MethodOptions, path)
		allow := strings.Split(o.Header.Get("Allow"), ", ")
		if o.StatusCode != http.StatusNoContent || obody != "" || !slices.Contains(allow, http.MethodOptions) {
			t.Errorf("OPTIONS %s: %d Allow %q %q, want 204 with Allow", path, o.StatusCode, o.Header.Get("Allow"), obody)
		}
		for _, m := range ms {
			if !slices.Contains(allow, m) {
				t.Errorf("OPTIONS %s: Allow %q lacks %s", path, o.Header.Get("Allow"), m)
			}
		}
		p, pbody := send(http.MethodPatch, path)
		if p.StatusCode != http.StatusMethodNotAllowed || p.Header.Get("Allow") != o.Header.Get("Allow") || !strings.Contains(pbody, api.CodeMethodNotAllowed) {
			t.Errorf("PATCH %s: %d Allow %q %s, want 405 method_not_allowed with OPTIONS's Allow", path, p.StatusCode, p.Header.Get("Allow"), pbody)
		}
	}
	if r, _ := send(http.MethodHead, "/set/k/written-by-head"); r.StatusCode != http.StatusMethodNotAllowed || stored(t, e, "k") != "v" {
		t.Errorf("HEAD /set: %d, value %q; want 405 and nothing written", r.StatusCode, stored(t, e, "k"))
	}
}

// TestReadPreconditions: a read with an ETag honours If-Match (412 when no
// tag matches) before If-None-Match (304); a read without one refuses
// both; DELETE with If-None-Match: * is 404 on a missing key and 412 on
// an existing one, which stays.
func TestReadPreconditions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	tag := e.do(t, "PUT", "/v1/kv/k", `{"value":"v"}`).Header().Get("ETag")
	ftag := e.do(t, "PUT", "/v1/hash/h/f", `{"value":"v"}`).Header().Get("ETag")
	e.do(t, "POST", "/v1/list/l/push", `{"values":["a"]}`)
	for _, tc := range []struct {
		method, path, header, value string
		status                      int
	}{
		{"GET", "/v1/kv/k", "If-Match", `"nope"`, 412},
		{"HEAD", "/v1/kv/k", "If-Match", `"nope"`, 412},
		{"GET", "/v1/kv/k", "If-Match", tag, 200},
		{"GET", "/v1/kv/k", "If-Match", `"nope", ` + tag, 200},
		{"GET", "/v1/kv/k", "If-Match", "W/" + tag, 412},
		{"GET", "/v1/kv/k", "If-Match", "*", 200},
		{"GET", "/v1/kv/k", "If-Match", "nope", 400},
		{"GET", "/v1/kv/missing", "If-Match", "*", 404},
		{"GET", "/v1/kv/k", "If-None-Match", tag, 304},
		{"GET", "/get/k", "If-Match", `"nope"`, 412},
		{"GET", "/v1/hash/h/f", "If-Match", `"nope"`, 412},
		{"GET", "/v1/hash/h/f", "If-Match", ftag, 200},
		{"GET", "/v1/list/l", "If-None-Match", "*", 400},
		{"GET", "/v1/hash/h", "If-Match", "*", 400},
		{"GET", "/v1/keys/k", "If-None-Match", tag, 400},
		{"DELETE", "/v1/kv/missing", "If-None-Match", "*", 404},
		{"DELETE", "/v1/kv/k", "If-None-Match", "*", 412},
		{"DELETE", "/v1/hash/h/missing", "If-None-Match", "*", 404},
		{"DELETE", "/v1/hash/h/f", "If-None-Match", "*", 412},
	} {
		w := e.do(t, tc.method, tc.path, "", tc.header, tc.value)
		if w.Code != tc.status {
			t.Errorf("%s %s with %s: %s: %d %s, want %d", tc.method, tc.path, tc.header, tc.value, w.Code, w.Body.String(), tc.status)
		}
	}
	if stored(t, e, "k") != "v" || !exists(t, e, "h") {
		t.Errorf("conditional requests changed the keys: k=%q, h exists %t", stored(t, e, "k"), exists(t, e, "h"))
	}
}

// TestCORS: without CORS_ALLOWED_ORIGINS no answer has CORS headers; with
// it, a preflight from a named origin is answered without a token and an
// answer to it exposes the document's headers, while another origin gets
// none of them.
func TestCORS(t *testing.T) {
	t.Parallel()
	const origin, other = "https://app.example.com", "https://evil.example.com"
	plain := newEnv(t, "", withToken(rightToken))
	e := newEnv(t, "", withToken(rightToken), func(c *api.Config, _ *api.Deps) { c.CORSAllowedOrigins = []string{origin} })
	preflight := []string{"Origin", origin, "Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "authorization,content-type,if-match"}

	w := plain.do(t, "OPTIONS", "/v1/kv/k", "", preflight...)
	if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight without CORS_ALLOWED_ORIGINS: %d %v, want 204 without CORS headers", w.Code, w.Header())
	}
	w = e.do(t, "OPTIONS", "/v1/kv/k", "", preflight...)
	if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(w.Header().Get("Access-Control-Allow-Methods"), "PUT") ||
		!strings.Contains(strings.ToLower(w.Header().Get("Access-Control-Allow-Headers")), "if-match") {
		t.Errorf("preflight from %s: %d %v, want 204 allowing PUT with If-Match", origin, w.Code, w.Header())
	}
	w = e.do(t, "OPTIONS", "/v1/kv/k", "", "Origin", other, "Access-Control-Request-Method", "PUT")
	if w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from %s was allowed: %v", other, w.Header())
	}
	w = e.do(t, "PUT", "/v1/kv/k", `{"value":"v"}`, "Origin", origin, "Sec-Fetch-Site", "cross-site", "Authorization", "Bearer "+rightToken)
	if w.Code != http.StatusOK || w.Header().Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(w.Header().Get("Access-Control-Expose-Headers"), "Etag") {
		t.Errorf("a write from %s: %d %v, want 200 with CORS headers exposing ETag", origin, w.Code, w.Header())
	}
	w = e.do(t, "PUT", "/v1/kv/k", `{"value":"w"}`, "Origin", other, "Sec-Fetch-Site", "cross-site", "Authorization", "Bearer "+rightToken)
	if w.Code != http.StatusForbidden || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a write from %s: %d %v, want 403 without CORS headers", other, w.Code, w.Header())
	}
	w = e.do(t, "GET", "/v1/kv/k", "", "Origin", origin)
	if w.Code != http.StatusUnauthorized || w.Header().Get("Access-Control-Allow-Origin") != origin {
		t.Errorf("a read without a token from %s: %d %v, want a 401 the page can read", origin, w.Code, w.Header())
	}
}

// TestCORSOriginsSetting checks CORS_ALLOWED_ORIGINS's rule.
func TestCORSOriginsSetting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		origins []string
		token   string
		ok      bool
	}{
		{[]string{"https://app.example.com", "http://localhost:3000"}, "", true},
		{[]string{"*"}, rightToken, true},
		{[]string{"*"}, "", false},
		{[]string{"*", "https://a.example"}, rightToken, false},
		{[]string{"https://app.example.com/"}, rightToken, false},
		{[]string{"app.example.com"}, rightToken, false},
		{[]string{"ftp://app.example.com"}, rightToken, false},
	} {
		c := config.Default().API
		c.CORSAllowedOrigins, c.APIToken = tc.origins, tc.token
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("CORS_ALLOWED_ORIGINS=%v with token %t: %v, want ok=%t", tc.origins, tc.token != "", err, tc.ok)
		}
	}
}

// TestCORSInChromium runs a page on another origin in headless Chromium
// that writes with a token (a preflighted PUT), reads back, and reads the
// exposed ETag: it succeeds with the page's origin in
// CORS_ALLOWED_ORIGINS and fails without.
func TestCORSInChromium(t *testing.T) {
	t.Parallel()
	browser := needChromium(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<!doctype html><title>app</title>`))
	}))
	t.Cleanup(page.Close)
	ctx := headlessChromium(t, browser)
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL)); err != nil {
		t.Fatalf("the page in Chromium: %v", err)
	}
	for _, allowed := range []bool{true, false} {
		var origins []string
		if allowed {
			origins = []string{page.URL}
		}
		e := newEnv(t, "", withToken(rightToken), func(c *api.Config, _ *api.Deps) { c.CORSAllowedOrigins = origins })
		srv := httptest.NewServer(e.h)
		t.Cleanup(srv.Close)
		script := `(async () => {
  const h = {'Authorization': 'Bearer ` + rightToken + `', 'Content-Type': 'application/json'};
  try {
    const put = await fetch('` + srv.URL + `/v1/kv/from-page', {method: 'PUT', headers: h, body: '{"value":"hello"}'});
    const got = await fetch('` + srv.URL + `/v1/kv/from-page', {headers: h});
    return put.status + ' ' + (await got.json()).value + ' ' + (got.headers.get('ETag') !== null);
  } catch (e) { return 'failed: ' + e; }
})()`
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		result, err := chromedp.Run(tctx, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		written := stored(t, e, "from-page")
		switch {
		case allowed && (result != "200 hello true" || written != "hello"):
			t.Errorf("with CORS_ALLOWED_ORIGINS=%s the page got %q and wrote %q, want 200 hello true", page.URL, result, written)
		case !allowed && (!strings.HasPrefix(result, "failed") || written != ""):
			t.Errorf("without CORS_ALLOWED_ORIGINS the page got %q and wrote %q, want a failed fetch and nothing written", result, written)
		}
		t.Logf("CORS_ALLOWED_ORIGINS=%v: the page on another origin got %q", origins, result)
	}
}

// TestRoutesBothWays sends to every data route a request it accepts and
// one it refuses, on keys of its own, in an order that makes each answer
// certain: make contract replays these requests (with the other suites')
// and needs both answers of every data route, whatever else the suites
// happen to send.
func TestRoutesBothWays(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/set/bw-s/v", "", 200},
		{"GET", "/set/bw-s/v?ttl=0", "", 400},
		{"GET", "/get/bw-s", "", 200},
		{"GET", "/get/bw-s?x=1", "", 400},
		{"PUT", "/v1/kv/bw-s", `{"value":"v","ttl_seconds":60}`, 200},
		{"PUT", "/v1/kv/bw-s", `{}`, 400},
		{"POST", "/v1/kv:batchGet", `{"keys":["bw-s"]}`, 200},
		{"POST", "/v1/kv:batchGet", `{"keys":[]}`, 400},
		{"GET", "/v1/kv/bw-s", "", 200},
		{"GET", "/v1/kv/bw-missing", "", 404},
		{"GET", "/v1/kv/bw-s/ttl", "", 200},
		{"GET", "/v1/kv/bw-missing/ttl", "", 404},
		{"PUT", "/v1/kv/bw-s/ttl", `{"ttl_seconds":60}`, 200},
		{"PUT", "/v1/kv/bw-missing/ttl", `{"ttl_seconds":60}`, 404},
		{"DELETE", "/v1/kv/bw-s/ttl", "", 200},
		{"DELETE", "/v1/kv/bw-missing/ttl", "", 404},
		{"POST", "/v1/kv/bw-n/incr", `{"by":2}`, 200},
		{"POST", "/v1/kv/bw-s/incr", "", 409},
		{"GET", "/v1/keys?prefix=bw-&limit=10", "", 200},
		{"GET", "/v1/keys?limit=0", "", 400},
		{"GET", "/v1/keys/bw-s", "", 200},
		{"GET", "/v1/keys/bw-missing", "", 404},
		{"PUT", "/v1/keys/bw-s/ttl", `{"ttl_seconds":60}`, 200},
		{"PUT", "/v1/keys/bw-missing/ttl", `{"ttl_seconds":60}`, 404},
		{"GET", "/v1/keys/bw-s/ttl", "", 200},
		{"GET", "/v1/keys/bw-missing/ttl", "", 404},
		{"DELETE", "/v1/keys/bw-s/ttl", "", 200},
		{"DELETE", "/v1/keys/bw-missing/ttl", "", 404},
		{"PUT", "/v1/hash/bw-h", `{"fields":{"f":"v","n":"1"}}`, 200},
		{"PUT", "/v1/hash/bw-h", `{}`, 400},
		{"GET", "/v1/hash/bw-h", "", 200},
		{"GET", "/v1/hash/bw-missing", "", 404},
		{"PUT", "/v1/hash/bw-h/g", `{"value":"w"}`, 200},
		{"PUT", "/v1/hash/bw-h/g", `{}`, 400},
		{"GET", "/v1/hash/bw-h/f", "", 200},
		{"GET", "/v1/hash/bw-h/missing", "", 404},
		{"POST", "/v1/hash/bw-h/n/incr", `{"by":2}`, 200},
		{"POST", "/v1/hash/bw-h/f/incr", "", 409},
		{"DELETE", "/v1/hash/bw-h/g", "", 204},
		{"DELETE", "/v1/hash/bw-h/g", "", 404},
		{"POST", "/v1/list/bw-l/push", `{"values":["a","b","c","d"]}`, 200},
		{"POST", "/v1/list/bw-l/push", `{"values":[]}`, 400},
		{"GET", "/v1/list/bw-l", "", 200},
		{"GET", "/v1/list/bw-missing", "", 404},
		{"GET", "/v1/list/bw-l/length", "", 200},
		{"GET", "/v1/list/bw-missing/length", "", 404},
		{"POST", "/v1/list/bw-l/pop", `{"count":1}`, 200},
		{"POST", "/v1/list/bw-missing/pop", "", 404},
		{"POST", "/v1/list/bw-l/remove", `{"value":"b"}`, 200},
		{"POST", "/v1/list/bw-missing/remove", `{"value":"b"}`, 404},
		{"POST", "/v1/list/bw-l/trim", `{"start":0,"stop":0}`, 200},
		{"POST", "/v1/list/bw-l/trim", `{"start":"0","stop":1}`, 400},
		{"DELETE", "/v1/list/bw-l", "", 204},
		{"DELETE", "/v1/list/bw-l", "", 404},
		{"DELETE", "/v1/hash/bw-h", "", 204},
		{"DELETE", "/v1/hash/bw-h", "", 404},
		{"DELETE", "/v1/kv/bw-s", "", 204},
		{"DELETE", "/v1/kv/bw-s", "", 404},
		{"DELETE", "/v1/keys/bw-n", "", 204},
		{"DELETE", "/v1/keys/bw-n", "", 404},
		{"POST", "/v1/channels/bw-c/messages", `{"message":"m"}`, 200},
		{"POST", "/v1/channels/bw-c/messages", `{"message":["m"]}`, 400},
		{"GET", "/v1/channels/bw-c/events?x=1", "", 400},
		{"GET", "/v1/kv/bw-s/events?x=1", "", 400},
		{"GET", "/v1/hash/bw-h/events?x=1", "", 400},
	} {
		if w := e.do(t, tc.method, tc.path, tc.body); w.Code != tc.status {
			t.Errorf("%s %s %s: %d %s, want %d", tc.method, tc.path, tc.body, w.Code, w.Body.String(), tc.status)
		}
	}
	// The streams, accepted, need a real connection.
	for _, path := range []string{"/v1/channels/bw-c/events", "/v1/kv/bw-s/events", "/v1/hash/bw-h/events"} {
		if s, status := e.open(t, path); status != http.StatusOK {
			t.Errorf("GET %s: %d", path, status)
		} else {
			s.close()
		}
	}
}

// TestUnencodableValue: a value another client wrote to Redis that JSON
// cannot carry (bytes that are not UTF-8) is never answered as JSON (no
// U+FFFD in place of its bytes, no empty 200): a JSON read is 406
// not_acceptable, saying how to read the bytes, and a batch read says the
// same of the key.
func TestUnencodableValue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	if err := e.rdb.Set(t.Context(), e.prefix+"bin", "\xff\xfe", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/kv/bin", "/get/bin"} {
		w := e.do(t, "GET", path, "")
		if w.Code != http.StatusNotAcceptable || errorCode(t, w) != api.CodeNotAcceptable || !strings.Contains(w.Body.String(), "application/octet-stream") {
			t.Errorf("GET %s of a value that is not UTF-8: %d %q, want 406 not_acceptable naming application/octet-stream", path, w.Code, w.Body.String())
		}
		if w.Header().Get("ETag") != "" {
			t.Errorf("GET %s: 406 with an ETag", path)
		}
	}
	w := e.do(t, "POST", "/v1/kv:batchGet", `{"keys":["bin"]}`)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"code":"not_acceptable"`) {
		t.Errorf("batch read of a value that is not UTF-8: %d %s", w.Code, w.Body.String())
	}
}

// TestRawRead: Accept: application/octet-stream reads a string's bytes as
// they are, every byte value included, with its length, ETag and TTL in
// headers; If-None-Match answers 304, HEAD the headers; JSON stays the
// default.
func TestRawRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	var all strings.Builder
	for b := range 256 {
		all.WriteByte(byte(b))
	}
	if err := e.rdb.Set(t.Context(), e.prefix+"bytes", all.String(), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	for _, accept := range []string{"application/octet-stream", "application/json;q=0.5, application/octet-stream", "application/octet-stream, */*"} {
		w := e.do(t, "GET", "/v1/kv/bytes", "", "Accept", accept)
		if w.Code != http.StatusOK || w.Body.String() != all.String() || w.Header().Get("Content-Type") != "application/octet-stream" ||
			w.Header().Get("Content-Length") != "256" || w.Header().Get("X-TTL-Seconds") != "60" || w.Header().Get("ETag") == "" {
			t.Fatalf("Accept %s: %d %v, %d bytes", accept, w.Code, w.Header(), w.Body.Len())
		}
	}
	tag := e.do(t, "GET", "/v1/kv/bytes", "", "Accept", "application/octet-stream").Header().Get("ETag")
	if w := e.do(t, "GET", "/v1/kv/bytes", "", "Accept", "application/octet-stream", "If-None-Match", tag); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Errorf("If-None-Match on a raw read: %d %d bytes", w.Code, w.Body.Len())
	}
	if w := e.do(t, "HEAD", "/v1/kv/bytes", "", "Accept", "application/octet-stream"); w.Code != http.StatusOK || w.Header().Get("Content-Length") != "256" {
		t.Errorf("HEAD raw: %d %v", w.Code, w.Header())
	}
	e.do(t, "PUT", "/v1/kv/text", `{"value":"héllo"}`)
	for accept, want := range map[string]string{"": "application/json; charset=utf-8", "*/*": "application/json; charset=utf-8",
		"application/json, application/octet-stream;q=0.1": "application/json; charset=utf-8", "application/octet-stream": "application/octet-stream"} {
		w := e.do(t, "GET", "/v1/kv/text", "", "Accept", accept)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != want {
			t.Errorf("Accept %q: %d %s, want %s", accept, w.Code, w.Header().Get("Content-Type"), want)
		}
	}
}
