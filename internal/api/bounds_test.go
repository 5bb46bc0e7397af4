package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/api"
	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/store"
)

// withPageBytes sets MAX_PAGE_BYTES.
func withPageBytes(n int) option {
	return func(c *api.Config, _ *api.Deps) { c.MaxPageBytes = n }
}

// TestHashPages grows a hash over many legal writes, past what one page
// holds, then reads it a page at a time as a client would: every field
// comes, once or more (HSCAN may repeat, never skip, on a hash that does
// not change), no page holds more than its limit (give or take HSCAN's
// hint) or much more than MAX_PAGE_BYTES, and the write answered only the
// field names it set.
func TestHashPages(t *testing.T) {
	//nolint:thelper // a test body, run once per topology.
	onEveryTopology(t, func(t *testing.T, tp redistest.Topology, e *env) {
		value := strings.Repeat("v", 100)
		want := map[string]bool{}
		for w := range 6 {
			fields := map[string]string{}
			for i := range 500 {
				f := fmt.Sprintf("f%d-%d", w, i)
				fields[f], want[f] = value, true
			}
			body, _ := json.Marshal(map[string]any{"fields": fields})
			resp := e.do(t, "PUT", "/v1/hash/big", string(body))
			if resp.Code != 200 {
				t.Fatalf("PUT: %d %s", resp.Code, resp.Body.String())
			}
			if resp.Body.Len() > 500*12+100 || strings.Contains(resp.Body.String(), value) {
				t.Fatalf("a hash write answered %d bytes, with values: the whole hash?", resp.Body.Len())
			}
		}
		for _, limit := range []int{1000, 50} {
			seen, pages := readHash(t, e, "big", limit)
			if len(seen) != len(want) {
				t.Errorf("limit %d: read %d distinct fields, want %d", limit, len(seen), len(want))
			}
			if least := len(want) / (limit + limit/2 + 10); pages < least {
				t.Errorf("limit %d: %d pages for %d fields", limit, pages, len(want))
			}
		}
	})
}

// readHash reads every page of a hash, checking each against its limit,
// and returns the fields seen and the number of pages.
func readHash(t *testing.T, e *env, key string, limit int) (map[string]bool, int) {
	t.Helper()
	seen := map[string]bool{}
	cursor, pages := "", 0
	for {
		url := fmt.Sprintf("/v1/hash/%s?limit=%d", key, limit)
		if cursor != "" {
			url += "&cursor=" + cursor
		}
		w := e.do(t, "GET", url, "")
		if w.Code != 200 {
			t.Fatalf("GET %s: %d %s", url, w.Code, w.Body.String())
		}
		var page struct {
			Fields     map[string]string `json:"fields"`
			NextCursor string            `json:"next_cursor"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil {
			t.Fatal(err)
		}
		// HSCAN's count is a hint: a step may return a few more.
		if len(page.Fields) > limit+limit/2+10 {
			t.Errorf("a page of %d fields for a limit of %d", len(page.Fields), limit)
		}
		for f := range page.Fields {
			seen[f] = true
		}
		pages++
		if page.NextCursor == "" {
			return seen, pages
		}
		if pages > 5000 {
			t.Fatal("the cursor never ends")
		}
		cursor = page.NextCursor
	}
}

// TestPagesStopAtTheirBudget fills a list, a hash and strings with values
// of 1,000 bytes and reads them with MAX_PAGE_BYTES at 4,096: a list page,
// a pop, a hash page and a batch read each carry about four values (one
// always comes), and say where to go on; nothing is lost or repeated.
func TestPagesStopAtTheirBudget(t *testing.T) {
	//nolint:thelper // a test body, run once per topology.
	onEveryTopology(t, func(t *testing.T, tp redistest.Topology, _ *env) {
		e := newEnvOn(t, tp, withPageBytes(4096))
		value := func(i int) string { return fmt.Sprintf("%04d<", i) + strings.Repeat("x", 995) }
		var values []string
		for i := range 20 {
			values = append(values, value(i))
		}
		body, _ := json.Marshal(map[string]any{"values": values})
		if w := e.do(t, "POST", "/v1/list/l/push", string(body)); w.Code != 200 {
			t.Fatalf("push: %d %s", w.Code, w.Body.String())
		}
		// A list page: four values of 1,000 bytes fit 4,096, the fifth not.
		var page struct {
			Values     []string `json:"values"`
			NextOffset *int64   `json:"next_offset"`
		}
		w := e.do(t, "GET", "/v1/list/l?limit=1000", "")
		if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || len(page.Values) != 4 || page.NextOffset == nil || *page.NextOffset != 4 {
			t.Fatalf("list page: %d values, next %v (%v); want 4 and 4", len(page.Values), page.NextOffset, err)
		}
		if strings.Contains(w.Body.String(), `\u003c`) {
			t.Error("the answer escapes '<' as \\u003c: HTML escaping is on")
		}
		// A pop: the same budget.
		var popped struct {
			Values []string `json:"values"`
			Length int64    `json:"length"`
		}
		w = e.do(t, "POST", "/v1/list/l/pop", `{"count":1000}`)
		if err := json.Unmarshal(w.Body.Bytes(), &popped); err != nil || len(popped.Values) != 4 || popped.Length != 16 || popped.Values[0] != values[0] {
			t.Fatalf("pop of 1000: %d values, %d left (%v); want 4 taken and 16 left", len(popped.Values), popped.Length, err)
		}
		// One value larger than the budget still comes, alone.
		big := strings.Repeat("x", 1000) // MAX_VALUE_BYTES is 1024 in these tests
		e2 := newEnvOn(t, tp, withPageBytes(1024))
		e2.do(t, "POST", "/v1/list/l2/push", `{"values":["`+big+`","`+big+`"]}`)
		w = e2.do(t, "POST", "/v1/list/l2/pop", `{"count":2}`)
		if err := json.Unmarshal(w.Body.Bytes(), &popped); err != nil || len(popped.Values) != 1 || popped.Length != 1 {
			t.Fatalf("pop past the budget: %d values, %d left (%v); want 1 and 1", len(popped.Values), popped.Length, err)
		}
		// A batch read: the keys past the budget are unprocessed.
		var keys []string
		for i := range 10 {
			k := fmt.Sprintf("s%d", i)
			keys = append(keys, k)
			e.do(t, "PUT", "/v1/kv/"+k, `{"value":"`+value(i)+`"}`)
		}
		body, _ = json.Marshal(map[string]any{"keys": keys})
		var batch struct {
			Items           []json.RawMessage `json:"items"`
			UnprocessedKeys []string          `json:"unprocessed_keys"`
		}
		w = e.do(t, "POST", "/v1/kv:batchGet", string(body))
		if err := json.Unmarshal(w.Body.Bytes(), &batch); err != nil || len(batch.Items) != 4 || strings.Join(batch.UnprocessedKeys, ",") != strings.Join(keys[4:], ",") {
			t.Fatalf("batch: %d items, unprocessed %v (%v); want 4 and the other 6", len(batch.Items), batch.UnprocessedKeys, err)
		}
		// A hash page.
		fields := map[string]string{}
		for i := range 50 {
			fields[fmt.Sprint("f", i)] = value(i)
		}
		body, _ = json.Marshal(map[string]any{"fields": fields})
		if w := e.do(t, "PUT", "/v1/hash/h", string(body)); w.Code != 200 {
			t.Fatalf("hash put: %d %s", w.Code, w.Body.String())
		}
		w = e.do(t, "GET", "/v1/hash/h?limit=1000", "")
		var hpage struct {
			Fields     map[string]string `json:"fields"`
			NextCursor string            `json:"next_cursor"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &hpage); err != nil || len(hpage.Fields) > 12 || hpage.NextCursor == "" {
			t.Fatalf("hash page: %d fields, next %q (%v); want a few and a cursor", len(hpage.Fields), hpage.NextCursor, err)
		}
		if seen, _ := readHash(t, e, "h", 1000); len(seen) != 50 {
			t.Errorf("read %d distinct fields a page at a time, want 50", len(seen))
		}
	})
}

// TestItemBounds checks MAX_HASH_FIELDS and MAX_LIST_LENGTH: a write that
// would take a hash or a list past its bound answers 409 too_many_items
// and writes nothing; a write up to the bound, or that only changes
// existing fields, is accepted.
func TestItemBounds(t *testing.T) {
	t.Parallel()
	for _, tp := range redistest.Topologies(t) {
		t.Run(tp.Name, func(t *testing.T) {
			t.Parallel()
			e := newEnvStore(t, tp, func(c *store.Config) { c.MaxHashFields, c.MaxListLength = 3, 3 })
			for _, tc := range []struct {
				method, path, body string
				status             int
			}{
				{"PUT", "/v1/hash/h", `{"fields":{"a":"1","b":"2"}}`, 200},
				{"PUT", "/v1/hash/h", `{"fields":{"c":"3","d":"4"}}`, 409},
				{"PUT", "/v1/hash/h", `{"fields":{"a":"x","c":"3"}}`, 200},
				{"PUT", "/v1/hash/h", `{"fields":{"a":"y","b":"y","c":"y"}}`, 200},
				{"PUT", "/v1/hash/h/d", `{"value":"4"}`, 409},
				{"PUT", "/v1/hash/h/d", `{"value":"4"}`, 409},
				{"POST", "/v1/list/l/push", `{"values":["a","b"]}`, 200},
				{"POST", "/v1/list/l/push", `{"values":["c","d"]}`, 409},
				{"POST", "/v1/list/l/push", `{"values":["c"]}`, 200},
				{"POST", "/v1/list/l/push", `{"values":["d"],"end":"head"}`, 409},
			} {
				w := e.do(t, tc.method, tc.path, tc.body)
				if w.Code != tc.status || (tc.status == 409 && errorCode(t, w) != "too_many_items") {
					t.Errorf("%s %s %s: %d %s, want %d", tc.method, tc.path, tc.body, w.Code, w.Body.String(), tc.status)
				}
			}
			w := e.do(t, "PUT", "/v1/hash/h/d", `{"value":"4"}`, "If-None-Match", "*")
			if w.Code != 409 || errorCode(t, w) != "too_many_items" {
				t.Errorf("a conditional write of a new field past the bound: %d %s", w.Code, w.Body.String())
			}
			if got := e.do(t, "GET", "/v1/hash/h", "").Body.String(); !strings.Contains(got, `"fields":{"a":"y","b":"y","c":"y"}`) {
				t.Errorf("the hash after the refused writes: %s", got)
			}
			if got := e.do(t, "GET", "/v1/list/l", "").Body.String(); !strings.Contains(got, `"values":["a","b","c"]`) {
				t.Errorf("the list after the refused writes: %s", got)
			}
		})
	}
}

// TestIdempotencyKey retries each non-idempotent write with the same
// Idempotency-Key, one after another and eight at once: the write applies
// once, every retry is given the first answer marked
// Idempotent-Replayed, the same key on other arguments is 422, and the
// records are never listed as keys.
func TestIdempotencyKey(t *testing.T) {
	//nolint:thelper // a test body, run once per topology.
	onEveryTopology(t, func(t *testing.T, tp redistest.Topology, e *env) {
		for _, key := range []string{"plain", "{user:1}:cart", "a{b"} {
			writes := []struct {
				path, body, other, check, want string
			}{
				{"/v1/kv/" + key + "-n/incr", `{"by":5}`, `{"by":6}`, "/v1/kv/" + key + "-n", `"value":"5"`},
				{"/v1/hash/" + key + "-h/f/incr", `{"by":2}`, `{"by":3}`, "/v1/hash/" + key + "-h/f", `"value":"2"`},
				{"/v1/list/" + key + "-l/push", `{"values":["a","b"]}`, `{"values":["c"]}`, "/v1/list/" + key + "-l", `"values":["a","b"]`},
			}
			for _, wr := range writes {
				first := e.do(t, "POST", wr.path, wr.body, "Idempotency-Key", "k1")
				if first.Code != 200 || first.Header().Get("Idempotent-Replayed") != "" {
					t.Fatalf("POST %s: %d %s %v", wr.path, first.Code, first.Body.String(), first.Header())
				}
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() {
						again := e.do(t, "POST", wr.path, wr.body, "Idempotency-Key", "k1")
						if again.Code != 200 || again.Body.String() != first.Body.String() || again.Header().Get("Idempotent-Replayed") != "true" {
							t.Errorf("retry of POST %s: %d %s %v; want the first answer %s, replayed", wr.path, again.Code, again.Body.String(), again.Header(), first.Body.String())
						}
					})
				}
				wg.Wait()
				if w := e.do(t, "POST", wr.path, wr.other, "Idempotency-Key", "k1"); w.Code != 422 || errorCode(t, w) != "idempotency_key_reused" {
					t.Errorf("POST %s with the key of another write: %d %s", wr.path, w.Code, w.Body.String())
				}
				if got := e.do(t, "GET", wr.check, "").Body.String(); !strings.Contains(got, wr.want) {
					t.Errorf("after the retries %s is %s, want %s: applied once", wr.check, got, wr.want)
				}
			}
			// Concurrent first requests: exactly one applies.
			var wg sync.WaitGroup
			answers := make([]string, 8)
			for i := range 8 {
				wg.Go(func() {
					answers[i] = e.do(t, "POST", "/v1/kv/"+key+"-race/incr", `{"by":1}`, "Idempotency-Key", "race").Body.String()
				})
			}
			wg.Wait()
			for _, a := range answers {
				if a != answers[0] {
					t.Errorf("concurrent requests with one key answered differently: %q and %q", a, answers[0])
				}
			}
			if got := e.do(t, "GET", "/v1/kv/"+key+"-race", "").Body.String(); !strings.Contains(got, `"value":"1"`) {
				t.Errorf("8 concurrent increments with one key: %s, want 1", got)
			}
		}
		// A pop with a key takes once.
		e.do(t, "POST", "/v1/list/q/push", `{"values":["a","b","c"]}`)
		for range 3 {
			if w := e.do(t, "POST", "/v1/list/q/pop", "", "Idempotency-Key", "p1"); !strings.Contains(w.Body.String(), `"values":["a"],"length":2`) {
				t.Errorf("pop with a key: %s", w.Body.String())
			}
		}
		// A key holding '}' without a hash tag cannot keep a record in
		// its own slot; a request without a key still works there.
		if w := e.do(t, "POST", "/v1/kv/a}b/incr", "", "Idempotency-Key", "k"); w.Code != 400 {
			t.Errorf("Idempotency-Key on a}b: %d %s", w.Code, w.Body.String())
		}
		if w := e.do(t, "POST", "/v1/kv/a}b/incr", ""); w.Code != 200 {
			t.Errorf("incr of a}b without a key: %d %s", w.Code, w.Body.String())
		}
		for _, bad := range []string{"", strings.Repeat("k", 256), "has space"} {
			req := []string{"Idempotency-Key", bad}
			if w := e.do(t, "POST", "/v1/kv/n/incr", "", req...); w.Code != 400 && bad != "" {
				t.Errorf("Idempotency-Key %q: %d", bad, w.Code)
			}
		}
		var listing struct {
			Keys []string `json:"keys"`
		}
		_ = json.Unmarshal(e.do(t, "GET", "/v1/keys?limit=1000", "").Body.Bytes(), &listing)
		for _, k := range listing.Keys {
			if strings.Contains(k, "idem") {
				t.Errorf("an idempotency record is listed as a key: %s", k)
			}
		}
	})
}

// TestInflightBound holds one request in Redis (paused) with
// MAX_INFLIGHT_REQUESTS at 1: the next is refused at once with 503
// overloaded and Retry-After, and /healthz still answers.
func TestInflightBound(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	e := newEnv(t, srv.Addr, func(c *api.Config, _ *api.Deps) { c.MaxInflight = 1 })
	e.do(t, "GET", "/readyz", "")
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	held := make(chan int)
	go func() { held <- e.do(t, "GET", "/v1/kv/a", "").Code }()
	// The GET waits REDIS_TIMEOUT (300 ms here) on the paused Redis.
	for sample(t, e.metrics, "dubebox_http_requests_in_flight") < 1 {
		time.Sleep(time.Millisecond)
	}
	w := e.do(t, "PUT", "/v1/kv/b", `{"value":"v"}`)
	if w.Code != http.StatusServiceUnavailable || errorCode(t, w) != "overloaded" || w.Header().Get("Retry-After") == "" {
		t.Errorf("a request while one is held: %d %s %v; want 503 overloaded with Retry-After", w.Code, w.Body.String(), w.Header())
	}
	if w := e.do(t, "GET", "/healthz", ""); w.Code != 200 {
		t.Errorf("/healthz while overloaded: %d", w.Code)
	}
	if code := <-held; code != http.StatusGatewayTimeout {
		t.Errorf("the held request: %d, want 504 from the paused Redis", code)
	}
	_ = srv.Resume()
	if w := e.do(t, "PUT", "/v1/kv/b", `{"value":"v"}`); w.Code != 200 {
		t.Errorf("a request once none is held: %d %s", w.Code, w.Body.String())
	}
}
