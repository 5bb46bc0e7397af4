package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzKeyFieldTTL sends arbitrary keys, field names and ttl_seconds texts
// through the real router to a real Redis. Whatever the input, the answer is
// never a 5xx; an accepted write is stored under the prefix at exactly that
// key and reads back the same; a refused one is a documented 4xx.
func FuzzKeyFieldTTL(f *testing.F) {
	seeds := []struct{ key, field, ttl string }{
		{"k", "f", "10"},
		{"café", "ü", "1"},
		{"", "f", "5"},
		{"a/b", "f", "5"},
		{"..", "..", "0"},
		{"a\x00b", "f\n", "-1"},
		{"k", "f", "1.5"},
		{"k", "f", `"7"`},
		{"k", "f", "2147483648"},
		{"k", "f", "99999999999999999999999"},
		{"%2F", "%00", "null"},
		{"\xff", "\xfe", "{}"},
		{strings.Repeat("k", 40), "f", "3"},
	}
	for _, s := range seeds {
		f.Add(s.key, s.field, s.ttl)
	}
	e := newEnv(f, "")
	f.Fuzz(func(t *testing.T, key, field, ttl string) {
		fieldJSON, _ := json.Marshal(field)
		// JSON cannot carry invalid UTF-8: Marshal replaces it with U+FFFD,
		// so the field the server sees is the one that comes back out.
		_ = json.Unmarshal(fieldJSON, &field)
		body := `{"fields":{` + string(fieldJSON) + `:"v"},"ttl_seconds":` + ttl + `}`
		path := "/v1/hash/" + url.PathEscape(key)
		w := e.do(t, "PUT", path, body)
		switch w.Code {
		case 200:
			if !acceptable(key, 32) || !acceptable(field, 32) {
				t.Fatalf("accepted key %q field %q", key, field)
			}
			got, err := e.rdb.HGet(t.Context(), e.prefix+key, field).Result()
			if err != nil || got != "v" {
				t.Fatalf("HGET %q %q after 200: %q, %v", key, field, got, err)
			}
			r := e.do(t, "GET", path+"/"+url.PathEscape(field), "")
			if r.Code != 200 || decode(t, r)["value"] != "v" {
				t.Fatalf("read back %q %q: %d %s", key, field, r.Code, r.Body.String())
			}
			e.rdb.Del(t.Context(), e.prefix+key)
		case 400, 404, 405, 409, 413:
			if w.Body.Len() > 0 {
				errorCode(t, w)
			}
		default:
			t.Fatalf("key %q field %q ttl %q: status %d %s", key, field, ttl, w.Code, w.Body.String())
		}
	})
}

// acceptable is the documented rule for keys and field names.
func acceptable(s string, maxBytes int) bool {
	return s != "" && s != "." && s != ".." && len(s) <= maxBytes && utf8.ValidString(s) &&
		!strings.ContainsRune(s, '/') && strings.IndexFunc(s, unicode.IsControl) < 0
}

// FuzzRouter sends arbitrary methods, paths and bodies through the real
// router. Whatever comes in, the answer is never a 5xx, every error has the
// documented shape, and a key outside the prefix is never touched.
func FuzzRouter(f *testing.F) {
	seeds := []struct{ method, path, body string }{
		{"GET", "/v1/kv/k", ""},
		{"PUT", "/v1/kv/k", `{"value":"v","ttl_seconds":5}`},
		{"PUT", "/v1/hash/h", `{"fields":{"a":"1"},"ttl_seconds":1}`},
		{"POST", "/v1/hash/h/a/incr", `{"by":3}`},
		{"PUT", "/v1/kv/k/ttl", `{"ttl_seconds":1}`},
		{"DELETE", "/v1/hash/h/a", ""},
		{"GET", "/v1/keys/h", ""},
		{"PUT", "/v1/keys/h/ttl", `{"ttl_seconds":2}`},
		{"DELETE", "/v1/keys/k", ""},
		{"POST", "/v1/list/l/push", `{"values":["a","b"],"end":"head","ttl_seconds":3}`},
		{"POST", "/v1/list/l/pop", `{"end":"tail","count":2}`},
		{"GET", "/v1/list/l?offset=0&limit=10", ""},
		{"POST", "/v1/kv:batchGet", `{"keys":["a","b"]}`},
		{"GET", "/v1/keys?prefix=a*&type=hash&limit=5&cursor=MC4w", ""},
		{"GET", "/set/a/b?ttl=3", ""},
		{"GET", "/get/..%2F..%2Foutside", ""},
		{"PUT", "/v1/kv/%00", `{"value":"\u0000"}`},
		{"OPTIONS", "/", ""},
		{"PUT", "/v1/kv/k", `{"value":"v","value":"w"}`},
		{"PUT", "/v1/kv/k", `[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]`},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.body)
	}
	e := newEnv(f, "")
	outside := "fuzz-outside:" + e.prefix
	if err := e.rdb.Set(f.Context(), outside, "untouchable", 0).Err(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.rdb.Del(context.Background(), outside) })
	f.Fuzz(func(t *testing.T, method, path, body string) {
		req, err := http.NewRequestWithContext(t.Context(), method, "http://dubebox"+path, strings.NewReader(body))
		if err != nil || req.URL.Host != "dubebox" {
			t.Skip("not a request a client could send")
		}
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %q %q: %d %s", method, path, body, w.Code, w.Body.String())
		}
		if w.Code >= 400 && method != http.MethodHead {
			errorCode(t, w)
		}
		if v := e.rdb.Get(t.Context(), outside).Val(); v != "untouchable" {
			t.Fatalf("%s %q changed a key outside the prefix", method, path)
		}
	})
}
