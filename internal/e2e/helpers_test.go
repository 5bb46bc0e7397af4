//go:build e2e || compose

package e2e

// What the local-process proof (make e2e) and the Compose proof (make
// compose-test) share: traffic, and the checks of Prometheus, the
// dashboards' queries and the exemplars.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/servicetest"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

const aptHint = "install Debian's packages with apt-get install -y prometheus prometheus-redis-exporter docker-compose (as .ci/run does)"

func waitHTTP(t *testing.T, url string, within time.Duration) {
	t.Helper()
	if err := servicetest.WaitHTTP(url, within); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

type trafficStats struct {
	mu       sync.Mutex
	total    int
	byStatus map[int]int
}

// drive sends mixed traffic for d: string writes with and without short
// TTLs (so keys expire), hits and misses, hashes, increments, and a share
// of bad requests (400, 404, 405, 409).
func drive(t *testing.T, base string, d time.Duration) *trafficStats {
	t.Helper()
	st := &trafficStats{byStatus: map[int]int{}}
	client := &http.Client{Timeout: 5 * time.Second}
	do := func(method, path, body string) {
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(context.Background(), method, base+path, r)
		if err != nil {
			t.Error(err)
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", method, path, err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		st.mu.Lock()
		st.total++
		st.byStatus[resp.StatusCode]++
		st.mu.Unlock()
	}
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				k := fmt.Sprintf("k%d", (i*7+w)%50)
				h := fmt.Sprintf("h%d", (i/20+w)%10)
				switch i % 20 {
				case 0, 1:
					do("PUT", "/v1/kv/"+k, fmt.Sprintf(`{"value":"v%d","ttl_seconds":%d}`, i, 1+i%3))
				case 2:
					do("PUT", "/v1/kv/"+k, `{"value":"forever"}`)
				case 3, 4, 5, 6, 7:
					do("GET", "/v1/kv/"+k, "")
				case 8:
					do("GET", fmt.Sprintf("/v1/kv/missing%d", i), "")
				case 9:
					do("PUT", "/v1/hash/"+h, `{"fields":{"a":"1","n":"0"},"ttl_seconds":30}`)
				case 10:
					do("GET", "/v1/hash/"+h, "")
				case 11:
					do("GET", "/v1/hash/"+h+"/a", "")
				case 12:
					do("POST", "/v1/hash/"+h+"/n/incr", `{"by":2}`)
				case 13:
					do("GET", "/v1/kv/"+k+"/ttl", "")
				case 14:
					do("GET", "/set/seed"+k+"/value", "")
				case 15:
					do("GET", "/get/seed"+k, "")
				case 16:
					do("PUT", "/v1/kv/"+k, `{"value":`) // 400
				case 17:
					do("GET", "/v1/kv/"+h, "") // 409 wrong_type, or 404 after expiry
				case 18:
					do("PATCH", "/v1/kv/"+k, "") // 405
				case 19:
					do("GET", "/no/such/route", "") // 404
				}
			}
		}()
	}
	wg.Wait()
	for _, code := range []int{200, 400, 404, 405, 409} {
		if st.byStatus[code] == 0 {
			t.Errorf("the traffic produced no %d", code)
		}
	}
	for code, n := range st.byStatus {
		if code >= 500 {
			t.Errorf("the traffic got %d answers %d; the API log's \"request failed\" lines say why", n, code)
		}
	}
	return st
}

type promResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

func promGet(t *testing.T, u string) promResponse {
	t.Helper()
	resp, err := http.Get(u) //nolint:noctx // a test's query.
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	var pr promResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return pr
}

// checkTargets checks that every scrape target is up, for each job, and
// returns how many are up of how many.
func checkTargets(t *testing.T, promURL string) (up, all int) {
	t.Helper()
	var data struct {
		ActiveTargets []struct {
			Labels    map[string]string `json:"labels"`
			Health    string            `json:"health"`
			LastError string            `json:"lastError"`
		} `json:"activeTargets"`
	}
	pr := promGet(t, promURL+"/api/v1/targets")
	if err := json.Unmarshal(pr.Data, &data); err != nil {
		t.Fatal(err)
	}
	jobs := map[string]bool{}
	for _, tg := range data.ActiveTargets {
		jobs[tg.Labels["job"]] = true
		if tg.Health == "up" {
			up++
		} else {
			t.Errorf("target %s is %s: %s", tg.Labels["job"], tg.Health, tg.LastError)
		}
	}
	for _, j := range []string{"dubebox", "redis", "prometheus"} {
		if !jobs[j] {
			t.Errorf("no scrape target for job %s", j)
		}
	}
	return up, len(data.ActiveTargets)
}

func checkRules(t *testing.T, promURL string) {
	t.Helper()
	var data struct {
		Groups []struct {
			Rules []struct {
				Name   string `json:"name"`
				Health string `json:"health"`
				Error  string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	pr := promGet(t, promURL+"/api/v1/rules")
	if err := json.Unmarshal(pr.Data, &data); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health == "err" {
				t.Errorf("rule %s fails: %s", r.Name, r.Error)
			}
		}
	}
	if n < 8 {
		t.Errorf("Prometheus loaded %d alert rules, want the 8 of alerts.yml", n)
	}
	t.Logf("alert rules loaded and evaluating: %d", n)
}

// variables replaces the Grafana variables of a query with real values.
var variables = strings.NewReplacer(
	"$__rate_interval", "30s",
	"${__rate_interval}", "30s",
	"$__interval", "10s",
	"${route}", ".*", "$route", ".*",
	"${command}", ".*", "$command", ".*",
)

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr         string `json:"expr"`
		RefID        string `json:"refId"`
		Exemplar     bool   `json:"exemplar"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
}

// checkPanels runs every query of every panel and variable; each must
// return at least one series, but those legitimatelyEmpty names (panel
// title/refId), with the reason.
func checkPanels(t *testing.T, promURL, dashDir string, legitimatelyEmpty map[string]string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dashDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards under %s (%v)", dashDir, err)
	}
	panels, queries, withData := 0, 0, 0
	for _, f := range files {
		var dash struct {
			Panels     []panel `json:"panels"`
			Templating struct {
				List []struct {
					Name       string `json:"name"`
					Definition string `json:"definition"`
				} `json:"list"`
			} `json:"templating"`
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		// The variables' own queries must find values too.
		for _, v := range dash.Templating.List {
			metric, label, ok := parseLabelValues(v.Definition)
			if !ok {
				t.Errorf("%s: variable %s: cannot read %q", filepath.Base(f), v.Name, v.Definition)
				continue
			}
			pr := promGet(t, promURL+"/api/v1/label/"+label+"/values?match[]="+url.QueryEscape(metric))
			var vals []string
			_ = json.Unmarshal(pr.Data, &vals)
			if pr.Status != "success" || len(vals) == 0 {
				t.Errorf("variable %s: label_values(%s, %s) found nothing", v.Name, metric, label)
			}
		}
		var all []panel
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				if p.Type == "row" {
					walk(p.Panels)
					continue
				}
				all = append(all, p)
			}
		}
		walk(dash.Panels)
		for _, p := range all {
			panels++
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				queries++
				expr := variables.Replace(tg.Expr)
				if strings.Contains(expr, "$") {
					t.Errorf("panel %q query %s: unknown variable in %s", p.Title, tg.RefID, tg.Expr)
					continue
				}
				pr := promGet(t, promURL+"/api/v1/query?query="+url.QueryEscape(expr))
				if pr.Status != "success" {
					t.Errorf("panel %q query %s rejected: %s %s\n  %s", p.Title, tg.RefID, pr.ErrorType, pr.Error, expr)
					continue
				}
				var res struct {
					Result []json.RawMessage `json:"result"`
				}
				_ = json.Unmarshal(pr.Data, &res)
				if len(res.Result) > 0 {
					withData++
					continue
				}
				if why, ok := legitimatelyEmpty[p.Title+"/"+tg.RefID]; ok {
					t.Logf("panel %q query %s is empty, as allowed: %s", p.Title, tg.RefID, why)
					continue
				}
				t.Errorf("panel %q query %s returned no series:\n  %s", p.Title, tg.RefID, expr)
			}
		}
	}
	t.Logf("dashboards checked: %d panels, %d queries, %d with data", panels, queries, withData)
	t.Logf("e2e: %d panels, %d queries, %d with data", panels, queries, withData)
}

func parseLabelValues(def string) (metric, label string, ok bool) {
	inner, found := strings.CutPrefix(strings.TrimSpace(def), "label_values(")
	if !found {
		return "", "", false
	}
	inner = strings.TrimSuffix(inner, ")")
	metric, label, ok = strings.Cut(inner, ",")
	return strings.TrimSpace(metric), strings.TrimSpace(label), ok
}

// checkExemplars finds the latency histogram's exemplars in Prometheus and
// checks that their trace ids are trace ids of requests in the API's log.
func checkExemplars(t *testing.T, promURL, apiLog string, since, until time.Time) int {
	t.Helper()
	logged := map[string]bool{}
	f, err := os.Open(apiLog)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg     string `json:"msg"`
			TraceID string `json:"trace_id"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "request" && line.TraceID != "" {
			logged[line.TraceID] = true
		}
	}
	q := url.Values{}
	q.Set("query", "dubebox_http_request_duration_seconds_bucket")
	q.Set("start", strconv.FormatInt(since.Add(-time.Minute).Unix(), 10))
	q.Set("end", strconv.FormatInt(until.Unix(), 10))
	pr := promGet(t, promURL+"/api/v1/query_exemplars?"+q.Encode())
	if pr.Status != "success" {
		t.Fatalf("query_exemplars: %s %s", pr.ErrorType, pr.Error)
	}
	var data []struct {
		Exemplars []struct {
			Labels map[string]string `json:"labels"`
		} `json:"exemplars"`
	}
	if err := json.Unmarshal(pr.Data, &data); err != nil {
		t.Fatal(err)
	}
	total, matched := 0, 0
	for _, s := range data {
		for _, ex := range s.Exemplars {
			total++
			if logged[ex.Labels["trace_id"]] {
				matched++
			} else {
				t.Errorf("exemplar trace_id %q is not in the API's access log", ex.Labels["trace_id"])
			}
		}
	}
	if total == 0 {
		t.Errorf("Prometheus holds no exemplars for dubebox_http_request_duration_seconds")
	}
	t.Logf("exemplars: %d in Prometheus, %d matching trace ids of %d logged requests", total, matched, len(logged))
	t.Logf("e2e: %d exemplars, %d with a logged trace id", total, matched)
	return total
}

// validateDashboards decodes every dashboard strictly into the Grafana
// Foundation SDK's dashboard type (an unknown or mistyped field fails, in
// panels' options too) and runs its validation. Grafana itself cannot run
// where the tests do.
func validateDashboards(t *testing.T, dir string) int {
	t.Helper()
	plugins.RegisterDefaultPlugins()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards under %s (%v)", dir, err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The dashboard is Grafana's classic JSON model, which Grafana 11
		// provisions; dashboardv2 is the schema of Grafana 12's new
		// dashboards.
		var d dashboard.Dashboard //nolint:staticcheck // see above.
		if err := sdkError(d.UnmarshalJSONStrict(raw)); err != nil {
			t.Errorf("%s does not decode strictly as a Grafana dashboard: %v", filepath.Base(f), err)
			continue
		}
		if err := sdkError(d.Validate()); err != nil {
			t.Errorf("%s fails the SDK's validation: %v", filepath.Base(f), err)
		}
	}
	return len(files)
}

// sdkError is err, or nil when it is the SDK's empty list of errors: its
// functions return their typed list, which is a non-nil error even when it
// holds nothing.
func sdkError(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}
