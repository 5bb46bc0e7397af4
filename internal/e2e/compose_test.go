//go:build compose

package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/servicetest"
	"github.com/goccy/go-yaml"
)

// composeProject names the test's containers, networks and volumes, so that
// they are told apart from anything else the engine runs.
const composeProject = "dubeboxcomposetest"

// The addresses the stack publishes, as the README gives them; the test
// sends traffic to these and to nothing else.
const (
	apiURL    = "http://127.0.0.1:5000"
	promURL   = "http://127.0.0.1:9090"
	jaegerURL = "http://127.0.0.1:16686"
)

// TestCompose runs the README's first command for real: the Dockerfile and
// docker-compose.yml, unmodified, on a Docker engine (a private dockerd when
// none answers), with stand-in images where no registry can be reached (see
// standins_test.go). Every service but Grafana runs, the load profile too;
// Grafana's dashboards are validated and their queries run against the
// stack's Prometheus instead.
func TestCompose(t *testing.T) {
	top := servicetest.Root()
	for _, port := range []string{"5000", "9090", "16686", "4317", "4318"} {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 300*time.Millisecond); err == nil {
			_ = c.Close()
			t.Fatalf("127.0.0.1:%s is taken; the stack publishes it: stop what listens there first", port)
		}
	}
	e := startEngine(t)
	// The files have no default secrets: the test makes its own, as make
	// up writes them to .env, and every request of the test to the API
	// carries the token, as the README's curls say to.
	token, password := randomHex(t, 32), randomHex(t, 24)
	e.env = append(e.env, "API_TOKEN="+token, "REDIS_PASSWORD="+password)
	authorizeAPI(t, token)
	imgs := readImages(t, top)
	if e.private || os.Getenv("COMPOSE_STANDINS") == "1" {
		buildStandins(t, e, top, imgs)
	} else {
		pullImages(t, e, imgs)
	}

	t.Run("stack", func(t *testing.T) { composeStack(t, e, top) })
	t.Run("cluster", func(t *testing.T) { composeCluster(t, e, top) })
}

// project is one Compose file brought up under its own project name.
type project struct {
	e     *engine
	name  string
	args  []string // -p, -f and profiles
	ended bool
}

func newProject(t *testing.T, e *engine, name, file string, profiles ...string) *project {
	t.Helper()
	p := &project{e: e, name: name, args: []string{"-p", name, "-f", file}}
	for _, pr := range profiles {
		p.args = append(p.args, "--profile", pr)
	}
	t.Cleanup(func() {
		if p.ended {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if t.Failed() {
			out, _ := p.compose(ctx, "logs", "--no-color", "--tail", "40")
			t.Logf("--- the stack's last log lines:\n%s", tail(out, 6000))
		}
		if _, err := p.compose(ctx, "down", "-v", "--remove-orphans"); err != nil {
			t.Errorf("docker-compose down: %v", err)
		}
	})
	return p
}

func (p *project) compose(ctx context.Context, args ...string) (string, error) {
	return p.e.run(ctx, "docker-compose", append(append([]string{}, p.args...), args...)...)
}

// down removes the project and says what it left behind.
func (p *project) down(t *testing.T) string {
	t.Helper()
	if _, err := p.compose(t.Context(), "down", "-v", "--remove-orphans"); err != nil {
		t.Fatal(err)
	}
	p.ended = true
	left := leftovers(t, p.e, p.name)
	if left != "" {
		t.Errorf("docker-compose down -v left %s", left)
	}
	return left
}

// composeStack brings up docker-compose.yml with the load profile and
// checks it.
//
//nolint:thelper // a test body, run as a subtest of TestCompose.
func composeStack(t *testing.T, e *engine, top string) {
	composeFile := filepath.Join(top, "docker-compose.yml")
	p := newProject(t, e, composeProject, composeFile, "load")
	compose := p.compose
	services := runnableServices(t, composeFile)
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	if _, err := compose(ctx, append([]string{"up", "-d", "--build"}, services...)...); err != nil {
		t.Fatal(err)
	}
	healthy := waitHealthy(t, e, composeProject, services)
	t.Logf("compose: %d services up in %v", len(services), time.Since(start).Round(time.Second))

	sum := composeSummary{services: len(services), healthy: healthy}
	checkReadmeCurls(t, e, top, apiURL, false)

	trafficStart := time.Now()
	stats := drive(t, apiURL, 30*time.Second)
	t.Logf("traffic: %d requests by status %v", stats.total, stats.byStatus)
	time.Sleep(11 * time.Second) // two more scrapes

	sum.targetsUp, sum.targets = checkTargets(t, promURL)
	checkRules(t, promURL)
	sum.dashboards = validateDashboards(t, filepath.Join(top, "grafana", "dashboards"))
	checkPanels(t, promURL, filepath.Join(top, "grafana", "dashboards"), map[string]string{
		"Replicas and replication lag/B": "the Compose stack's Redis has no replica, so no primary reports a replica's lag",
	})
	// The API flushes its log at least every second, and the load
	// generator keeps running: exemplars are checked up to a moment whose
	// log lines are surely written.
	until := time.Now()
	time.Sleep(2 * time.Second)
	apiLog := filepath.Join(t.TempDir(), "api.log")
	logs, err := compose(ctx, "logs", "--no-color", "api")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, apiLog, stripComposePrefixes(logs))
	sum.exemplars = checkExemplars(t, promURL, apiLog, trafficStart, until)
	sum.traces, sum.tracesChecked = checkTraces(t)
	sum.requests = promScalar(t, promURL, "sum(dubebox_http_requests_total)")

	checkRedisPrivate(t, e)
	checkAPIHardened(t, e)
	checkRedisHardened(t, e)
	checkPrometheusLifecycleOff(t)
	sum.redisRestart = checkRedisRestart(t, ctx, compose)
	sum.imageMiB = imageMiB(t, e, "dubebox:local")

	sum.leftovers = p.down(t)
	t.Log(sum.String())
}

type composeSummary struct {
	services, healthy       int
	requests                float64
	targetsUp, targets      int
	exemplars               int
	traces, tracesChecked   int
	dashboards              int
	redisRestart, leftovers string
	imageMiB                float64
}

func (s composeSummary) String() string {
	left := "down -v left nothing"
	if s.leftovers != "" {
		left = "down -v left " + s.leftovers
	}
	return fmt.Sprintf("compose: %d services up (%d with health checks, all healthy), %.0f requests, %d/%d targets up, %d exemplars, "+
		"traces received (%d of %d started by the test found in jaeger), %d dashboard valid, redis unreachable from host, "+
		"api non-root read-only no capabilities, redis as its own user read-only no capabilities, Prometheus's lifecycle API off, %s, %s, image %.1f MiB",
		s.services, s.healthy, s.requests, s.targetsUp, s.targets, s.exemplars, s.traces, s.tracesChecked, s.dashboards,
		s.redisRestart, left, s.imageMiB)
}

// pullImages makes sure a user's own engine has the real images, pulling
// them when it must: stand-ins are built only on the test's private engine
// (or with COMPOSE_STANDINS=1), since they would replace the user's tags.
func pullImages(t *testing.T, e *engine, imgs images) {
	t.Helper()
	all := []string{imgs.golang, imgs.runtime}
	for _, img := range imgs.services {
		if !strings.HasPrefix(img, "grafana/") {
			all = append(all, img)
		}
	}
	for _, img := range all {
		if imageExists(t, e, img) {
			continue
		}
		if _, err := e.docker(t.Context(), "pull", img); err != nil {
			t.Fatalf("cannot get %s from its registry (%v); set COMPOSE_STANDINS=1 to build stand-ins under the same names instead (they replace those local tags)", img, err)
		}
	}
}

// runnableServices lists the services to bring up: all of them, the load
// profile's too, but Grafana, which cannot run here.
func runnableServices(t *testing.T, composeFile string) []string {
	t.Helper()
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var cf struct {
		Services map[string]struct {
			Image string `yaml:"image"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatal(err)
	}
	var names []string
	for name, s := range cf.Services {
		if !strings.HasPrefix(s.Image, "grafana/") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// waitHealthy waits until every service's container runs and those with a
// health check report healthy, and returns how many have one.
func waitHealthy(t *testing.T, e *engine, projectName string, services []string) int {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		states := map[string]string{}
		withHealth, ready := 0, 0
		for _, svc := range services {
			out, err := e.docker(t.Context(), "ps", "-a", "--filter", "label=com.docker.compose.project="+projectName,
				"--filter", "label=com.docker.compose.service="+svc, "--format", "{{.ID}}")
			id := strings.TrimSpace(out)
			if err != nil || id == "" {
				states[svc] = "no container"
				continue
			}
			st, _ := e.docker(t.Context(), "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", id)
			f := strings.Fields(st)
			states[svc] = strings.TrimSpace(st)
			if len(f) == 3 {
				withHealth++
			}
			// A one-shot service (the cluster's init) is done when it has
			// exited 0.
			oneShotDone := len(f) >= 2 && f[0] == "exited" && f[1] == "0" && strings.HasSuffix(svc, "-init")
			if oneShotDone || len(f) >= 2 && f[0] == "running" && (len(f) == 2 || f[2] == "healthy") {
				ready++
			}
		}
		if ready == len(services) {
			return withHealth
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every service is running and healthy after 3 minutes: %v", states)
		}
		time.Sleep(time.Second)
	}
}

// readmeCurl is one curl line of the README with the answer it shows.
type readmeCurl struct {
	line, method, url, body string
	headers                 []string // "Name: value", from -H
	want                    string   // a JSON object, or ""
	stream                  bool     // -N: a stream, whose first event is enough
	upload                  string   // --data-binary @file: the file sent
	saved                   bool     // -o file: the answer is bytes, saved
}

var curlJSON = regexp.MustCompile(`#\s*(\{.*\})\s*$`)

// readmeCurls reads every curl example of README.md's sh blocks in order,
// each with the JSON answer written after it (on its line or the next);
// env gives the variables the examples name ($API_TOKEN).
func readmeCurls(t *testing.T, top string, env func(string) string) []readmeCurl {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(top, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeCurl
	inSh := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			inSh = true
			continue
		case strings.HasPrefix(line, "```"):
			inSh = false
			continue
		}
		if !inSh {
			continue
		}
		if m := curlJSON.FindStringSubmatch(line); m != nil && strings.HasPrefix(line, "#") && len(out) > 0 && out[len(out)-1].want == "" {
			out[len(out)-1].want = m[1]
			continue
		}
		if !strings.HasPrefix(line, "curl ") {
			continue
		}
		c := readmeCurl{line: line, method: http.MethodGet}
		cmd, _, _ := strings.Cut(line, "|")
		if m := curlJSON.FindStringSubmatch(cmd); m != nil {
			c.want = m[1]
		}
		cmd, _, _ = strings.Cut(cmd, " #")
		args := shellWords(cmd, env)
		for i := 1; i < len(args); i++ {
			switch args[i] {
			case "-X":
				i++
				c.method = args[i]
			case "-d":
				i++
				c.body = args[i]
			case "--data-binary":
				i++
				c.upload = strings.TrimPrefix(args[i], "@")
			case "-o":
				i++
				c.saved = true
			case "-H":
				i++
				c.headers = append(c.headers, args[i])
			case "-N":
				c.stream = true
			case "-s", "-i":
			default:
				c.url = args[i]
			}
		}
		out = append(out, c)
	}
	if len(out) < 20 {
		t.Fatalf("found only %d curl examples in the README", len(out))
	}
	return out
}

// shellWords splits a command line as sh would for the README's simple
// cases: words, words in single quotes, and words in double quotes, where
// (as outside quotes) $NAME is replaced by env(NAME).
func shellWords(s string, env func(string) string) []string {
	var words []string
	var cur strings.Builder
	var quote byte // the quote we are inside, or 0
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == 0 && (c == '\'' || c == '"'), quote != 0 && c == quote:
			quote ^= c
			in = true
		case c == ' ' && quote == 0:
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '$' && quote != '\'':
			n := i + 1
			for n < len(s) && (s[n] == '_' || 'A' <= s[n] && s[n] <= 'Z' || 'a' <= s[n] && s[n] <= 'z' || '0' <= s[n] && s[n] <= '9') {
				n++
			}
			cur.WriteString(env(s[i+1 : n]))
			i = n - 1
			in = true
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// checkReadmeCurls runs the README's curl examples top to bottom against
// the stack, with the variables of the engine's environment ($API_TOKEN),
// and compares each answer with the one the README shows (a TTL may have
// counted down by a few seconds; "..." stands for any version). The
// quickstart's /metrics is for make run: in the stack /metrics is on the
// API's METRICS_ADDR inside Compose's network, which the Prometheus checks
// read. On a Cluster (cluster), a key watch answers 501 not_supported, as
// the README says it does there.
func checkReadmeCurls(t *testing.T, e *engine, top, base string, cluster bool) {
	t.Helper()
	env := func(name string) string {
		for _, kv := range e.env {
			if v, ok := strings.CutPrefix(kv, name+"="); ok {
				return v
			}
		}
		t.Fatalf("the README's curls name $%s, which the test does not set", name)
		return ""
	}
	client := &http.Client{Timeout: 5 * time.Second}
	// What the README's uploads sent, by URL: a download (-o) of the same
	// URL must give the same bytes back.
	uploaded := map[string][]byte{}
	for _, c := range readmeCurls(t, top, env) {
		if strings.HasSuffix(c.url, ":5000/metrics") {
			continue
		}
		u := strings.Replace(c.url, "localhost:5000", strings.TrimPrefix(base, "http://"), 1)
		if !strings.HasPrefix(u, "http") {
			u = "http://" + u
		}
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		if c.upload != "" {
			b := readmeFile(t, c.upload)
			uploaded[u] = b
			body = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(t.Context(), c.method, u, body)
		if err != nil {
			t.Fatalf("%s: %v", c.line, err)
		}
		for _, h := range c.headers {
			name, value, _ := strings.Cut(h, ":")
			req.Header.Set(name, strings.TrimSpace(value))
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("%s: %v", c.line, err)
			continue
		}
		if c.stream {
			// The stream's opening is its answer: it goes on until its
			// client leaves.
			first, _ := bufio.NewReader(resp.Body).ReadString('\n')
			_ = resp.Body.Close()
			if cluster && !strings.Contains(c.url, "/v1/channels/") {
				if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(first, `"not_supported"`) {
					t.Errorf("%s on a Cluster: %d %q, want 501 not_supported", c.line, resp.StatusCode, first)
				}
				continue
			}
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" || !strings.HasPrefix(first, "retry: ") {
				t.Errorf("%s: %d %s %q", c.line, resp.StatusCode, resp.Header.Get("Content-Type"), first)
			}
			continue
		}
		got, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Errorf("%s: %d %s", c.line, resp.StatusCode, got)
			continue
		}
		if c.saved {
			if want, ok := uploaded[u]; !ok || !bytes.Equal(got, want) {
				t.Errorf("%s: %d bytes, not the %d the README's upload sent", c.line, len(got), len(want))
			}
			continue
		}
		if c.want != "" && !sameAnswer(got, []byte(c.want)) {
			t.Errorf("%s:\n got %s\nwant %s", c.line, got, c.want)
		}
	}
}

// readmeFile makes the file a README upload names: a picture for a .png,
// gzip for a .gz.
func readmeFile(t *testing.T, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch filepath.Ext(name) {
	case ".png":
		img := image.NewGray(image.Rect(0, 0, 4, 4))
		for i := range img.Pix {
			img.Pix[i] = uint8(i * 16)
		}
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
	case ".gz":
		z := gzip.NewWriter(&buf)
		_, _ = z.Write([]byte("a blob, compressed"))
		_ = z.Close()
	default:
		t.Fatalf("the README uploads %s, which the test cannot make", name)
	}
	return buf.Bytes()
}

func sameAnswer(got, want []byte) bool {
	var g, w map[string]any
	if json.Unmarshal(got, &g) != nil || json.Unmarshal(want, &w) != nil || len(g) != len(w) {
		return false
	}
	for k, wv := range w {
		gv, ok := g[k]
		switch {
		case !ok:
			return false
		case k == "version" && wv == "...":
		case k == "ttl_seconds":
			gn, _ := gv.(float64)
			wn, _ := wv.(float64)
			if gn > wn || gn < wn-5 {
				return false
			}
		default:
			gb, _ := json.Marshal(gv)
			wb, _ := json.Marshal(wv)
			if string(gb) != string(wb) {
				return false
			}
		}
	}
	return true
}

// stripComposePrefixes turns docker-compose logs output ("api_1  | {...}")
// back into the container's own lines.
func stripComposePrefixes(logs string) string {
	var b strings.Builder
	for _, l := range strings.Split(logs, "\n") {
		if _, rest, ok := strings.Cut(l, "| "); ok {
			b.WriteString(rest + "\n")
		}
	}
	return b.String()
}

func promScalar(t *testing.T, prom, expr string) float64 {
	t.Helper()
	var data struct {
		Result []struct {
			Value []any `json:"value"`
		} `json:"result"`
	}
	_ = json.Unmarshal(promGet(t, prom+"/api/v1/query?query="+url.QueryEscape(expr)).Data, &data)
	if len(data.Result) == 0 || len(data.Result[0].Value) != 2 {
		t.Errorf("%s: no value", expr)
		return 0
	}
	s, _ := data.Result[0].Value[1].(string)
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

// checkTraces sends requests that carry trace ids of the test's own (W3C
// traceparent, sampled), waits for the batch exporter, and asks the jaeger
// service for each: the API's spans must have crossed the Compose network
// over OTLP. It is done at a quiet moment, because under the flood of drive
// the SDK's queue (2048 spans) drops spans, as it is meant to.
func checkTraces(t *testing.T) (found, sent int) {
	t.Helper()
	client := &http.Client{Timeout: 3 * time.Second}
	var ids []string
	for i := range 20 {
		id := fmt.Sprintf("%016x%016x", time.Now().UnixNano(), i+1)
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fmt.Sprintf("%s/v1/kv/traced%d", apiURL, i), nil)
		req.Header.Set("traceparent", "00-"+id+"-00f067aa0ba902b7-01")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		ids = append(ids, id)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		found = 0
		for _, id := range ids {
			resp, err := client.Get(jaegerURL + "/api/traces/" + id) //nolint:noctx // a test's query.
			if err != nil {
				t.Fatalf("jaeger query: %v", err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				found++
			}
		}
		if found == len(ids) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if found != len(ids) {
		t.Errorf("jaeger has %d of the %d traces the test started", found, len(ids))
	}
	return found, len(ids)
}

func containerOf(t *testing.T, e *engine, service string) string {
	t.Helper()
	out, err := e.docker(t.Context(), "ps", "-q", "--filter", "label=com.docker.compose.project="+composeProject,
		"--filter", "label=com.docker.compose.service="+service)
	if err != nil || strings.TrimSpace(out) == "" {
		t.Fatalf("no running container for %s: %v", service, err)
	}
	return strings.Fields(out)[0]
}

// checkRedisPrivate checks that the stack's Redis publishes no port on the
// host: only the containers on the Compose network reach it.
func checkRedisPrivate(t *testing.T, e *engine) {
	t.Helper()
	id := containerOf(t, e, "redis")
	out, err := e.docker(t.Context(), "inspect", "--format", "{{json .NetworkSettings.Ports}}", id)
	if err != nil {
		t.Fatal(err)
	}
	var ports map[string][]struct{ HostIP, HostPort string }
	if err := json.Unmarshal([]byte(out), &ports); err != nil {
		t.Fatalf("redis ports %q: %v", out, err)
	}
	for p, bindings := range ports {
		if len(bindings) > 0 {
			t.Errorf("the stack's Redis publishes %s on the host: %v", p, bindings)
		}
	}
}

// checkAPIHardened checks what the README promises of the api container.
func checkAPIHardened(t *testing.T, e *engine) {
	t.Helper()
	id := containerOf(t, e, "api")
	out, err := e.docker(t.Context(), "inspect", "--format",
		`{{.Config.User}}|{{.HostConfig.ReadonlyRootfs}}|{{json .HostConfig.CapDrop}}|{{json .HostConfig.SecurityOpt}}|{{.State.Health.Status}}|{{.State.Pid}}`, id)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(strings.TrimSpace(out), "|")
	if len(f) != 6 {
		t.Fatalf("docker inspect api: %q", out)
	}
	if f[1] != "true" || !strings.Contains(f[2], "ALL") || !strings.Contains(f[3], "no-new-privileges") || f[4] != "healthy" {
		t.Errorf("api container: read-only %s, cap_drop %s, security_opt %s, health %s", f[1], f[2], f[3], f[4])
	}
	// The process's real user, from the kernel: the engine runs here.
	if status, err := os.ReadFile("/proc/" + f[5] + "/status"); err == nil {
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "Uid:") && (len(strings.Fields(l)) < 2 || strings.Fields(l)[1] == "0") {
				t.Errorf("the api process runs as root: %s", l)
			}
		}
	} else if f[0] == "" || f[0] == "root" || f[0] == "0" {
		t.Errorf("the api container's user is %q", f[0])
	}
}

// checkRedisHardened checks the Compose stack's Redis: not root, a
// read-only root, no capabilities, no new privileges.
func checkRedisHardened(t *testing.T, e *engine) {
	t.Helper()
	id := containerOf(t, e, "redis")
	out, err := e.docker(t.Context(), "inspect", "--format",
		`{{.Config.User}}|{{.HostConfig.ReadonlyRootfs}}|{{json .HostConfig.CapDrop}}|{{json .HostConfig.SecurityOpt}}|{{.State.Pid}}`, id)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(strings.TrimSpace(out), "|")
	if len(f) != 5 {
		t.Fatalf("docker inspect redis: %q", out)
	}
	if f[0] != "redis" || f[1] != "true" || !strings.Contains(f[2], "ALL") || !strings.Contains(f[3], "no-new-privileges") {
		t.Errorf("redis container: user %q, read-only %s, cap_drop %s, security_opt %s", f[0], f[1], f[2], f[3])
	}
	if status, err := os.ReadFile("/proc/" + f[4] + "/status"); err == nil {
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "Uid:") && (len(strings.Fields(l)) < 2 || strings.Fields(l)[1] == "0") {
				t.Errorf("the redis process runs as root: %s", l)
			}
		}
	}
}

// checkPrometheusLifecycleOff checks that Prometheus's lifecycle API (an
// unauthenticated /-/quit and /-/reload) is off.
func checkPrometheusLifecycleOff(t *testing.T) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, promURL+"/-/quit", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /-/quit on Prometheus: %d, want 403 (the lifecycle API off)", resp.StatusCode)
	}
}

// authorizeAPI makes every request of the test process to the stack's API
// carry the bearer token.
func authorizeAPI(t *testing.T, token string) {
	t.Helper()
	base := http.DefaultTransport
	http.DefaultTransport = roundTripper(func(r *http.Request) (*http.Response, error) {
		if "http://"+r.URL.Host == apiURL && r.Header.Get("Authorization") == "" {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+token)
		}
		return base.RoundTrip(r)
	})
	t.Cleanup(func() { http.DefaultTransport = base })
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// checkRedisRestart restarts the redis service under requests: the API
// answers 503 while it is gone and 200 again by itself, and a key written
// before the restart is still there (the append-only file on its volume).
func checkRedisRestart(t *testing.T, ctx context.Context, compose func(context.Context, ...string) (string, error)) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	do := func(method, path, body string) (int, string) {
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(ctx, method, apiURL+path, r)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, body := do(http.MethodPut, "/v1/kv/durable", `{"value":"kept"}`); code != 200 {
		t.Fatalf("PUT before the restart: %d %s", code, body)
	}
	done := make(chan error, 1)
	go func() {
		_, err := compose(ctx, "restart", "redis")
		done <- err
	}()
	seen := map[int]int{}
	var recovered time.Duration
	start := time.Now()
	restarted := false
	for time.Since(start) < 60*time.Second {
		code, _ := do(http.MethodGet, "/v1/kv/durable", "")
		seen[code]++
		if !restarted {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				restarted = true
			default:
			}
		}
		if restarted && code == 200 && seen[503] > 0 {
			recovered = time.Since(start)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, body := do(http.MethodGet, "/v1/kv/durable", "")
	if seen[503] == 0 || code != 200 || !strings.Contains(body, `"kept"`) || recovered == 0 {
		t.Errorf("redis restart: statuses %v, then %d %s; want 503 while it was gone and the key back", seen, code, body)
	}
	for c := range seen {
		if c != 200 && c != 503 && c != 504 {
			t.Errorf("redis restart: the API answered %d (%d times)", c, seen[c])
		}
	}
	return fmt.Sprintf("redis restart: %v, back to 200 after %v with the key kept", seen, recovered.Round(100*time.Millisecond))
}

func imageMiB(t *testing.T, e *engine, image string) float64 {
	t.Helper()
	out, err := e.docker(t.Context(), "image", "inspect", "--format", "{{.Size}}", image)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.ParseFloat(strings.TrimSpace(out), 64)
	mib := n / (1 << 20)
	// A guard against what would make it much larger (a base with a
	// distribution, debug information, the load generator): the binary
	// alone is about 29 MiB (docs/operations.md says why).
	if mib > 35 {
		t.Errorf("image %s is %.1f MiB, want under 35", image, mib)
	}
	return mib
}

// leftovers lists the project's containers, networks and volumes still
// there.
func leftovers(t *testing.T, e *engine, projectName string) string {
	t.Helper()
	var left []string
	for _, kind := range []string{"container", "network", "volume"} {
		args := []string{kind, "ls", "-q", "--filter", "label=com.docker.compose.project=" + projectName}
		if kind == "container" {
			args = append(args, "-a")
		}
		out, err := e.docker(t.Context(), args...)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(strings.Fields(out)); n > 0 {
			left = append(left, fmt.Sprintf("%d %s(s)", n, kind))
		}
	}
	return strings.Join(left, ", ")
}
