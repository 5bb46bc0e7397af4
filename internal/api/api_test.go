package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/api"
	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/servicetest"
	"github.com/dubebox/dubebox/internal/store"
)

type req struct {
	method, path, body string
}

// TestRoutes drives every route through the real router and a real Redis,
// checking the status and the whole JSON body (or the error code).
func TestRoutes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		setup    []req
		req      req
		headers  []string
		status   int
		want     string // the whole JSON body, for successes
		wantCode string // the error code, for failures
	}{
		{name: "home", req: req{"GET", "/", ""}, status: 200,
			want: `{"message":"Welcome to DubeBox 🚀","status":"running","version":"test"}`},
		{name: "healthz", req: req{"GET", "/healthz", ""}, status: 200, want: `{"status":"ok"}`},
		{name: "readyz", req: req{"GET", "/readyz", ""}, status: 200, want: `{"status":"ready"}`},

		{name: "seed set", req: req{"GET", "/set/name/G", ""}, status: 200,
			want: `{"message":"Stored name → G in Redis"}`},
		{name: "seed get", setup: []req{{"GET", "/set/name/G", ""}}, req: req{"GET", "/get/name", ""}, status: 200,
			want: `{"key":"name","value":"G"}`},
		{name: "seed get missing is null", req: req{"GET", "/get/nobody", ""}, status: 200,
			want: `{"key":"nobody","value":null}`},
		{name: "seed set with ttl", setup: []req{{"GET", "/set/t/v?ttl=50", ""}}, req: req{"GET", "/v1/kv/t", ""}, status: 200,
			want: `{"key":"t","value":"v","ttl_seconds":50}`},
		{name: "seed set bad ttl", req: req{"GET", "/set/t/v?ttl=-1", ""}, status: 400, wantCode: "invalid_argument"},
		{name: "seed get on hash", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"1"}}`}}, req: req{"GET", "/get/h", ""},
			status: 409, wantCode: "wrong_type"},

		{name: "put", req: req{"PUT", "/v1/kv/k", `{"value":"v"}`}, status: 200, want: `{"key":"k","ttl_seconds":-1}`},
		{name: "put with ttl", req: req{"PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":30}`}, status: 200,
			want: `{"key":"k","ttl_seconds":30}`},
		{name: "put with html characters", setup: []req{{"PUT", "/v1/kv/k", `{"value":"<a href=\"x\">&amp;</a>"}`}},
			req: req{"GET", "/v1/kv/k", ""}, status: 200, want: `{"key":"k","value":"<a href=\"x\">&amp;</a>","ttl_seconds":-1}`},
		{name: "put with a lone surrogate", req: req{"PUT", "/v1/kv/k", `{"value":"a\ud800b"}`}, status: 400, wantCode: "invalid_argument"},
		{name: "put with a field in another case", req: req{"PUT", "/v1/kv/k", `{"Value":"a"}`}, status: 400, wantCode: "invalid_argument"},
		{name: "get", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v é"}`}}, req: req{"GET", "/v1/kv/k", ""}, status: 200,
			want: `{"key":"k","value":"v é","ttl_seconds":-1}`},
		{name: "get unicode key", setup: []req{{"PUT", "/v1/kv/caf%C3%A9", `{"value":"x"}`}}, req: req{"GET", "/v1/kv/café", ""}, status: 200,
			want: `{"key":"café","value":"x","ttl_seconds":-1}`},
		{name: "get missing", req: req{"GET", "/v1/kv/none", ""}, status: 404, wantCode: "not_found"},
		{name: "delete", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v"}`}}, req: req{"DELETE", "/v1/kv/k", ""}, status: 204},
		{name: "delete missing", req: req{"DELETE", "/v1/kv/none", ""}, status: 404, wantCode: "not_found"},
		{name: "list push", req: req{"POST", "/v1/list/q/push", `{"values":["a","b"],"ttl_seconds":60}`}, status: 200,
			want: `{"key":"q","length":2,"ttl_seconds":60}`},
		{name: "list push at the head", setup: []req{{"POST", "/v1/list/q/push", `{"values":["a","b"]}`}},
			req: req{"POST", "/v1/list/q/push", `{"values":["y","z"],"end":"head"}`}, status: 200, want: `{"key":"q","length":4,"ttl_seconds":-1}`},
		{name: "list read", setup: []req{{"POST", "/v1/list/q/push", `{"values":["a","b","c"]}`}},
			req: req{"GET", "/v1/list/q", ""}, status: 200, want: `{"key":"q","values":["a","b","c"],"length":3,"ttl_seconds":-1}`},
		{name: "list read a page", setup: []req{{"POST", "/v1/list/q/push", `{"values":["a","b","c","d"]}`}},
			req: req{"GET", "/v1/list/q?offset=1&limit=2", ""}, status: 200,
			want: `{"key":"q","values":["b","c"],"length":4,"ttl_seconds":-1,"next_offset":3}`},
		{name: "list read past the end", setup: []req{{"POST", "/v1/list/q/push", `{"values":["a"]}`}},
			req: req{"GET", "/v1/list/q?offset=5", ""}, status: 200, want: `{"key":"q","values":[],"length":1,"ttl_seconds":-1}`},
		{name: "list read missing", req: req{"GET", "/v1/list/none", ""}, status: 404, wantCode: "not_found"},
		{name: "list read bad limit", req: req{"GET", "/v1/list/q?limit=1001", ""}, status: 400, wantCode: "invalid_argument"},
		{name: "list length", setup: []req{{"POST", "/v1/list/q/push", `{"values":["a","b"]}`}},
			req: req{"GET", "/v1/list/q/length", ""}, status: 200, want: `{"key":"q","length":2}`},
		{name: "list pop one from the head", setup: []req{{"POST", "/v1/list/q/push", `{"values":["a","b"]}`}},
			req: req{"POST", "/v1/list/q/pop", ""}, status: 200, want: `{"key":"q","values":["a"],"length":1}`},
		{name: "list pop from the tail", setup: []req{{"POST", "/v1/list/q/push", `{"values":["a","b","c"]}`}},
			req: req{"POST", "/v1/list/q/pop", `{"end":"tail","count":2}`}, status: 200, want: `{"key":"q","values":["c","b"],"length":1}`},
		{name: "list pop the last removes the key", setup: []req{{"POST", "/v1/list/q/push", `{"values":["a"]}`}, {"POST", "/v1/list/q/pop", ""}},
			req: req{"GET", "/v1/keys/q", ""}, status: 404, wantCode: "not_found"},
		{name: "list pop missing", req: req{"POST", "/v1/list/none/pop", ""}, status: 404, wantCode: "not_found"},
		{name: "list remove", setup: []req{{"POST", "/v1/list/q/push", `{"values":["a","b","a"]}`}},
			req: req{"POST", "/v1/list/q/remove", `{"value":"a"}`}, status: 200, want: `{"key":"q","removed":2,"length":1}`},
		{name: "list trim", setup: []req{{"POST", "/v1/list/q/push", `{"values":["a","b","c"]}`}},
			req: req{"POST", "/v1/list/q/trim", `{"start":0,"stop":-2}`}, status: 200, want: `{"key":"q","length":2}`},
		{name: "list trim needs both ends", req: req{"POST", "/v1/list/q/trim", `{"start":0}`}, status: 400, wantCode: "invalid_argument"},
		{name: "list delete", setup: []req{{"POST", "/v1/list/q/push", `{"values":["a"]}`}}, req: req{"DELETE", "/v1/list/q", ""}, status: 204},
		{name: "list push empty", req: req{"POST", "/v1/list/q/push", `{"values":[]}`}, status: 400, wantCode: "invalid_argument"},
		{name: "list push bad end", req: req{"POST", "/v1/list/q/push", `{"values":["a"],"end":"middle"}`}, status: 400, wantCode: "invalid_argument"},
		{name: "list pop bad count", req: req{"POST", "/v1/list/q/pop", `{"count":0}`}, status: 400, wantCode: "invalid_argument"},
		{name: "list push on a string", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v"}`}},
			req: req{"POST", "/v1/list/k/push", `{"values":["a"]}`}, status: 409, wantCode: "wrong_type"},
		{name: "list read on a hash", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"1"}}`}},
			req: req{"GET", "/v1/list/h", ""}, status: 409, wantCode: "wrong_type"},
		{name: "list delete on a string", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v"}`}},
			req: req{"DELETE", "/v1/list/k", ""}, status: 409, wantCode: "wrong_type"},
		{name: "key info list", setup: []req{{"POST", "/v1/list/q/push", `{"values":["a"],"ttl_seconds":20}`}},
			req: req{"GET", "/v1/keys/q", ""}, status: 200, want: `{"key":"q","type":"list","ttl_seconds":20}`},
		{name: "keys listing", setup: []req{{"PUT", "/v1/kv/user:1", `{"value":"v"}`}, {"PUT", "/v1/kv/other", `{"value":"v"}`}},
			req: req{"GET", "/v1/keys?prefix=user:&limit=1000", ""}, status: 200, want: `{"keys":["user:1"]}`},
		{name: "keys listing by type", setup: []req{{"PUT", "/v1/kv/a", `{"value":"v"}`}, {"PUT", "/v1/hash/b", `{"fields":{"f":"v"}}`}},
			req: req{"GET", "/v1/keys?type=hash&limit=1000", ""}, status: 200, want: `{"keys":["b"]}`},
		{name: "keys listing globs are literal", setup: []req{{"PUT", "/v1/kv/ab", `{"value":"v"}`}},
			req: req{"GET", "/v1/keys?prefix=a*&limit=1000", ""}, status: 200, want: `{"keys":[]}`},
		// A cursor past the last shard (the Cluster shrank while a client
		// listed) ends the listing with an empty array, never null.
		{name: "keys listing cursor past the end", req: req{"GET", "/v1/keys?cursor=OS4w", ""}, status: 200, want: `{"keys":[]}`},
		{name: "keys listing bad type", req: req{"GET", "/v1/keys?type=blob", ""}, status: 400, wantCode: "invalid_argument"},
		{name: "keys listing bad cursor", req: req{"GET", "/v1/keys?cursor=nonsense!", ""}, status: 400, wantCode: "invalid_argument"},
		{name: "keys listing bad limit", req: req{"GET", "/v1/keys?limit=0", ""}, status: 400, wantCode: "invalid_argument"},
		{name: "batch get", setup: []req{{"PUT", "/v1/kv/a", `{"value":"1","ttl_seconds":30}`}, {"PUT", "/v1/kv/b", `{"value":"2"}`}},
			req: req{"POST", "/v1/kv:batchGet", `{"keys":["a","b"]}`}, status: 200,
			want: `{"items":[{"key":"a","value":"1","ttl_seconds":30},{"key":"b","value":"2","ttl_seconds":-1}]}`},
		{name: "batch get names a key twice", req: req{"POST", "/v1/kv:batchGet", `{"keys":["a","b","a"]}`}, status: 400, wantCode: "invalid_argument"},
		{name: "batch get bad key", req: req{"POST", "/v1/kv:batchGet", `{"keys":["ok","` + strings.Repeat("k", 33) + `"]}`}, status: 400, wantCode: "invalid_argument"},
		{name: "batch get without keys", req: req{"POST", "/v1/kv:batchGet", `{}`}, status: 400, wantCode: "invalid_argument"},
		{name: "key info string", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":40}`}}, req: req{"GET", "/v1/keys/k", ""},
			status: 200, want: `{"key":"k","type":"string","ttl_seconds":40}`},
		{name: "key info hash", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"ttl":"x"}}`}}, req: req{"GET", "/v1/keys/h", ""},
			status: 200, want: `{"key":"h","type":"hash","ttl_seconds":-1}`},
		{name: "key info missing", req: req{"GET", "/v1/keys/none", ""}, status: 404, wantCode: "not_found"},
		{name: "key ttl put on hash", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"ttl":"x"}}`}},
			req: req{"PUT", "/v1/keys/h/ttl", `{"ttl_seconds":60}`}, status: 200, want: `{"key":"h","ttl_seconds":60}`},
		{name: "key ttl get on hash", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"x"},"ttl_seconds":30}`}},
			req: req{"GET", "/v1/keys/h/ttl", ""}, status: 200, want: `{"key":"h","ttl_seconds":30}`},
		{name: "key ttl delete on hash", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"x"},"ttl_seconds":30}`}},
			req: req{"DELETE", "/v1/keys/h/ttl", ""}, status: 200, want: `{"key":"h","ttl_seconds":-1}`},
		{name: "key ttl put missing", req: req{"PUT", "/v1/keys/none/ttl", `{"ttl_seconds":60}`}, status: 404, wantCode: "not_found"},
		{name: "key ttl put bad", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v"}`}},
			req: req{"PUT", "/v1/keys/k/ttl", `{"ttl_seconds":0}`}, status: 400, wantCode: "invalid_argument"},
		{name: "key delete hash", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"x"}}`}}, req: req{"DELETE", "/v1/keys/h", ""}, status: 204},
		{name: "key delete string", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v"}`}}, req: req{"DELETE", "/v1/keys/k", ""}, status: 204},
		{name: "key delete missing", req: req{"DELETE", "/v1/keys/none", ""}, status: 404, wantCode: "not_found"},
		{name: "key bad name", req: req{"GET", "/v1/keys/" + strings.Repeat("k", 33), ""}, status: 400, wantCode: "invalid_argument"},
		{name: "ttl get", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":40}`}}, req: req{"GET", "/v1/kv/k/ttl", ""},
			status: 200, want: `{"key":"k","ttl_seconds":40}`},
		{name: "ttl get none", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v"}`}}, req: req{"GET", "/v1/kv/k/ttl", ""},
			status: 200, want: `{"key":"k","ttl_seconds":-1}`},
		{name: "ttl put", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v"}`}}, req: req{"PUT", "/v1/kv/k/ttl", `{"ttl_seconds":70}`},
			status: 200, want: `{"key":"k","ttl_seconds":70}`},
		{name: "ttl delete", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":9}`}}, req: req{"DELETE", "/v1/kv/k/ttl", ""},
			status: 200, want: `{"key":"k","ttl_seconds":-1}`},
		{name: "ttl of missing", req: req{"GET", "/v1/kv/none/ttl", ""}, status: 404, wantCode: "not_found"},
		{name: "ttl put missing", req: req{"PUT", "/v1/kv/none/ttl", `{"ttl_seconds":5}`}, status: 404, wantCode: "not_found"},
		{name: "ttl delete missing", req: req{"DELETE", "/v1/kv/none/ttl", ""}, status: 404, wantCode: "not_found"},
		{name: "ttl put without ttl", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v"}`}}, req: req{"PUT", "/v1/kv/k/ttl", `{}`},
			status: 400, wantCode: "invalid_argument"},
		{name: "incr default", req: req{"POST", "/v1/kv/n/incr", ""}, status: 200, want: `{"key":"n","value":1}`},
		{name: "incr by", setup: []req{{"POST", "/v1/kv/n/incr", `{"by":10}`}}, req: req{"POST", "/v1/kv/n/incr", `{"by":-3}`},
			status: 200, want: `{"key":"n","value":7}`},
		{name: "incr text", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v"}`}}, req: req{"POST", "/v1/kv/k/incr", ""},
			status: 409, wantCode: "not_integer"},
		{name: "incr float by", req: req{"POST", "/v1/kv/n/incr", `{"by":1.5}`}, status: 400, wantCode: "invalid_argument"},

		{name: "hash put", req: req{"PUT", "/v1/hash/h", `{"fields":{"b":"2","a":"1"},"ttl_seconds":60}`}, status: 200,
			want: `{"key":"h","fields":["a","b"],"ttl_seconds":60}`},
		{name: "hash put merges", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"1"}}`}},
			req: req{"GET", "/v1/hash/h", ""}, status: 200,
			want: `{"key":"h","fields":{"a":"1"},"ttl_seconds":-1}`},
		{name: "hash put keeps the ttl", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"1"},"ttl_seconds":60}`}},
			req: req{"PUT", "/v1/hash/h", `{"fields":{"b":"2"}}`}, status: 200,
			want: `{"key":"h","fields":["b"],"ttl_seconds":60}`},
		{name: "hash get a page", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"1","b":"2"}}`}},
			req: req{"GET", "/v1/hash/h?limit=5", ""}, status: 200, want: `{"key":"h","fields":{"a":"1","b":"2"},"ttl_seconds":-1}`},
		{name: "hash get bad limit", req: req{"GET", "/v1/hash/h?limit=1001", ""}, status: 400, wantCode: "invalid_argument"},
		{name: "hash get bad cursor", req: req{"GET", "/v1/hash/h?cursor=x", ""}, status: 400, wantCode: "invalid_argument"},
		{name: "hash get", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"1"}}`}}, req: req{"GET", "/v1/hash/h", ""},
			status: 200, want: `{"key":"h","fields":{"a":"1"},"ttl_seconds":-1}`},
		{name: "hash get missing", req: req{"GET", "/v1/hash/none", ""}, status: 404, wantCode: "not_found"},
		{name: "hash delete", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"1"}}`}}, req: req{"DELETE", "/v1/hash/h", ""}, status: 204},
		{name: "hash delete missing", req: req{"DELETE", "/v1/hash/none", ""}, status: 404, wantCode: "not_found"},
		{name: "field get", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"1"}}`}}, req: req{"GET", "/v1/hash/h/a", ""},
			status: 200, want: `{"key":"h","field":"a","value":"1"}`},
		{name: "field get missing", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"1"}}`}}, req: req{"GET", "/v1/hash/h/b", ""},
			status: 404, wantCode: "not_found"},
		{name: "field put", req: req{"PUT", "/v1/hash/h/a", `{"value":"x"}`}, status: 200, want: `{"key":"h","field":"a"}`},
		{name: "field delete", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"1"}}`}}, req: req{"DELETE", "/v1/hash/h/a", ""}, status: 204},
		{name: "field delete missing", req: req{"DELETE", "/v1/hash/h/a", ""}, status: 404, wantCode: "not_found"},
		{name: "field incr", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"n":"5"}}`}}, req: req{"POST", "/v1/hash/h/n/incr", `{"by":2}`},
			status: 200, want: `{"key":"h","field":"n","value":7}`},
		{name: "field incr text", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"x"}}`}}, req: req{"POST", "/v1/hash/h/a/incr", ""},
			status: 409, wantCode: "not_integer"},

		{name: "string route on hash", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"1"}}`}}, req: req{"GET", "/v1/kv/h", ""},
			status: 409, wantCode: "wrong_type"},
		{name: "string put on hash", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"a":"1"}}`}}, req: req{"PUT", "/v1/kv/h", `{"value":"v"}`},
			status: 409, wantCode: "wrong_type"},
		{name: "hash route on string", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v"}`}}, req: req{"GET", "/v1/hash/k", ""},
			status: 409, wantCode: "wrong_type"},
		{name: "hash put on string", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v"}`}}, req: req{"PUT", "/v1/hash/k", `{"fields":{"a":"1"}}`},
			status: 409, wantCode: "wrong_type"},

		{name: "bad json", req: req{"PUT", "/v1/kv/k", `{"value":`}, status: 400, wantCode: "invalid_argument"},
		{name: "not an object", req: req{"PUT", "/v1/kv/k", `"v"`}, status: 400, wantCode: "invalid_argument"},
		{name: "empty body", req: req{"PUT", "/v1/kv/k", ""}, status: 400, wantCode: "invalid_argument"},
		{name: "unknown field", req: req{"PUT", "/v1/kv/k", `{"value":"v","extra":1}`}, status: 400, wantCode: "invalid_argument"},
		{name: "trailing data", req: req{"PUT", "/v1/kv/k", `{"value":"v"}{}`}, status: 400, wantCode: "invalid_argument"},
		{name: "missing value", req: req{"PUT", "/v1/kv/k", `{}`}, status: 400, wantCode: "invalid_argument"},
		{name: "value not a string", req: req{"PUT", "/v1/kv/k", `{"value":5}`}, status: 400, wantCode: "invalid_argument"},
		{name: "ttl zero", req: req{"PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":0}`}, status: 400, wantCode: "invalid_argument"},
		{name: "ttl negative", req: req{"PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":-5}`}, status: 400, wantCode: "invalid_argument"},
		{name: "ttl float", req: req{"PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":1.5}`}, status: 400, wantCode: "invalid_argument"},
		{name: "ttl string", req: req{"PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":"5"}`}, status: 400, wantCode: "invalid_argument"},
		{name: "ttl too large", req: req{"PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":2147483648}`}, status: 400, wantCode: "invalid_argument"},
		{name: "key too long", req: req{"PUT", "/v1/kv/" + strings.Repeat("k", 33), `{"value":"v"}`}, status: 400, wantCode: "invalid_argument"},
		{name: "key with control char", req: req{"GET", "/v1/kv/a%01b", ""}, status: 400, wantCode: "invalid_argument"},
		{name: "key with newline", req: req{"GET", "/v1/kv/a%0Ab", ""}, status: 400, wantCode: "invalid_argument"},
		{name: "key with encoded slash", req: req{"GET", "/v1/kv/a%2Fttl", ""}, status: 400, wantCode: "invalid_argument"},
		// A path is not a query string: '+' is a plus, with or without
		// other escapes in the path (the fuzzer found it turned into a space).
		{name: "key with plus", req: req{"PUT", "/v1/kv/a+b", `{"value":"v"}`}, status: 200,
			want: `{"key":"a+b","ttl_seconds":-1}`},
		{name: "key with plus and escapes", req: req{"PUT", "/v1/kv/a+b%2Cc%20d", `{"value":"v"}`}, status: 200,
			want: `{"key":"a+b,c d","ttl_seconds":-1}`},
		{name: "seed value with plus", req: req{"GET", "/set/k%2C/1+1", ""}, status: 200,
			want: `{"message":"Stored k, → 1+1 in Redis"}`},
		{name: "field with plus and escapes", req: req{"PUT", "/v1/hash/h/f+%2C", `{"value":"v"}`}, status: 200,
			want: `{"key":"h","field":"f+,"}`},
		{name: "field that is a percent sign", req: req{"PUT", "/v1/hash/h/%25", `{"value":"v"}`}, status: 200,
			want: `{"key":"h","field":"%"}`},
		{name: "key with a percent sign and a plus", req: req{"PUT", "/v1/kv/100%25+", `{"value":"v"}`}, status: 200,
			want: `{"key":"100%+","ttl_seconds":-1}`},
		{name: "key invalid utf-8", req: req{"GET", "/v1/kv/a%FFb", ""}, status: 400, wantCode: "invalid_argument"},
		{name: "field too long", req: req{"PUT", "/v1/hash/h/" + strings.Repeat("f", 33), `{"value":"v"}`}, status: 400, wantCode: "invalid_argument"},
		{name: "hash field name with NUL", req: req{"PUT", "/v1/hash/h", `{"fields":{"a\u0000":"v"}}`}, status: 400, wantCode: "invalid_argument"},
		{name: "hash field name with a lone surrogate", req: req{"PUT", "/v1/hash/h", `{"fields":{"a\udc00":"v"}}`}, status: 400, wantCode: "invalid_argument"},
		{name: "hash value with a lone surrogate", req: req{"PUT", "/v1/hash/h", `{"fields":{"a":"\ud800"}}`}, status: 400, wantCode: "invalid_argument"},
		{name: "seed value not utf-8", req: req{"GET", "/set/k/%FF", ""}, status: 400, wantCode: "invalid_argument"},
		{name: "hash without fields", req: req{"PUT", "/v1/hash/h", `{"fields":{}}`}, status: 400, wantCode: "invalid_argument"},
		{name: "hash field not a string", req: req{"PUT", "/v1/hash/h", `{"fields":{"a":1}}`}, status: 400, wantCode: "invalid_argument"},
		{name: "value too large", req: req{"PUT", "/v1/kv/k", `{"value":"` + strings.Repeat("x", 1025) + `"}`}, status: 413, wantCode: "payload_too_large"},
		{name: "hash value too large", req: req{"PUT", "/v1/hash/h", `{"fields":{"a":"` + strings.Repeat("x", 1025) + `"}}`}, status: 413, wantCode: "payload_too_large"},
		{name: "body too large", req: req{"PUT", "/v1/kv/k", `{"value":"v","pad":"` + strings.Repeat(" ", 70<<10) + `"}`}, status: 413, wantCode: "payload_too_large"},
		{name: "seed value too large", req: req{"GET", "/set/k/" + strings.Repeat("x", 1025), ""}, status: 413, wantCode: "payload_too_large"},

		{name: "unknown route", req: req{"GET", "/v2/kv/k", ""}, status: 404, wantCode: "not_found"},
		{name: "trailing slash", req: req{"GET", "/v1/kv/k/", ""}, status: 404, wantCode: "not_found"},
		{name: "wrong method", req: req{"PATCH", "/v1/kv/k", ""}, status: 405, wantCode: "method_not_allowed"},
		{name: "post on seed route", req: req{"POST", "/get/k", ""}, status: 405, wantCode: "method_not_allowed"},
	}
	// Every route on every Redis topology: the store keeps each operation
	// on one key, so the answers are the same on a Cluster and behind
	// Sentinel.
	for _, tp := range redistest.Topologies(t) {
		for _, tc := range tests {
			t.Run(tp.Name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				e := newEnvOn(t, tp)
				routeCase(t, e, tc.setup, tc.req, tc.headers, tc.status, tc.wantCode, tc.want)
			})
		}
	}
}

// routeCase sends the setup requests, then the request, and checks its
// status, X-Request-ID, error code or whole body, and that a refused write
// changed nothing.
func routeCase(t *testing.T, e *env, setup []req, r req, headers []string, status int, wantCode, want string) {
	t.Helper()
	for _, s := range setup {
		if w := e.do(t, s.method, s.path, s.body); w.Code >= 300 {
			t.Fatalf("setup %s %s: %d %s", s.method, s.path, w.Code, w.Body.String())
		}
	}
	before := keysOf(t, e)
	w := e.do(t, r.method, r.path, r.body, headers...)
	if w.Code != status {
		t.Fatalf("status: got %d, want %d; body %s", w.Code, status, w.Body.String())
	}
	if w.Header().Get("X-Request-ID") == "" {
		t.Errorf("no X-Request-ID on the response")
	}
	switch {
	case wantCode != "":
		if got := errorCode(t, w); got != wantCode {
			t.Errorf("code: got %s, want %s", got, wantCode)
		}
		if r.method != "GET" {
			if after := keysOf(t, e); !reflect.DeepEqual(before, after) {
				t.Errorf("a refused request changed Redis: before %v, after %v", before, after)
			}
		}
	case want != "":
		assertJSON(t, w.Body.Bytes(), want)
	case w.Body.Len() != 0:
		t.Errorf("want an empty body, got %q", w.Body.String())
	}
}

// keysOf snapshots the test's keys with their values, so that a refused
// request can be shown to change nothing.
func keysOf(t *testing.T, e *env) map[string]string {
	t.Helper()
	out := map[string]string{}
	ctx := t.Context()
	for k := range redistest.Keys(t, e.rdb, e.prefix) {
		d, _ := e.rdb.Dump(ctx, k).Result()
		ttl := e.rdb.TTL(ctx, k).Val()
		out[k] = d + "|" + ttl.String()
	}
	return out
}

// stored is a string key's value in Redis (the key as the API names it),
// "" when it does not exist or holds another type.
func stored(t *testing.T, e *env, key string) string {
	t.Helper()
	return e.rdb.Get(t.Context(), e.prefix+key).Val()
}

// exists reports whether the API's key exists in Redis, whatever its type.
func exists(t *testing.T, e *env, key string) bool {
	t.Helper()
	return e.rdb.Exists(t.Context(), e.prefix+key).Val() == 1
}

func assertJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("response is not JSON: %q", got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("body:\n got %s\nwant %s", got, want)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", withToken("s3cret-token"))
	tests := []struct {
		name   string
		path   string
		auth   string
		status int
	}{
		{name: "open home", path: "/", status: 200},
		{name: "open healthz", path: "/healthz", status: 200},
		{name: "open readyz", path: "/readyz", status: 200},
		{name: "open metrics", path: "/metrics", status: 200},
		{name: "v1 without token", path: "/v1/kv/k", status: 401},
		{name: "seed without token", path: "/get/k", status: 401},
		{name: "seed set without token", path: "/set/k/v", status: 401},
		{name: "wrong token", path: "/v1/kv/k", auth: "Bearer nope", status: 401},
		{name: "token without scheme", path: "/v1/kv/k", auth: "s3cret-token", status: 401},
		{name: "basic scheme", path: "/v1/kv/k", auth: "Basic czNjcmV0LXRva2Vu", status: 401},
		{name: "right token", path: "/get/k", auth: "Bearer s3cret-token", status: 200},
		{name: "right token v1", path: "/v1/kv/k", auth: "Bearer s3cret-token", status: 404},
	}
	for _, tc := range tests {
		w := e.do(t, "GET", tc.path, "", "Authorization", tc.auth)
		if w.Code != tc.status {
			t.Errorf("%s: got %d, want %d", tc.name, w.Code, tc.status)
			continue
		}
		if tc.status == 401 {
			if got := errorCode(t, w); got != "unauthorized" {
				t.Errorf("%s: code %s", tc.name, got)
			}
			if w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s: no WWW-Authenticate", tc.name)
			}
		}
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	tests := []struct {
		name string
		in   string
		keep bool
	}{
		{name: "sane id kept", in: "req-123_abc.def:9", keep: true},
		{name: "none made", in: ""},
		{name: "too long replaced", in: strings.Repeat("a", 129)},
		{name: "spaces replaced", in: "a b"},
		{name: "quote replaced", in: `a"b`},
	}
	for _, tc := range tests {
		w := e.do(t, "GET", "/healthz", "", "X-Request-ID", tc.in)
		got := w.Header().Get("X-Request-ID")
		if tc.keep && got != tc.in {
			t.Errorf("%s: got %q, want it kept", tc.name, got)
		}
		if !tc.keep && (got == tc.in || len(got) != 32) {
			t.Errorf("%s: got %q, want a new 32-hex id", tc.name, got)
		}
	}
}

func TestExpiryThroughAPI(t *testing.T) {
	t.Parallel()
	for _, tp := range redistest.Topologies(t) {
		t.Run(tp.Name, func(t *testing.T) {
			t.Parallel()
			expiryThroughAPI(t, newEnvOn(t, tp))
		})
	}
}

//nolint:thelper // a test body, run once per topology.
func expiryThroughAPI(t *testing.T, e *env) {
	if w := e.do(t, "PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":1}`); w.Code != http.StatusOK {
		t.Fatal(w.Body.String())
	}
	if w := e.do(t, "GET", "/v1/kv/k", ""); w.Code != http.StatusOK {
		t.Fatalf("before expiry: %d", w.Code)
	}
	// PEXPIRE to 50ms rather than sleeping a whole second.
	if err := e.rdb.PExpire(t.Context(), e.prefix+"k", 50e6).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := 2000
	for deadline > 0 {
		if w := e.do(t, "GET", "/v1/kv/k", ""); w.Code == http.StatusNotFound {
			return
		}
		deadline -= 20
		sleepMS(20)
	}
	t.Fatal("key did not expire")
}

// TestWritesListIsComplete checks that servicetest.Writes, which the
// full-Redis and fault tests drive, names every write route the router
// serves (every method but GET, and the tutorial's /set).
func TestWritesListIsComplete(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	listed := map[string]bool{}
	for _, w := range servicetest.Writes {
		listed[w.Method+" "+w.Route] = true
	}
	for _, r := range routesOf(t, e) {
		if api.IsRead(r.Method, r.Path) {
			continue
		}
		if !listed[r.Method+" "+r.Path] {
			t.Errorf("%s %s writes but is not in servicetest.Writes", r.Method, r.Path)
		}
	}
}

// TestKeysListing pages through GET /v1/keys with a small limit on every
// topology and checks that every key under the prefix comes back exactly
// once, whichever primary of a Cluster holds it.
func TestKeysListing(t *testing.T) {
	//nolint:thelper // a test body, run once per topology.
	onEveryTopology(t, func(t *testing.T, tp redistest.Topology, e *env) {
		for i := range 40 {
			e.do(t, "PUT", fmt.Sprintf("/v1/kv/item:%d", i), `{"value":"v"}`)
		}
		e.do(t, "PUT", "/v1/kv/elsewhere", `{"value":"v"}`)
		seen := map[string]int{}
		cursor := ""
		for pages := 1; ; pages++ {
			w := e.do(t, "GET", "/v1/keys?prefix=item:&limit=6&cursor="+cursor, "")
			if w.Code != 200 {
				t.Fatalf("page %d: %d %s", pages, w.Code, w.Body.String())
			}
			var page struct {
				Keys       []string `json:"keys"`
				NextCursor string   `json:"next_cursor"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil {
				t.Fatal(err)
			}
			for _, k := range page.Keys {
				seen[k]++
			}
			if page.NextCursor == "" {
				break
			}
			// Other tests' keys share this Redis: a page of 6 may hold none
			// of ours, so allow many pages; only an endless cursor fails.
			if pages > 20000 {
				t.Fatal("the listing never ends")
			}
			cursor = page.NextCursor
		}
		if len(seen) != 40 {
			t.Errorf("listed %d distinct keys, want the 40 under item:", len(seen))
		}
		for k, n := range seen {
			if n != 1 || !strings.HasPrefix(k, "item:") {
				t.Errorf("%s listed %d times", k, n)
			}
		}
	})
}

// TestBatchGet reads keys spread over every slot range in one request, on
// every topology: each answered in the order asked, a missing key and a
// key of another type reported on their own item, the request a 200.
func TestBatchGet(t *testing.T) {
	//nolint:thelper // a test body, run once per topology.
	onEveryTopology(t, func(t *testing.T, tp redistest.Topology, e *env) {
		var keys []string
		for i := range 50 {
			k := fmt.Sprintf("batch:%d", i)
			e.do(t, "PUT", "/v1/kv/"+k, fmt.Sprintf(`{"value":"v%d"}`, i))
			keys = append(keys, k)
		}
		e.do(t, "PUT", "/v1/hash/a-hash", `{"fields":{"f":"v"}}`)
		keys = append(keys, "missing", "a-hash")
		body, _ := json.Marshal(map[string]any{"keys": keys})
		w := e.do(t, "POST", "/v1/kv:batchGet", string(body))
		if w.Code != 200 {
			t.Fatalf("batch get: %d %s", w.Code, w.Body.String())
		}
		var resp struct {
			Items []struct {
				Key   string  `json:"key"`
				Value *string `json:"value"`
				Error *struct {
					Code string `json:"code"`
				} `json:"error"`
			} `json:"items"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || len(resp.Items) != len(keys) {
			t.Fatalf("%d items (%v), want %d", len(resp.Items), err, len(keys))
		}
		for i, it := range resp.Items[:50] {
			if it.Key != keys[i] || it.Value == nil || *it.Value != fmt.Sprintf("v%d", i) {
				t.Errorf("item %d: %+v, want %s = v%d", i, it, keys[i], i)
			}
		}
		if it := resp.Items[50]; it.Error == nil || it.Error.Code != "not_found" || it.Value != nil {
			t.Errorf("missing key: %+v, want error not_found", it)
		}
		if it := resp.Items[51]; it.Error == nil || it.Error.Code != "wrong_type" {
			t.Errorf("hash key: %+v, want error wrong_type", it)
		}
	})
}

// TestConditionalRequests checks HTTP's conditional requests on strings and
// hash fields: the ETag a GET answers, 304 for If-None-Match, create-only
// with If-None-Match: *, and compare-and-set with If-Match, each refused
// write leaving the value as it was.
func TestConditionalRequests(t *testing.T) {
	t.Parallel()
	tag := func(v string) string { return `"` + store.Tag(v) + `"` }
	tests := []struct {
		name      string
		setup     []req
		req       req
		headers   []string
		status    int
		check     req    // a read after the request
		checkWant string // what it must answer
	}{
		{name: "get answers the etag", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v1"}`}},
			req: req{"GET", "/v1/kv/k", ""}, status: 200},
		{name: "get not modified", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v1"}`}},
			req: req{"GET", "/v1/kv/k", ""}, headers: []string{"If-None-Match", tag("v1")}, status: 304},
		{name: "get not modified for a weak tag", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v1"}`}},
			req: req{"GET", "/v1/kv/k", ""}, headers: []string{"If-None-Match", `"x", W/` + tag("v1")}, status: 304},
		{name: "get modified", setup: []req{{"PUT", "/v1/kv/k", `{"value":"v2"}`}},
			req: req{"GET", "/v1/kv/k", ""}, headers: []string{"If-None-Match", tag("v1")}, status: 200},
		{name: "create only on a new key", req: req{"PUT", "/v1/kv/k", `{"value":"v1"}`}, headers: []string{"If-None-Match", "*"},
			status: 200, check: req{"GET", "/v1/kv/k", ""}, checkWant: "v1"},
		{name: "create only on an existing key", setup: []req{{"PUT", "/v1/kv/k", `{"value":"old"}`}},
			req: req{"PUT", "/v1/kv/k", `{"value":"new"}`}, headers: []string{"If-None-Match", "*"}, status: 412,
			check: req{"GET", "/v1/kv/k", ""}, checkWant: "old"},
		{name: "compare-and-set matching", setup: []req{{"PUT", "/v1/kv/k", `{"value":"old"}`}},
			req: req{"PUT", "/v1/kv/k", `{"value":"new"}`}, headers: []string{"If-Match", tag("old")}, status: 200,
			check: req{"GET", "/v1/kv/k", ""}, checkWant: "new"},
		{name: "compare-and-set stale", setup: []req{{"PUT", "/v1/kv/k", `{"value":"changed"}`}},
			req: req{"PUT", "/v1/kv/k", `{"value":"new"}`}, headers: []string{"If-Match", tag("old")}, status: 412,
			check: req{"GET", "/v1/kv/k", ""}, checkWant: "changed"},
		{name: "compare-and-set weak tag never matches", setup: []req{{"PUT", "/v1/kv/k", `{"value":"old"}`}},
			req: req{"PUT", "/v1/kv/k", `{"value":"new"}`}, headers: []string{"If-Match", "W/" + tag("old")}, status: 412,
			check: req{"GET", "/v1/kv/k", ""}, checkWant: "old"},
		{name: "compare-and-set on a missing key", req: req{"PUT", "/v1/kv/k", `{"value":"new"}`}, headers: []string{"If-Match", "*"}, status: 412},
		{name: "If-Match * on an existing key", setup: []req{{"PUT", "/v1/kv/k", `{"value":"old"}`}},
			req: req{"PUT", "/v1/kv/k", `{"value":"new"}`}, headers: []string{"If-Match", "*"}, status: 200,
			check: req{"GET", "/v1/kv/k", ""}, checkWant: "new"},
		// Only an unquoted * is the wildcard: "*" is a tag no value has.
		{name: "a quoted star is a tag", setup: []req{{"PUT", "/v1/kv/k", `{"value":"old"}`}},
			req: req{"PUT", "/v1/kv/k", `{"value":"new"}`}, headers: []string{"If-Match", `"*"`}, status: 412,
			check: req{"GET", "/v1/kv/k", ""}, checkWant: "old"},
		{name: "conditional delete stale", setup: []req{{"PUT", "/v1/kv/k", `{"value":"changed"}`}},
			req: req{"DELETE", "/v1/kv/k", ""}, headers: []string{"If-Match", tag("old")}, status: 412,
			check: req{"GET", "/v1/kv/k", ""}, checkWant: "changed"},
		{name: "conditional delete matching", setup: []req{{"PUT", "/v1/kv/k", `{"value":"old"}`}},
			req: req{"DELETE", "/v1/kv/k", ""}, headers: []string{"If-Match", `"x", ` + tag("old")}, status: 204},
		{name: "conditional write on a hash key", setup: []req{{"PUT", "/v1/hash/k", `{"fields":{"f":"v"}}`}},
			req: req{"PUT", "/v1/kv/k", `{"value":"new"}`}, headers: []string{"If-None-Match", "*"}, status: 409},
		{name: "tutorial get not modified", setup: []req{{"GET", "/set/k/v1", ""}},
			req: req{"GET", "/get/k", ""}, headers: []string{"If-None-Match", tag("v1")}, status: 304},
		{name: "field get not modified", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"f":"v1"}}`}},
			req: req{"GET", "/v1/hash/h/f", ""}, headers: []string{"If-None-Match", tag("v1")}, status: 304},
		{name: "field compare-and-set", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"f":"v1"}}`}},
			req: req{"PUT", "/v1/hash/h/f", `{"value":"v2"}`}, headers: []string{"If-Match", tag("v1")}, status: 200,
			check: req{"GET", "/v1/hash/h/f", ""}, checkWant: "v2"},
		{name: "field create only", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"f":"v1"}}`}},
			req: req{"PUT", "/v1/hash/h/f", `{"value":"v2"}`}, headers: []string{"If-None-Match", "*"}, status: 412,
			check: req{"GET", "/v1/hash/h/f", ""}, checkWant: "v1"},
		{name: "field conditional delete stale", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"f":"v2"}}`}},
			req: req{"DELETE", "/v1/hash/h/f", ""}, headers: []string{"If-Match", tag("v1")}, status: 412,
			check: req{"GET", "/v1/hash/h/f", ""}, checkWant: "v2"},
		{name: "malformed If-Match", req: req{"PUT", "/v1/kv/k", `{"value":"v"}`}, headers: []string{"If-Match", "abc"}, status: 400},
		{name: "If-None-Match with a tag on a write", req: req{"PUT", "/v1/kv/k", `{"value":"v"}`}, headers: []string{"If-None-Match", tag("v")}, status: 400},
		{name: "both conditions", req: req{"PUT", "/v1/kv/k", `{"value":"v"}`}, headers: []string{"If-Match", "*", "If-None-Match", "*"}, status: 400},
		{name: "condition on a route without them", setup: []req{{"PUT", "/v1/hash/h", `{"fields":{"f":"v"}}`}},
			req: req{"DELETE", "/v1/hash/h", ""}, headers: []string{"If-Match", "*"}, status: 400,
			check: req{"GET", "/v1/hash/h/f", ""}, checkWant: "v"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "")
			for _, s := range tc.setup {
				e.do(t, s.method, s.path, s.body)
			}
			w := e.do(t, tc.req.method, tc.req.path, tc.req.body, tc.headers...)
			if w.Code != tc.status {
				t.Fatalf("%d %s, want %d", w.Code, w.Body.String(), tc.status)
			}
			if tc.status == 304 && w.Body.Len() != 0 {
				t.Errorf("304 with a body: %q", w.Body.String())
			}
			if tc.req.method == "GET" && w.Header().Get("ETag") == "" {
				t.Error("a GET without an ETag")
			}
			if tc.req.method == "PUT" && w.Code == 200 {
				var body struct{ Value string }
				_ = json.Unmarshal([]byte(tc.req.body), &body)
				if got := w.Header().Get("ETag"); got != tag(body.Value) {
					t.Errorf("the write answered ETag %s, want the new value's %s", got, tag(body.Value))
				}
			}
			if tc.check.path != "" {
				var got struct{ Value string }
				_ = json.Unmarshal(e.do(t, tc.check.method, tc.check.path, "").Body.Bytes(), &got)
				if got.Value != tc.checkWant {
					t.Errorf("after the request the value is %q, want %q", got.Value, tc.checkWant)
				}
			}
		})
	}
}

// TestCompareAndSetLosesNoUpdate runs writers that each read a counter,
// add one and write it back with If-Match, retrying on 412, on every
// topology: with the comparison atomic in Redis, the counter ends at the
// number of increments, none lost.
func TestCompareAndSetLosesNoUpdate(t *testing.T) {
	//nolint:thelper // a test body, run once per topology.
	onEveryTopology(t, func(t *testing.T, _ redistest.Topology, e *env) {
		e.do(t, "PUT", "/v1/kv/counter", `{"value":"0"}`)
		const writers, each = 8, 25
		var wg sync.WaitGroup
		var conflicts, unknown atomic.Int64
		for range writers {
			wg.Go(func() {
				for done := 0; done < each; {
					r := e.do(t, "GET", "/v1/kv/counter", "")
					if r.Code != 200 {
						// A read that failed under load has no ETag; writing
						// without one would not be compare-and-set.
						continue
					}
					var cur struct{ Value string }
					_ = json.Unmarshal(r.Body.Bytes(), &cur)
					n, _ := strconv.Atoi(cur.Value)
					w := e.do(t, "PUT", "/v1/kv/counter", fmt.Sprintf(`{"value":"%d"}`, n+1), "If-Match", r.Header().Get("ETag"))
					switch w.Code {
					case 200:
						done++
					case 412:
						conflicts.Add(1)
					case 503, 504:
						// Redis did not answer in time under the load of
						// the other tests: the write may or may not have
						// been applied.
						unknown.Add(1)
					default:
						t.Errorf("PUT: %d %s", w.Code, w.Body.String())
						return
					}
				}
			})
		}
		wg.Wait()
		var final struct{ Value string }
		_ = json.Unmarshal(e.do(t, "GET", "/v1/kv/counter", "").Body.Bytes(), &final)
		// Every acknowledged increment is in the counter, and nothing else
		// but the writes whose outcome was unknown.
		n, _ := strconv.Atoi(final.Value)
		if acked := writers * each; n < acked || n > acked+int(unknown.Load()) {
			t.Errorf("counter %d after %d acknowledged increments (%d conflicts retried, %d outcomes unknown): updates were lost or doubled",
				n, acked, conflicts.Load(), unknown.Load())
		}
		t.Logf("%d increments, %d conflicts answered 412 and retried, %d timed out", writers*each, conflicts.Load(), unknown.Load())
	})
}

// TestNearCacheThroughAPI checks what a client sees of the near cache: the
// second GET of a key comes from memory (X-Cache: near, a server span with
// the attribute and no Redis span), Cache-Control: no-cache goes to Redis,
// and a PUT's value is what the next GET answers.
func TestNearCacheThroughAPI(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	e := newNearEnv(t, srv.Addr)
	e.do(t, "PUT", "/v1/kv/k", `{"value":"v1"}`)
	deadline := time.Now().Add(5 * time.Second)
	for e.do(t, "GET", "/v1/kv/k", "").Header().Get("X-Cache") != "near" {
		if time.Now().After(deadline) {
			t.Fatal("GET never answered X-Cache: near")
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.spans.Reset()
	w := e.do(t, "GET", "/v1/kv/k", "")
	if w.Header().Get("X-Cache") != "near" || !strings.Contains(w.Body.String(), `"v1"`) {
		t.Fatalf("GET: %s %s", w.Header().Get("X-Cache"), w.Body.String())
	}
	var server, redisSpans int
	for _, s := range e.spans.Ended() {
		for _, a := range s.Attributes() {
			if a.Key == "dubebox.near_cache" && a.Value.AsBool() {
				server++
			}
		}
		if s.SpanKind().String() == "client" {
			redisSpans++
		}
	}
	if server != 1 || redisSpans != 0 {
		t.Errorf("a GET from the near cache made %d server spans marked near and %d Redis spans; want 1 and 0", server, redisSpans)
	}
	e.spans.Reset()
	if w := e.do(t, "GET", "/v1/kv/k", "", "Cache-Control", "no-cache"); w.Header().Get("X-Cache") != "redis" {
		t.Errorf("Cache-Control: no-cache answered X-Cache %q, want redis", w.Header().Get("X-Cache"))
	}
	redisSpans = 0
	for _, s := range e.spans.Ended() {
		if s.SpanKind().String() == "client" {
			redisSpans++
		}
	}
	if redisSpans == 0 {
		t.Error("a GET from Redis made no Redis span: the check above proves nothing")
	}
	for i := range 50 {
		want := fmt.Sprint("v", i+2)
		e.do(t, "PUT", "/v1/kv/k", fmt.Sprintf(`{"value":%q}`, want))
		if got := e.do(t, "GET", "/v1/kv/k", ""); !strings.Contains(got.Body.String(), want) {
			t.Fatalf("GET after PUT %s answered %s (X-Cache %s)", want, got.Body.String(), got.Header().Get("X-Cache"))
		}
	}
}
