package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
)

func send(t *testing.T, method, url, body string, headers ...string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSecretsNeverLeak plants a recognisable value, Redis password, API
// token, read token and a wrong token, drives every route with debug logs and
// every span printed, and finds none of them in the logs, the spans or the
// metrics.
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	const (
		value     = "VALUE-c0ffee-7d1f"
		password  = "REDISPW-51d3-aa90"
		token     = "TOKEN-9f8e-77aa-5555"
		readToken = "READTOKEN-1b2c-3d4e"
		wrong     = "WRONGTOKEN-0000-ffff"
	)
	rs := redistest.Start(t, "--requirepass", password)
	base, out, stop := start(t, map[string]string{
		"REDIS_ADDR": rs.Addr, "REDIS_PASSWORD": password, "API_TOKEN": token, "API_READ_TOKEN": readToken,
		"LOG_LEVEL": "debug", "OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "always_on",
	})
	auth := []string{"Authorization", "Bearer " + token}
	reqs := []struct{ method, path, body string }{
		{"GET", "/set/k1/" + value + "?ttl=60", ""},
		{"GET", "/get/k1", ""},
		{"PUT", "/v1/kv/k2", `{"value":"` + value + `","ttl_seconds":60}`},
		{"GET", "/v1/kv/k2", ""},
		{"GET", "/v1/kv/k2/ttl", ""},
		{"PUT", "/v1/kv/k2/ttl", `{"ttl_seconds":30}`},
		{"DELETE", "/v1/kv/k2/ttl", ""},
		{"POST", "/v1/kv/n/incr", `{"by":2}`},
		{"PUT", "/v1/hash/h", `{"fields":{"f":"` + value + `"},"ttl_seconds":60}`},
		{"GET", "/v1/hash/h", ""},
		{"PUT", "/v1/hash/h/g", `{"value":"` + value + `"}`},
		{"GET", "/v1/hash/h/g", ""},
		{"POST", "/v1/hash/h/c/incr", ""},
		{"DELETE", "/v1/hash/h/g", ""},
		{"GET", "/v1/kv/h", ""}, // wrong type
		{"PUT", "/v1/kv/k3", `{"value":"` + value + `","bad":1}`},
		{"DELETE", "/v1/hash/h", ""},
		{"DELETE", "/v1/kv/k2", ""},
	}
	for _, r := range reqs {
		if code, body := send(t, r.method, base+r.path, r.body, auth...); code >= 500 {
			t.Errorf("%s %s: %d %s", r.method, r.path, code, body)
		}
	}
	send(t, "GET", base+"/v1/kv/k1", "", "Authorization", "Bearer "+wrong)
	send(t, "PUT", base+"/v1/kv/k1", `{"value":"`+value+`"}`, "Authorization", "Bearer "+readToken)
	_, metrics := send(t, "GET", base+"/metrics", "")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	logs := out.String()
	if !strings.Contains(logs, `"SpanContext"`) || !strings.Contains(logs, `"msg":"redis call"`) {
		t.Fatalf("the output lacks spans or debug lines; the test would prove nothing:\n%.2000s", logs)
	}
	for name, s := range map[string]string{"value": value, "password": password, "token": token, "read token": readToken, "wrong token": wrong} {
		if strings.Contains(logs, s) {
			i := strings.Index(logs, s)
			t.Errorf("the %s is in the logs or spans: ...%s...", name, logs[max(0, i-300):min(len(logs), i+50)])
		}
		if strings.Contains(metrics, s) {
			t.Errorf("the %s is in /metrics", name)
		}
	}
}

// TestRedisAuth runs against a redis-server that requires a password and
// has an ACL user: both work, and wrong credentials give a clear start-up
// line and /readyz 503 instead of a crash.
func TestRedisAuth(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, "--requirepass", "default-pw", "--user", "app", "on", ">app-pw", "~*", "+@all")
	tests := []struct {
		name  string
		env   map[string]string
		ready int
	}{
		{"password", map[string]string{"REDIS_PASSWORD": "default-pw"}, 200},
		{"ACL user", map[string]string{"REDIS_USERNAME": "app", "REDIS_PASSWORD": "app-pw"}, 200},
		{"URL with ACL user", map[string]string{"REDIS_URL": "redis://app:app-pw@" + rs.Addr + "/0"}, 200},
		{"no password", map[string]string{}, 503},
		{"wrong password", map[string]string{"REDIS_PASSWORD": "nope"}, 503},
		{"wrong ACL password", map[string]string{"REDIS_USERNAME": "app", "REDIS_PASSWORD": "nope"}, 503},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := tc.env
			if env["REDIS_URL"] == "" {
				env["REDIS_ADDR"] = rs.Addr
			}
			base, out, _ := start(t, env)
			code, body := send(t, "GET", base+"/readyz", "")
			if code != tc.ready {
				t.Errorf("readyz: %d %s, want %d", code, body, tc.ready)
			}
			put, _ := send(t, "PUT", base+"/v1/kv/k", `{"value":"v"}`)
			if tc.ready == 200 && put != 200 {
				t.Errorf("PUT: %d", put)
			}
			if tc.ready == 503 {
				// /readyz is open to anyone: it says only "not ready", and
				// its log line says why.
				if strings.Contains(body, "credentials") || strings.Contains(body, "REDIS_") {
					t.Errorf("readyz tells a caller why: %s", body)
				}
				if !strings.Contains(out.String(), "redis refused the credentials (REDIS_USERNAME, REDIS_PASSWORD)") && tc.name != "no password" {
					t.Errorf("the /readyz line does not say the credentials are wrong:\n%s", out.String())
				}
				deadline := time.Now().Add(2 * time.Second)
				for !strings.Contains(out.String(), "check REDIS_USERNAME and REDIS_PASSWORD") && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if !strings.Contains(out.String(), "check REDIS_USERNAME and REDIS_PASSWORD") {
					t.Errorf("no clear start-up line about the credentials:\n%s", out.String())
				}
				if code, _ := send(t, "GET", base+"/healthz", ""); code != 200 {
					t.Errorf("the process is not serving: healthz %d", code)
				}
				if strings.Contains(out.String(), "default-pw") || strings.Contains(out.String(), "app-pw") || strings.Contains(out.String(), `"nope"`) {
					t.Errorf("a password is in the log")
				}
			}
		})
	}
}
