package api_test

import (
	"crypto/sha1" //nolint:gosec // the ETag's own hash.
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/api"
	"github.com/dubebox/dubebox/internal/redistest"
)

type txAnswer struct {
	Results []map[string]any `json:"results"`
	Error   struct {
		Code  string `json:"code"`
		Index *int   `json:"index"`
	} `json:"error"`
}

// tx sends a transaction and reads its answer.
func (e *env) tx(t testing.TB, body string, headers ...string) (int, txAnswer) {
	t.Helper()
	w := e.do(t, "POST", "/v1/tx", body, headers...)
	var a txAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
		t.Fatalf("POST /v1/tx: %d %q", w.Code, w.Body.String())
	}
	return w.Code, a
}

// snapshot reads every key under the env's prefix with its type and
// contents, to show that a refused transaction changed nothing.
func (e *env) snapshot(t testing.TB, keys ...string) string {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		full := e.prefix + k
		typ, _ := e.rdb.Type(t.Context(), full).Result()
		fmt.Fprintf(&b, "%s %s ", k, typ)
		switch typ {
		case "string":
			v, _ := e.rdb.Get(t.Context(), full).Result()
			b.WriteString(v)
		case "hash":
			v, _ := e.rdb.HGetAll(t.Context(), full).Result()
			fmt.Fprint(&b, v)
		case "list":
			v, _ := e.rdb.LRange(t.Context(), full, 0, -1).Result()
			fmt.Fprint(&b, v)
		}
		ttl, _ := e.rdb.PTTL(t.Context(), full).Result()
		fmt.Fprintf(&b, " ttl>0=%v\n", ttl > 0)
	}
	return b.String()
}

// TestTransaction: every operation, with the preconditions checked against
// the keys as the operations before leave them, and all or nothing when one
// of them fails in the middle, on every topology (keys of one hash tag, so
// that a Cluster runs them).
func TestTransaction(t *testing.T) {
	//nolint:thelper // a test body, run once per topology.
	onEveryTopology(t, func(t *testing.T, _ redistest.Topology, e *env) {
		code, a := e.tx(t, `{"ops":[
			{"op":"set","key":"{u}:name","value":"Ada","ttl_seconds":60,"if_none_match":"*"},
			{"op":"incr","key":"{u}:visits","by":5},
			{"op":"incr","key":"{u}:visits"},
			{"op":"hset","key":"{u}:h","fields":{"a":"1","b":"2"}},
			{"op":"hincr","key":"{u}:h","field":"a","by":-11},
			{"op":"hdel","key":"{u}:h","fields":["b","missing"]},
			{"op":"push","key":"{u}:l","values":["x","y"]},
			{"op":"push","key":"{u}:l","values":["w"],"end":"head","if_type":"list"},
			{"op":"expire","key":"{u}:l","ttl_seconds":60},
			{"op":"expire","key":"{u}:name","ttl_seconds":null},
			{"op":"delete","key":"{u}:gone"}]}`)
		if code != http.StatusOK || len(a.Results) != 11 {
			t.Fatalf("transaction: %d %+v", code, a)
		}
		want := []string{
			`{"etag":"\"` + sha1hex("Ada") + `\"","key":"{u}:name","op":"set","ttl_seconds":60}`,
			`{"key":"{u}:visits","op":"incr","value":5}`,
			`{"key":"{u}:visits","op":"incr","value":6}`,
			`{"added":2,"key":"{u}:h","op":"hset"}`,
			`{"field":"a","key":"{u}:h","op":"hincr","value":-10}`,
			`{"key":"{u}:h","op":"hdel","removed":1}`,
			`{"key":"{u}:l","length":2,"op":"push"}`,
			`{"key":"{u}:l","length":3,"op":"push"}`,
			`{"key":"{u}:l","op":"expire","ttl_seconds":60}`,
			`{"key":"{u}:name","op":"expire","ttl_seconds":-1}`,
			`{"deleted":false,"key":"{u}:gone","op":"delete"}`,
		}
		for i, r := range a.Results {
			if got, _ := json.Marshal(r); string(got) != want[i] {
				t.Errorf("result %d: %s, want %s", i, got, want[i])
			}
		}
		keys := []string{"{u}:name", "{u}:visits", "{u}:h", "{u}:l", "{u}:gone"}
		if got, want := e.snapshot(t, keys...), "{u}:name string Ada ttl>0=false\n{u}:visits string 6 ttl>0=false\n{u}:h hash map[a:-10] ttl>0=false\n{u}:l list [w x y] ttl>0=true\n{u}:gone none  ttl>0=false\n"; got != want {
			t.Errorf("Redis holds\n%s\nwant\n%s", got, want)
		}
		// The ETag of a transaction's set is the one reads give.
		tag := e.do(t, "GET", "/v1/kv/{u}:name", "").Header().Get("ETag")
		if want := `"` + sha1hex("Ada") + `"`; tag != want {
			t.Errorf("GET after the transaction: ETag %s, want %s", tag, want)
		}

		before := e.snapshot(t, keys...)
		for _, tc := range []struct {
			name  string
			ops   string
			code  int
			error string
			index int
		}{
			{"stale if_match in the middle", `{"op":"incr","key":"{u}:visits"},{"op":"set","key":"{u}:name","value":"Grace","if_match":"\"0000\""},{"op":"delete","key":"{u}:h"}`, 412, "precondition_failed", 1},
			{"if_none_match on a key", `{"op":"hdel","key":"{u}:h","fields":["a"]},{"op":"set","key":"{u}:name","value":"x","if_none_match":"*"}`, 412, "precondition_failed", 1},
			{"if_type after a delete", `{"op":"delete","key":"{u}:l"},{"op":"push","key":"{u}:l","values":["v"],"if_type":"list"}`, 412, "precondition_failed", 1},
			{"if_match on a key the first op deletes", `{"op":"delete","key":"{u}:name"},{"op":"set","key":"{u}:x","value":"v"},{"op":"set","key":"{u}:name","value":"v","if_match":"*"}`, 412, "precondition_failed", 2},
			{"wrong type in the middle", `{"op":"incr","key":"{u}:visits"},{"op":"push","key":"{u}:h","values":["v"]},{"op":"set","key":"{u}:x","value":"v"}`, 409, "wrong_type", 1},
			{"a set turns the key to a string", `{"op":"delete","key":"{u}:h"},{"op":"set","key":"{u}:h","value":"v"},{"op":"hset","key":"{u}:h","fields":{"f":"v"}}`, 409, "wrong_type", 2},
			{"increment of text", `{"op":"incr","key":"{u}:visits"},{"op":"incr","key":"{u}:name"}`, 409, "not_integer", 1},
			{"increment past 64 bits", `{"op":"incr","key":"{u}:visits","by":9223372036854775802}`, 409, "not_integer", 0},
			{"expire of no key", `{"op":"incr","key":"{u}:visits"},{"op":"expire","key":"{u}:none","ttl_seconds":5}`, 404, "not_found", 1},
		} {
			code, a := e.tx(t, `{"ops":[`+tc.ops+`]}`)
			if code != tc.code || a.Error.Code != tc.error || a.Error.Index == nil || *a.Error.Index != tc.index {
				t.Errorf("%s: %d %+v, want %d %s at %d", tc.name, code, a.Error, tc.code, tc.error, tc.index)
			}
			if after := e.snapshot(t, append(keys, "{u}:x")...); after != before+"{u}:x none  ttl>0=false\n" {
				t.Errorf("%s wrote:\n%s", tc.name, after)
			}
		}

		// What holds after the operations before: a key deleted and made
		// again in one transaction, a precondition on a value written in it.
		code, a = e.tx(t, `{"ops":[
			{"op":"delete","key":"{u}:name"},
			{"op":"set","key":"{u}:name","value":"Grace","if_none_match":"*"},
			{"op":"set","key":"{u}:name","value":"Hopper","if_match":"\"`+sha1hex("Grace")+`\"","if_type":"string"},
			{"op":"incr","key":"{u}:visits","by":-10},
			{"op":"incr","key":"{u}:visits","by":-7}]}`)
		if code != http.StatusOK || a.Results[3]["value"] != float64(-4) || a.Results[4]["value"] != float64(-11) {
			t.Errorf("sequenced preconditions: %d %+v", code, a)
		}
		if v, _ := e.rdb.Get(t.Context(), e.prefix+"{u}:visits").Result(); v != "-11" {
			t.Errorf("Redis holds %s after the increments, want -11", v)
		}
	})
}

func sha1hex(s string) string {
	sum := sha1.Sum([]byte(s)) //nolint:gosec // the ETag's own hash.
	return hex.EncodeToString(sum[:])
}

// TestTransactionRefusals: what the document refuses is refused before
// Redis is asked, naming the operation.
func TestTransactionRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", func(c *api.Config, _ *api.Deps) { c.MaxTxOps = 3 })
	for _, tc := range []struct {
		name, body string
		index      int
	}{
		{"no ops", `{"ops":[]}`, -1},
		{"past MAX_TX_OPS", `{"ops":[{"op":"delete","key":"a"},{"op":"delete","key":"b"},{"op":"delete","key":"c"},{"op":"delete","key":"d"}]}`, -1},
		{"unknown op", `{"ops":[{"op":"delete","key":"a"},{"op":"rename","key":"a"}]}`, 1},
		{"a member of another op", `{"ops":[{"op":"delete","key":"a","value":"v"}]}`, 0},
		{"set without value", `{"ops":[{"op":"set","key":"a"}]}`, 0},
		{"expire without ttl_seconds", `{"ops":[{"op":"expire","key":"a"}]}`, 0},
		{"if_none_match other than *", `{"ops":[{"op":"set","key":"a","value":"v","if_none_match":"\"x\""}]}`, 0},
		{"if_match unquoted", `{"ops":[{"op":"set","key":"a","value":"v","if_match":"abc"}]}`, 0},
		{"if_match and if_none_match", `{"ops":[{"op":"set","key":"a","value":"v","if_match":"*","if_none_match":"*"}]}`, 0},
		{"if_type unknown", `{"ops":[{"op":"delete","key":"a","if_type":"set"}]}`, 0},
		{"key with a slash", `{"ops":[{"op":"delete","key":"a/b"}]}`, 0},
		{"value too long", `{"ops":[{"op":"set","key":"a","value":"` + strings.Repeat("v", 1025) + `"}]}`, 0},
		{"push to the middle", `{"ops":[{"op":"push","key":"a","values":["v"],"end":"middle"}]}`, 0},
		{"op not an object", `{"ops":["delete"]}`, 0},
		{"body past the limit", `{"ops":[{"op":"set","key":"a","value":"` + strings.Repeat("\\u0041", 12000) + `"}]}`, -1},
	} {
		w := e.do(t, "POST", "/v1/tx", tc.body)
		if w.Code/100 != 4 {
			t.Errorf("%s: %d %s", tc.name, w.Code, w.Body.String())
			continue
		}
		var a txAnswer
		_ = json.Unmarshal(w.Body.Bytes(), &a)
		if (tc.index < 0) != (a.Error.Index == nil) || (a.Error.Index != nil && *a.Error.Index != tc.index) {
			t.Errorf("%s: %s, want index %d", tc.name, w.Body.String(), tc.index)
		}
	}
	if n, _ := e.rdb.Exists(t.Context(), e.prefix+"a", e.prefix+"b").Result(); n != 0 {
		t.Error("a refused transaction wrote")
	}
}

// TestTransactionCrossSlot: on a Cluster, keys of several slots are
// refused with the slots named and nothing written, and a transaction's
// span names its slot as Redis computes it; a single Redis and Sentinel
// take keys of any slots.
func TestTransactionCrossSlot(t *testing.T) {
	//nolint:thelper // a test body, run once per topology.
	onEveryTopology(t, func(t *testing.T, tp redistest.Topology, e *env) {
		w := e.do(t, "POST", "/v1/tx", `{"ops":[{"op":"set","key":"alice","value":"1"},{"op":"set","key":"bob","value":"2"}]}`)
		if tp.Name != "cluster" {
			if w.Code != http.StatusOK {
				t.Fatalf("keys of two slots on %s: %d %s", tp.Name, w.Code, w.Body.String())
			}
			return
		}
		if w.Code != http.StatusBadRequest || errorCode(t, w) != api.CodeCrossSlot {
			t.Fatalf("keys of two slots on a Cluster: %d %s", w.Code, w.Body.String())
		}
		slot := func(k string) int64 {
			n, err := e.rdb.ClusterKeySlot(t.Context(), e.prefix+k).Result()
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		e.spans.Reset()
		if code, a := e.tx(t, `{"ops":[{"op":"set","key":"{n}:a","value":"1"},{"op":"incr","key":"{n}:b"},{"op":"delete","key":"{n}:c"}]}`); code != http.StatusOK {
			t.Fatalf("keys of one slot: %d %+v", code, a)
		}
		found := false
		for _, s := range e.spans.Ended() {
			attrs := map[string]string{}
			for _, a := range s.Attributes() {
				attrs[string(a.Key)] = a.Value.String()
			}
			if attrs["http.route"] == "/v1/tx" {
				found = true
				if want := strconv.FormatInt(slot("{n}:a"), 10); attrs["dubebox.tx.ops"] != "3" || attrs["dubebox.tx.slot"] != want {
					t.Errorf("the transaction's span: %v, want 3 operations in slot %s", attrs, want)
				}
			}
		}
		if !found {
			t.Error("no server span for POST /v1/tx")
		}
		for _, want := range []string{fmt.Sprintf(`\"alice\" in slot %d`, slot("alice")), fmt.Sprintf(`\"bob\" in slot %d`, slot("bob")), "hash tag"} {
			if !strings.Contains(w.Body.String(), want) {
				t.Errorf("the refusal does not say %s: %s", want, w.Body.String())
			}
		}
		if n, _ := e.rdb.Exists(t.Context(), e.prefix+"alice").Result(); n != 0 {
			t.Error("a refused transaction wrote")
		}
	})
}

// TestTransfersKeepTheSum: 8 clients move amounts between two keys in
// transactions for 10 s while a reader reads both in transactions of its
// own: the sum it sees, and the sum at the end, never change.
func TestTransfersKeepTheSum(t *testing.T) {
	//nolint:thelper // a test body, run once per topology.
	onEveryTopology(t, func(t *testing.T, tp redistest.Topology, e *env) {
		const total = 1000
		if code, a := e.tx(t, `{"ops":[{"op":"set","key":"{acct}:a","value":"1000"},{"op":"set","key":"{acct}:b","value":"0"}]}`); code != http.StatusOK {
			t.Fatalf("setup: %d %+v", code, a)
		}
		post := func(body string) (int, txAnswer) {
			// Straight to the router: thousands of requests are no use to
			// the contract's corpus.
			req := httptest.NewRequestWithContext(t.Context(), "POST", "/v1/tx", strings.NewReader(body))
			req.RemoteAddr = "192.0.2.7:4321"
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, req)
			var a txAnswer
			_ = json.Unmarshal(w.Body.Bytes(), &a)
			return w.Code, a
		}
		end := time.Now().Add(10 * time.Second)
		var wg sync.WaitGroup
		var mu sync.Mutex
		moves, reads, failures := 0, 0, []string{}
		fail := func(s string) {
			mu.Lock()
			defer mu.Unlock()
			if len(failures) < 5 {
				failures = append(failures, s)
			}
		}
		for c := range 8 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(c), 1))
				for time.Now().Before(end) {
					n := r.IntN(50) - 25
					code, a := post(fmt.Sprintf(`{"ops":[{"op":"incr","key":"{acct}:a","by":%d},{"op":"incr","key":"{acct}:b","by":%d}]}`, -n, n))
					if code != http.StatusOK {
						fail(fmt.Sprintf("transfer: %d %+v", code, a))
						continue
					}
					mu.Lock()
					moves++
					mu.Unlock()
				}
			})
		}
		wg.Go(func() {
			for time.Now().Before(end) {
				code, a := post(`{"ops":[{"op":"incr","key":"{acct}:a","by":0},{"op":"incr","key":"{acct}:b","by":0}]}`)
				if code != http.StatusOK {
					fail(fmt.Sprintf("read: %d %+v", code, a))
					continue
				}
				if sum := a.Results[0]["value"].(float64) + a.Results[1]["value"].(float64); sum != total {
					fail(fmt.Sprintf("the reader saw a sum of %v", sum))
				}
				mu.Lock()
				reads++
				mu.Unlock()
			}
		})
		wg.Wait()
		if len(failures) > 0 {
			t.Fatalf("%s: %d transfers, %d reads; %v", tp.Name, moves, reads, failures)
		}
		a, _ := e.rdb.Get(t.Context(), e.prefix+"{acct}:a").Int64()
		b, _ := e.rdb.Get(t.Context(), e.prefix+"{acct}:b").Int64()
		if a+b != total || moves == 0 || reads == 0 {
			t.Fatalf("%s: a %d + b %d after %d transfers and %d reads", tp.Name, a, b, moves, reads)
		}
		t.Logf("%s: %d transfers and %d reads in 10 s, the sum always %d", tp.Name, moves, reads, total)
	})
}

// TestTransactionOnce: a transaction retried with its Idempotency-Key
// applies once and answers the first results again; the key reused for
// another transaction is refused.
func TestTransactionOnce(t *testing.T) {
	//nolint:thelper // a test body, run once per topology.
	onEveryTopology(t, func(t *testing.T, _ redistest.Topology, e *env) {
		body := `{"ops":[{"op":"incr","key":"{o}:n","by":3},{"op":"push","key":"{o}:l","values":["v"]}]}`
		first := e.do(t, "POST", "/v1/tx", body, "Idempotency-Key", "tx-1")
		again := e.do(t, "POST", "/v1/tx", body, "Idempotency-Key", "tx-1")
		if first.Code != http.StatusOK || again.Body.String() != first.Body.String() || again.Header().Get("Idempotent-Replayed") != "true" {
			t.Fatalf("retry: %d %s / %s %v", first.Code, first.Body.String(), again.Body.String(), again.Header())
		}
		if n, _ := e.rdb.Get(t.Context(), e.prefix+"{o}:n").Result(); n != "3" {
			t.Errorf("after a retry the counter is %s, want 3", n)
		}
		other := e.do(t, "POST", "/v1/tx", strings.Replace(body, `"by":3`, `"by":4`, 1), "Idempotency-Key", "tx-1")
		if other.Code != http.StatusUnprocessableEntity || errorCode(t, other) != api.CodeIdempotencyKeyReused {
			t.Errorf("key reused: %d %s", other.Code, other.Body.String())
		}
	})
}

// TestTransactionNearCache: the near cache drops every key a transaction
// wrote before it answers.
func TestTransactionNearCache(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	e := newNearEnv(t, srv.Addr)
	e.do(t, "PUT", "/v1/kv/{n}:a", `{"value":"1"}`)
	e.do(t, "PUT", "/v1/kv/{n}:b", `{"value":"2"}`)
	deadline := time.Now().Add(5 * time.Second)
	for e.do(t, "GET", "/v1/kv/{n}:a", "").Header().Get("X-Cache") != "near" || e.do(t, "GET", "/v1/kv/{n}:b", "").Header().Get("X-Cache") != "near" {
		if time.Now().After(deadline) {
			t.Fatal("GET never answered X-Cache: near")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, a := e.tx(t, `{"ops":[{"op":"incr","key":"{n}:a","by":10},{"op":"set","key":"{n}:b","value":"20"},{"op":"delete","key":"{n}:c"}]}`); code != http.StatusOK {
		t.Fatalf("transaction: %d %+v", code, a)
	}
	for k, want := range map[string]string{"{n}:a": "11", "{n}:b": "20"} {
		if w := e.do(t, "GET", "/v1/kv/"+k, ""); !strings.Contains(w.Body.String(), `"value":"`+want+`"`) {
			t.Errorf("GET %s right after the transaction: %s %s", k, w.Header().Get("X-Cache"), w.Body.String())
		}
	}
}
