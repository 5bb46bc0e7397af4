package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/api"
	svcconfig "github.com/dubebox/dubebox/internal/config"
	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/store"
	"github.com/dubebox/dubebox/observability"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// server is the real API over the package's Redis.
func server(t *testing.T) *httptest.Server {
	t.Helper()
	return serverWith(t, func(*api.Config) {})
}

// serverWith is server with its API settings changed by mod.
func serverWith(t *testing.T, mod func(*api.Config)) *httptest.Server {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	cfg := svcconfig.Default()
	mod(&cfg.API)
	cfg.Store.KeyPrefix, cfg.Store.Timeout, cfg.Store.Near.NearSize = prefix, time.Second, 0
	st := store.Open(t.Context(), rdb, cfg.Store, nil, nil)
	h := api.New(cfg.API,
		api.Deps{Store: st, Log: zap.NewNop(), Metrics: observability.NewMetrics("test", store.ReadOps), TracerProvider: noop.NewTracerProvider()})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestMixedRun(t *testing.T) {
	t.Parallel()
	srv := server(t)
	var out bytes.Buffer
	jsonPath := filepath.Join(t.TempDir(), "sum.json")
	err := run(t.Context(), []string{"-url", srv.URL, "-duration", "1500ms", "-report", "500ms", "-c", "4",
		"-keys", "50", "-bad", "0.2", "-ttl-min", "1s", "-ttl-max", "2s", "-json", jsonPath}, &out)
	if err != nil {
		t.Fatal(err)
	}
	var sum summary
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, v := range sum.ByStatus {
		n += v
	}
	if sum.Requests == 0 || n != sum.Requests {
		t.Fatalf("requests %d, by status %v", sum.Requests, sum.ByStatus)
	}
	for _, code := range []string{"200", "400", "404", "405"} {
		if sum.ByStatus[code] == 0 {
			t.Errorf("no %s in the mix: %v", code, sum.ByStatus)
		}
	}
	if sum.Errors != 0 {
		t.Errorf("errors against a healthy API: %v", sum.ByStatus)
	}
	if sum.HitRatio <= 0 || sum.HitRatio >= 1 || sum.P50ms <= 0 || sum.P99ms < sum.P50ms || sum.MaxMs < sum.P99ms {
		t.Errorf("implausible figures: %+v", sum)
	}
	text := out.String()
	for _, want := range []string{"closed loop with 4 workers", "read 80%", "for 1.5s", "found ", "refused 0", "p99 ", "summary:", "latency: p50", "status:"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if lines := strings.Count(text, "rate "); lines < 2 {
		t.Errorf("want a live line every 500ms, got %d:\n%s", lines, text)
	}
}

// TestRefusedRunFails runs without -token against an API that needs one:
// every answer is 401 or 429, and the run must fail saying so rather than
// report a clean run with no errors.
func TestRefusedRunFails(t *testing.T) {
	t.Parallel()
	srv := serverWith(t, func(c *api.Config) { c.APIToken = "load-token-0123456789" })
	var out bytes.Buffer
	err := run(t.Context(), []string{"-url", srv.URL, "-duration", "500ms", "-c", "2", "-bad", "0"}, &out)
	if err == nil || !strings.Contains(err.Error(), "pass -token") {
		t.Fatalf("a run whose every request was refused: %v, want an error that says to pass -token\n%s", err, out.String())
	}
	err = run(t.Context(), []string{"-url", srv.URL, "-duration", "500ms", "-c", "2", "-token", "load-token-0123456789"}, &out)
	if err != nil {
		t.Fatalf("with -token: %v\n%s", err, out.String())
	}
}

func TestOpenLoopKeepsItsRate(t *testing.T) {
	t.Parallel()
	srv := server(t)
	var out bytes.Buffer
	jsonPath := filepath.Join(t.TempDir(), "sum.json")
	if err := run(t.Context(), []string{"-url", srv.URL, "-duration", "2s", "-rate", "200", "-c", "8", "-json", jsonPath}, &out); err != nil {
		t.Fatal(err)
	}
	var sum summary
	b, _ := os.ReadFile(jsonPath)
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	// 400 requests are due in 2s; allow for the last ones cut off at the end.
	if sum.Requests < 360 || sum.Requests > 401 {
		t.Errorf("open loop at 200/s for 2s sent %d requests", sum.Requests)
	}
}

func TestGetModePreloads(t *testing.T) {
	t.Parallel()
	srv := server(t)
	var out bytes.Buffer
	jsonPath := filepath.Join(t.TempDir(), "sum.json")
	if err := run(t.Context(), []string{"-url", srv.URL, "-mode", "get", "-keys", "100", "-duration", "500ms", "-c", "2", "-json", jsonPath}, &out); err != nil {
		t.Fatal(err)
	}
	var sum summary
	b, _ := os.ReadFile(jsonPath)
	_ = json.Unmarshal(b, &sum)
	if sum.Requests == 0 || sum.ByStatus["200"] != sum.Requests {
		t.Errorf("GET on preloaded keys: %v", sum.ByStatus)
	}
	first, _, _ := strings.Cut(out.String(), "\n")
	if strings.Contains(first, "read ") || strings.Contains(first, "bad ") || !strings.Contains(first, "for 500ms") {
		t.Errorf("-mode get's first line shows shares that do not apply, or not how it ends: %q", first)
	}
}

// TestServerDiesMidRun checks that a run whose server dies under it exits
// with an error, and that -max-errors sets how many failures are tolerated.
func TestServerDiesMidRun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		maxErrors string
		fail      bool
	}{{"0.01", true}, {"1", false}} {
		srv := server(t)
		time.AfterFunc(300*time.Millisecond, func() { srv.CloseClientConnections(); srv.Close() })
		var out bytes.Buffer
		err := run(t.Context(), []string{"-url", srv.URL, "-duration", "1200ms", "-c", "2", "-timeout", "200ms", "-max-errors", tc.maxErrors}, &out)
		if tc.fail && (err == nil || !strings.Contains(err.Error(), "no answer")) {
			t.Errorf("-max-errors %s: got %v, want a failed run\n%s", tc.maxErrors, err, out.String())
		}
		if !tc.fail && err != nil {
			t.Errorf("-max-errors %s: got %v, want the failures tolerated", tc.maxErrors, err)
		}
	}
}

func TestUnreachableAndBadFlags(t *testing.T) {
	t.Parallel()
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = run(t.Context(), []string{"-url", "http://127.0.0.1:" + strconv.Itoa(port), "-duration", "1s"}, &out)
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("unreachable API: got %v", err)
	}
	tests := []struct {
		name string
		args []string
	}{
		{"bad mode", []string{"-mode", "chaos"}},
		{"zipf too small", []string{"-zipf", "1"}},
		{"share over 1", []string{"-read", "1.5"}},
		{"ttl order", []string{"-ttl-min", "10s", "-ttl-max", "5s"}},
		{"extra argument", []string{"now"}},
		{"max errors over 1", []string{"-max-errors", "2"}},
	}
	for _, tc := range tests {
		if _, err := parseFlags(tc.args, &out); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}
