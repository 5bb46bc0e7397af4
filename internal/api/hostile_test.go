package api_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// TestHostileInput sends requests a hostile or broken client sends. Each
// must get a 4xx in the error shape (HEAD has no body), never a 5xx, and
// Redis's keyspace must be unchanged afterwards, including a key planted
// outside the prefix.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", withToken(rightToken))
	ctx := context.Background()
	outside := "outside:" + e.prefix + "planted"
	if err := e.rdb.Set(ctx, outside, "untouchable", 0).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rdb.Del(context.Background(), outside) })
	auth := []string{"Authorization", "Bearer " + rightToken}
	e.do(t, "PUT", "/v1/kv/existing", `{"value":"v"}`, auth...)
	e.do(t, "PUT", "/v1/hash/h", `{"fields":{"f":"v"}}`, auth...)
	before := keysOf(t, e)

	big := strings.Repeat("x", 1025)
	deep := strings.Repeat(`{"a":`, 20) + `1` + strings.Repeat(`}`, 20)
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		headers []string
		status  int
	}{
		{"oversized key", "PUT", "/v1/kv/" + strings.Repeat("k", 33), `{"value":"v"}`, nil, 400},
		{"oversized field", "PUT", "/v1/hash/h/" + strings.Repeat("f", 33), `{"value":"v"}`, nil, 400},
		{"oversized field in body", "PUT", "/v1/hash/h", `{"fields":{"` + strings.Repeat("f", 33) + `":"v"}}`, nil, 400},
		{"oversized value", "PUT", "/v1/kv/k", `{"value":"` + big + `"}`, nil, 413},
		{"oversized field value", "PUT", "/v1/hash/h/f", `{"value":"` + big + `"}`, nil, 413},
		{"oversized body", "PUT", "/v1/kv/k", `{"value":"v","x":"` + strings.Repeat(" ", 80<<10) + `"}`, nil, 413},
		{"oversized header", "GET", "/v1/kv/existing", "", []string{"X-Big", strings.Repeat("h", 20<<10)}, 431},
		{"invalid JSON", "PUT", "/v1/kv/k", `{"value":"v"`, nil, 400},
		{"not JSON at all", "PUT", "/v1/kv/k", `value=v`, nil, 400},
		{"trailing data", "PUT", "/v1/kv/k", `{"value":"v"} {"value":"w"}`, nil, 400},
		{"trailing garbage", "PUT", "/v1/kv/k", `{"value":"v"}x`, nil, 400},
		{"duplicate field", "PUT", "/v1/kv/k", `{"value":"v","value":"w"}`, nil, 400},
		{"duplicate hash field", "PUT", "/v1/hash/h", `{"fields":{"a":"1","a":"2"}}`, nil, 400},
		{"unknown field", "PUT", "/v1/kv/k", `{"value":"v","admin":true}`, nil, 400},
		{"wrong type value", "PUT", "/v1/kv/k", `{"value":{"nested":"v"}}`, nil, 400},
		{"wrong type fields", "PUT", "/v1/hash/h", `{"fields":["a","b"]}`, nil, 400},
		{"array body", "PUT", "/v1/kv/k", `["v"]`, nil, 400},
		{"null body", "PUT", "/v1/kv/k", `null`, nil, 400},
		{"deep nesting", "PUT", "/v1/kv/k", deep, nil, 400},
		{"deep nesting in incr", "POST", "/v1/kv/n/incr", deep, nil, 400},
		{"ttl zero", "PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":0}`, nil, 400},
		{"ttl negative", "PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":-1}`, nil, 400},
		{"ttl float", "PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":0.5}`, nil, 400},
		{"ttl string", "PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":"60"}`, nil, 400},
		{"ttl past Redis's largest", "PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":9223372036854775807}`, nil, 400},
		{"ttl beyond int64", "PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":1e30}`, nil, 400},
		{"ttl route negative", "PUT", "/v1/kv/existing/ttl", `{"ttl_seconds":-5}`, nil, 400},
		{"seed ttl string", "GET", "/set/k/v?ttl=soon", "", nil, 400},
		{"incr by float", "POST", "/v1/kv/n/incr", `{"by":0.1}`, nil, 400},
		{"incr by huge", "POST", "/v1/kv/n/incr", `{"by":1e40}`, nil, 400},
		{"invalid UTF-8 key", "GET", "/v1/kv/%C3%28", "", nil, 400},
		{"invalid UTF-8 value", "PUT", "/v1/kv/k", "{\"value\":\"\xff\xfe\"}", nil, 400},
		{"control character key", "GET", "/v1/kv/a%07b", "", nil, 400},
		{"CR LF in key", "PUT", "/v1/kv/a%0D%0Ab", `{"value":"v"}`, nil, 400},
		{"NUL in key", "PUT", "/v1/kv/a%00b", `{"value":"v"}`, nil, 400},
		{"NUL in field", "PUT", "/v1/hash/h/a%00b", `{"value":"v"}`, nil, 400},
		{"encoded slash in key", "PUT", "/v1/kv/..%2Foutside", `{"value":"v"}`, nil, 400},
		{"encoded slash in field", "GET", "/v1/hash/h/a%2Fb", "", nil, 400},
		{"dot dot key", "PUT", "/v1/kv/..", `{"value":"v"}`, nil, 400},
		{"dot key", "GET", "/v1/kv/.", "", nil, 400},
		{"dot dot field", "DELETE", "/v1/hash/h/..", "", nil, 400},
		{"key route ttl negative", "PUT", "/v1/keys/h/ttl", `{"ttl_seconds":-5}`, nil, 400},
		{"key route ttl missing", "PUT", "/v1/keys/h/ttl", `{}`, nil, 400},
		{"key route NUL in key", "DELETE", "/v1/keys/a%00b", "", nil, 400},
		{"key route encoded slash", "DELETE", "/v1/keys/..%2Fh", "", nil, 400},
		{"key route wrong method", "POST", "/v1/keys/h", "", nil, 405},
		{"list push too many", "POST", "/v1/list/l/push", `{"values":[` + strings.Repeat(`"v",`, 1000) + `"v"]}`, nil, 400},
		{"list push oversized value", "POST", "/v1/list/l/push", `{"values":["` + big + `"]}`, nil, 413},
		{"list push values not strings", "POST", "/v1/list/l/push", `{"values":[1,2]}`, nil, 400},
		{"list push ttl zero", "POST", "/v1/list/l/push", `{"values":["v"],"ttl_seconds":0}`, nil, 400},
		{"list pop huge count", "POST", "/v1/list/l/pop", `{"count":1e9}`, nil, 400},
		{"list read negative offset", "GET", "/v1/list/l?offset=-1", "", nil, 400},
		{"list read limit not a number", "GET", "/v1/list/l?limit=ten", "", nil, 400},
		{"list trim floats", "POST", "/v1/list/l/trim", `{"start":0.5,"stop":1}`, nil, 400},
		{"list remove without value", "POST", "/v1/list/l/remove", `{"count":1}`, nil, 400},
		{"keys listing control character in prefix", "GET", "/v1/keys?prefix=a%07", "", nil, 400},
		{"keys listing prefix too long", "GET", "/v1/keys?prefix=" + strings.Repeat("p", 33), "", nil, 400},
		{"keys listing forged cursor", "GET", "/v1/keys?cursor=OTk5OTkuMQ", "", nil, 400},
		{"keys listing cursor overflow", "GET", "/v1/keys?cursor=MS45OTk5OTk5OTk5OTk5OTk5OTk5OTk5", "", nil, 400},
		{"keys listing huge limit", "GET", "/v1/keys?limit=99999999999999999999", "", nil, 400},
		{"batch get too many keys", "POST", "/v1/kv:batchGet", `{"keys":[` + strings.Repeat(`"k",`, 100) + `"k"]}`, nil, 400},
		{"batch get no keys", "POST", "/v1/kv:batchGet", `{"keys":[]}`, nil, 400},
		{"batch get key with NUL", "POST", "/v1/kv:batchGet", `{"keys":["a\u0000"]}`, nil, 400},
		{"batch get keys not strings", "POST", "/v1/kv:batchGet", `{"keys":[1]}`, nil, 400},
		{"batch get as GET", "GET", "/v1/kv:batchGet", "", nil, 405},
		{"If-Match unquoted", "PUT", "/v1/kv/k", `{"value":"v"}`, []string{"If-Match", "abc"}, 400},
		{"If-Match unbalanced quote", "DELETE", "/v1/kv/existing", "", []string{"If-Match", `"abc`}, 400},
		{"If-Match on incr", "POST", "/v1/kv/n/incr", "", []string{"If-Match", "*"}, 400},
		{"If-None-Match on a list push", "POST", "/v1/list/l/push", `{"values":["v"]}`, []string{"If-None-Match", "*"}, 400},
		{"If-Match stale", "PUT", "/v1/kv/existing", `{"value":"w"}`, []string{"If-Match", `"0000000000000000000000000000000000000000"`}, 412},
		{"unknown route", "GET", "/v1/admin", "", nil, 404},
		{"unknown version", "PUT", "/v2/kv/k", `{"value":"v"}`, nil, 404},
		{"path traversal route", "GET", "/v1/kv/../../etc/passwd", "", nil, 404},
		{"wrong method", "POST", "/v1/kv/k", `{"value":"v"}`, nil, 405},
		{"wrong method on hash field", "PATCH", "/v1/hash/h/f", "", nil, 405},
		// HEAD is a read wherever GET is one; the tutorial's /set writes
		// through a GET, and HEAD must not write.
		{"HEAD on the seed write", "HEAD", "/set/k/v", "", nil, 405},
		{"TRACE", "TRACE", "/v1/kv/existing", "", nil, 405},
		{"no token", "DELETE", "/v1/kv/existing", "", []string{"Authorization", ""}, 401},
		{"malformed Authorization", "DELETE", "/v1/kv/existing", "", []string{"Authorization", "Bearer"}, 401},
		{"Authorization with newline", "DELETE", "/v1/kv/existing", "", []string{"Authorization", "Bearer " + rightToken + "\nX: y"}, 401},
		// RFC 9110 allows several spaces after the scheme, but not a
		// token with a space of its own.
		{"token with a trailing space", "DELETE", "/v1/kv/existing", "", []string{"Authorization", "Bearer right-token-0123456789 "}, 401},
		{"token with a prefix of the right one", "DELETE", "/v1/kv/existing", "", []string{"Authorization", "Bearer right-token-012345678"}, 401},
		{"token in lower-case scheme", "DELETE", "/v1/kv/existing", "", []string{"Authorization", "bearer wrong"}, 401},
		{"hostile request id with a valid-looking request", "PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":0}`,
			[]string{"X-Request-ID", "abc\r\nSet-Cookie: x=y"}, 400},
		{"10 KB request id", "PUT", "/v1/kv/k", `{}`, []string{"X-Request-ID", strings.Repeat("r", 10<<10)}, 400},
	}
	if len(tests) < 40 {
		t.Fatalf("the suite has %d cases, want at least 40", len(tests))
	}
	counts := map[int]int{}
	for _, tc := range tests {
		headers := tc.headers
		if len(headers) == 0 || headers[0] != "Authorization" {
			headers = append(append([]string{}, auth...), headers...)
		}
		w := e.do(t, tc.method, tc.path, tc.body, headers...)
		counts[w.Code]++
		if w.Code != tc.status {
			t.Errorf("%s: got %d, want %d: %s", tc.name, w.Code, tc.status, w.Body.String())
			continue
		}
		errorCode(t, w)
		if rid := w.Header().Get("X-Request-ID"); len(rid) > 128 || strings.ContainsAny(rid, "\r\n") {
			t.Errorf("%s: the hostile request id came back: %q", tc.name, rid)
		}
	}
	if after := keysOf(t, e); !reflect.DeepEqual(before, after) {
		t.Errorf("hostile requests changed Redis:\nbefore %v\nafter  %v", before, after)
	}
	if v := e.rdb.Get(ctx, outside).Val(); v != "untouchable" {
		t.Errorf("the key outside the prefix changed: %q", v)
	}
	t.Logf("hostile input: %d requests, by status %v, keyspace unchanged", len(tests), counts)
}

// TestReadToken checks API_READ_TOKEN: it reads, and is refused writes
// with 403.
func TestReadToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", func(c *apiConfig, _ *apiDeps) { c.APIToken, c.APIReadToken = "full-tok", "read-tok" })
	full := []string{"Authorization", "Bearer full-tok"}
	read := []string{"Authorization", "Bearer read-tok"}
	if w := e.do(t, "PUT", "/v1/kv/k", `{"value":"v"}`, full...); w.Code != 200 {
		t.Fatalf("full token PUT: %d", w.Code)
	}
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		code   string
	}{
		{"read GET", "GET", "/v1/kv/k", "", 200, ""},
		{"read seed get", "GET", "/get/k", "", 200, ""},
		{"read TTL", "GET", "/v1/kv/k/ttl", "", 200, ""},
		{"read PUT", "PUT", "/v1/kv/k", `{"value":"w"}`, 403, "forbidden"},
		{"read DELETE", "DELETE", "/v1/kv/k", "", 403, "forbidden"},
		{"read incr", "POST", "/v1/kv/n/incr", "", 403, "forbidden"},
		{"read hash PUT", "PUT", "/v1/hash/h", `{"fields":{"a":"1"}}`, 403, "forbidden"},
		{"read seed set", "GET", "/set/k/w", "", 403, "forbidden"},
		{"read batch get", "POST", "/v1/kv:batchGet", `{"keys":["k"]}`, 200, ""},
		{"read keys listing", "GET", "/v1/keys", "", 200, ""},
		{"read list push", "POST", "/v1/list/l/push", `{"values":["a"]}`, 403, "forbidden"},
		{"read key delete", "DELETE", "/v1/keys/k", "", 403, "forbidden"},
	}
	for _, tc := range tests {
		// The tutorial's /set writes through a GET: a read token must not.
		w := e.do(t, tc.method, tc.path, tc.body, read...)
		if w.Code != tc.status {
			t.Errorf("%s: got %d, want %d", tc.name, w.Code, tc.status)
			continue
		}
		if tc.code != "" && errorCode(t, w) != tc.code {
			t.Errorf("%s: code %s", tc.name, errorCode(t, w))
		}
	}
	if v := e.rdb.Get(context.Background(), e.prefix+"k").Val(); v != "v" {
		t.Errorf("a read token changed the value to %q", v)
	}
}

// TestRateLimit checks the per-address limit: 429 with Retry-After past
// the burst, counted, and other addresses unaffected.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", func(c *apiConfig, _ *apiDeps) { c.RateLimitRPS, c.RateLimitBurst = 1, 3 })
	statuses := []int{}
	for range 5 {
		statuses = append(statuses, e.do(t, "GET", "/get/k", "").Code)
	}
	if !reflect.DeepEqual(statuses, []int{200, 200, 200, 429, 429}) {
		t.Errorf("statuses %v, want a burst of 3 then 429", statuses)
	}
	w := e.do(t, "GET", "/v1/kv/k", "")
	if w.Code != http.StatusTooManyRequests || errorCode(t, w) != "rate_limited" || w.Header().Get("Retry-After") != "1" {
		t.Errorf("429: %d %s Retry-After %q", w.Code, w.Body.String(), w.Header().Get("Retry-After"))
	}
	if got := sample(t, e.metrics, "dubebox_http_rate_limited_total"); got != 3 {
		t.Errorf("dubebox_http_rate_limited_total = %v, want 3", got)
	}
	if w := e.do(t, "GET", "/healthz", ""); w.Code != 200 {
		t.Errorf("healthz is rate limited: %d", w.Code)
	}
	other := e.doFrom(t, "198.51.100.9:1", "GET", "/get/k")
	if other.Code != 200 {
		t.Errorf("another address is limited too: %d", other.Code)
	}
}

// TestTokenGuessingIsSlowed checks that failed authentications are limited
// per address with a budget of their own, with or without RATE_LIMIT_RPS:
// past it a guesser's wrong tokens get 429, while the right token from the
// same address and other addresses are served.
func TestTokenGuessingIsSlowed(t *testing.T) {
	t.Parallel()
	for _, rps := range []float64{0, 100} {
		e := newEnv(t, "", func(c *apiConfig, _ *apiDeps) { c.APIToken, c.RateLimitRPS, c.RateLimitBurst = rightToken, rps, 100 })
		counts := map[int]int{}
		for i := range 30 {
			w := e.do(t, "GET", "/v1/kv/k", "", "Authorization", fmt.Sprintf("Bearer guess-%d", i))
			counts[w.Code]++
			if w.Code == http.StatusTooManyRequests && (errorCode(t, w) != "rate_limited" || w.Header().Get("Retry-After") == "") {
				t.Errorf("429 without its code or Retry-After: %s %v", w.Body.String(), w.Header())
			}
		}
		if counts[401] != 10 || counts[429] != 20 {
			t.Errorf("RATE_LIMIT_RPS=%v: 30 wrong tokens from one address got %v, want 10×401 then 20×429", rps, counts)
		}
		// The right token is checked before the budget: a guesser behind
		// the same address (a proxy, a NAT) cannot lock its holder out.
		if w := e.do(t, "GET", "/v1/kv/k", "", "Authorization", "Bearer "+rightToken); w.Code != http.StatusNotFound {
			t.Errorf("the right token from the guessing address: %d, want it served (404: no such key)", w.Code)
		}
		if got := sample(t, e.metrics, "dubebox_http_rate_limited_total"); got < 20 {
			t.Errorf("dubebox_http_rate_limited_total = %v, want the refusals counted", got)
		}
		req := httptest.NewRequestWithContext(t.Context(), "GET", "/v1/kv/k", nil)
		req.RemoteAddr = "198.51.100.9:1"
		req.Header.Set("Authorization", "Bearer "+rightToken)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		if w.Code != http.StatusNotFound {
			t.Errorf("another address with the right token: %d, want 404", w.Code)
		}
	}
}

// TestCardinalityIsBounded floods random paths, keys and methods: the
// number of metric series must not grow with them.
func TestCardinalityIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	// Every key is new: a random key that repeated would be found by its
	// GET, and a hit is a new (bounded) series of its own, not the growth
	// this test looks for.
	seen := 0
	warm := func(n int) {
		for i := range n {
			seen++
			k := fmt.Sprintf("k%d-%d", seen, rand.IntN(1_000_000))
			e.do(t, "GET", "/v1/kv/"+k, "")
			e.do(t, "PUT", "/v1/kv/"+k, `{"value":"v"}`)
			e.do(t, "GET", fmt.Sprintf("/random/%d/%d", i, rand.IntN(1_000_000)), "")
			e.do(t, "PATCH", "/v1/kv/"+k, "")
			// Any token is a valid method: each made-up one must land in
			// one bounded label value.
			e.do(t, fmt.Sprintf("M%d%d", seen, rand.IntN(1_000_000)), "/v1/kv/"+k, "")
			e.do(t, fmt.Sprintf("X%d", seen), fmt.Sprintf("/nope/%d", seen), "")
		}
	}
	warm(5)
	before := seriesCount(t, e)
	warm(300)
	if after := seriesCount(t, e); after != before {
		t.Errorf("metric series grew from %d to %d under random paths and keys", before, after)
	}
}

func seriesCount(t *testing.T, e *env) int {
	t.Helper()
	mfs, err := e.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "dubebox_") {
			n += len(mf.GetMetric())
		}
	}
	return n
}

// TestNamespaceIsolation plants keys outside KEY_PREFIX and drives every
// route with key strings that try to reach them: none is read, changed or
// deleted, whatever the key string.
func TestNamespaceIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	ctx := context.Background()
	bare := strings.TrimSuffix(e.prefix, ":")
	planted := map[string]string{
		"secret":                         "PLANTED-1",
		bare:                             "PLANTED-2",
		bare + "secret":                  "PLANTED-3",
		"dubebox:secret":                 "PLANTED-4",
		e.prefix[:len(e.prefix)-3] + "x": "PLANTED-5",
	}
	for k, v := range planted {
		if err := e.rdb.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for k := range planted {
			e.rdb.Del(context.Background(), k)
		}
	})
	keys := []string{"secret", "..%2Fsecret", "%2E%2E", "*", "dubebox:secret", "..", "%00secret", "secret%00", "%20secret", "SECRET"}
	for k := range planted {
		keys = append(keys, url.PathEscape(k))
	}
	requests := 0
	for _, k := range keys {
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/get/" + k, ""},
			{"GET", "/v1/kv/" + k, ""},
			{"GET", "/v1/kv/" + k + "/ttl", ""},
			{"PUT", "/v1/kv/" + k + "/ttl", `{"ttl_seconds":1}`},
			{"DELETE", "/v1/kv/" + k + "/ttl", ""},
			{"DELETE", "/v1/kv/" + k, ""},
			{"GET", "/v1/hash/" + k, ""},
			{"GET", "/v1/hash/" + k + "/f", ""},
			{"DELETE", "/v1/hash/" + k, ""},
		} {
			requests++
			w := e.do(t, r.method, r.path, r.body)
			if w.Code >= 500 || w.Code == 200 && strings.Contains(w.Body.String(), "PLANTED") {
				t.Errorf("%s %s reached a planted key: %d %s", r.method, r.path, w.Code, w.Body.String())
			}
		}
	}
	for k, v := range planted {
		got, err := e.rdb.Get(ctx, k).Result()
		if err != nil || got != v {
			t.Errorf("planted %q is now %q, %v", k, got, err)
		}
		if ttl := e.rdb.TTL(ctx, k).Val(); ttl != -1 {
			t.Errorf("planted %q got a TTL %v", k, ttl)
		}
	}
	t.Logf("namespace isolation: %d requests over %d hostile key strings; %d planted keys outside the prefix unchanged", requests, len(keys), len(planted))
}
