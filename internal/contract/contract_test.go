//go:build contract

package contract_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dubebox/dubebox/internal/contract"
	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/servicetest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// token is the replay's API_TOKEN: a request recorded without an
// Authorization header is sent with it, so that the service judges what
// the test sent; one recorded with another token (or a malformed header)
// is sent as it was, and both Prism and the service must refuse it.
const token = "right-token-0123456789"

// prismErrors is the prefix of the problem types Prism answers itself.
const prismErrors = "https://stoplight.io/prism/errors#"

// TestPrismFindsNoViolation replays the route tests' requests (the corpus)
// through Prism's validating proxy in front of the built service, with
// --errors: any response Prism finds the document does not allow (a status
// it does not declare, a body off its schema, a declared required header
// missing) is a violation, and so is a request Prism refuses as the
// document does while the service accepts it. What Prism cannot carry (a
// malformed percent-encoding, which crashes it; dot segments and double
// slashes, which it rewrites; a body that is not JSON, on which it hangs;
// a path that decodes to invalid UTF-8, which it drops;
// HEAD and OPTIONS, which the document describes in prose) goes to the service directly, whose answer must then
// be a JSON error or a success.
func TestPrismFindsNoViolation(t *testing.T) {
	reqs := loadCorpus(t)
	prism := findPrism(t)
	rdb := redistest.Start(t)
	dir := t.TempDir()
	if err := servicetest.Build(dir, "./cmd/dubebox"); err != nil {
		t.Fatal(err)
	}
	// The limits the route tests run with, so that their bounds are met.
	_, base := servicetest.StartDubebox(t, filepath.Join(dir, "dubebox"), rdb.Addr,
		"API_TOKEN="+token, "MAX_KEY_BYTES=32", "MAX_VALUE_BYTES=1024", "MAX_PAGE_BYTES=1024", "LOG_LEVEL=warn", "OTEL_TRACES_SAMPLER=always_off")
	doc := filepath.Join(dir, "openapi.json")
	if err := download(base+"/openapi.json", doc); err != nil {
		t.Fatal(err)
	}
	proxy := servicetest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(proxy)
	servicetest.Spawn(t, "prism", os.Environ(), prism, "proxy", "--errors", "--host", "127.0.0.1", "--port", port, doc, base)
	if err := waitListening(proxy, 60*time.Second); err != nil {
		t.Fatalf("prism proxy did not start: %v", err)
	}
	service := strings.TrimPrefix(base, "http://")

	var viaPrism, direct, refusedByBoth int
	var violations []string
	byStatus := map[int]int{}
	ops := operations(t, doc)
	for _, r := range reqs {
		if !prismCarries(r) {
			direct++
			resp, body := send(t, service, r)
			byStatus[resp.StatusCode]++
			ops.count(r, resp.StatusCode)
			if v := directViolation(r, resp, body); v != "" {
				violations = append(violations, v)
			}
			continue
		}
		viaPrism++
		resp, body := send(t, proxy, r)
		if v := resp.Header.Get("sl-violations"); v != "" {
			violations = append(violations, fmt.Sprintf("%s %s %s: answered %d; Prism: %s", r.Method, r.Target, clip(r.Body), resp.StatusCode, v))
			continue
		}
		var problem struct {
			Type       string            `json:"type"`
			Validation []json.RawMessage `json:"validation"`
		}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") && json.Unmarshal(body, &problem) == nil &&
			strings.HasPrefix(problem.Type, prismErrors) {
			// Prism refused the request as the document does: the service
			// must refuse it too.
			sresp, sbody := send(t, service, r)
			byStatus[sresp.StatusCode]++
			ops.count(r, sresp.StatusCode)
			if sresp.StatusCode < 400 {
				violations = append(violations, fmt.Sprintf("%s %s %s: the document refuses it (%s: %s), the service answered %d %s",
					r.Method, r.Target, clip(r.Body), strings.TrimPrefix(problem.Type, prismErrors), clip(string(bytes.Join(rawJoin(problem.Validation), []byte(", ")))), sresp.StatusCode, clip(string(sbody))))
			} else {
				refusedByBoth++
			}
			continue
		}
		byStatus[resp.StatusCode]++
		ops.count(r, resp.StatusCode)
	}
	violations = append(violations, ops.uncovered()...)
	t.Logf("contract: %d requests from the route tests over the document's %d operations (%d through Prism's proxy, %d sent directly), %d refused by Prism and the service alike; the service's statuses %v; violations %d",
		len(reqs), len(ops), viaPrism, direct, refusedByBoth, byStatus, len(violations))
	for i, v := range violations {
		if i == 50 {
			t.Errorf("... and %d more", len(violations)-50)
			break
		}
		t.Error(v)
	}
}

// operation is one operation of the document and how many of the
// corpus's requests it answered, accepted and refused.
type operation struct {
	method, path      string
	re                *regexp.Regexp
	accepted, refused int
}

type operationList []*operation

// operations lists the document's operations, each with a pattern that
// matches its paths as a client writes them.
func operations(t *testing.T, doc string) operationList {
	t.Helper()
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var out operationList
	param := regexp.MustCompile(`\\\{[a-z]+\\\}`)
	for path, item := range d.Paths {
		re := regexp.MustCompile("^" + param.ReplaceAllString(regexp.QuoteMeta(path), "[^/?]+") + "$")
		for method := range item {
			if method != "parameters" {
				out = append(out, &operation{method: strings.ToUpper(method), path: path, re: re})
			}
		}
	}
	return out
}

func (ops operationList) count(r contract.Request, status int) {
	path, _, _ := strings.Cut(r.Target, "?")
	for _, op := range ops {
		if op.method == r.Method && op.re.MatchString(path) {
			switch {
			case status < 400:
				op.accepted++
			default:
				op.refused++
			}
		}
	}
}

// uncovered names the operations the corpus did not prove both ways: each
// needs a request the service accepted, and each data route (/v1, the
// tutorial's /set and /get) one it refused.
func (ops operationList) uncovered() []string {
	var out []string
	for _, op := range ops {
		data := strings.HasPrefix(op.path, "/v1") || strings.HasPrefix(op.path, "/set") || strings.HasPrefix(op.path, "/get")
		if op.accepted == 0 || (data && op.refused == 0) {
			out = append(out, fmt.Sprintf("%s %s: the route tests sent %d requests it accepted and %d it refused; want both (the contract covers every route, valid and invalid)",
				op.method, op.path, op.accepted, op.refused))
		}
	}
	sort.Strings(out)
	return out
}

func rawJoin(ms []json.RawMessage) [][]byte {
	out := make([][]byte, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

// loadCorpus reads DUBEBOX_CONTRACT_CORPUS and drops repeats.
func loadCorpus(t *testing.T) []contract.Request {
	t.Helper()
	path := os.Getenv("DUBEBOX_CONTRACT_CORPUS")
	if path == "" {
		t.Fatal("DUBEBOX_CONTRACT_CORPUS is not set: run make contract, which records the route tests' requests and replays them")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("the corpus: %v (make contract writes it)", err)
	}
	defer func() { _ = f.Close() }()
	seen := map[[32]byte]bool{}
	var out []contract.Request
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var r contract.Request
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("the corpus: %v", err)
		}
		sum := sha256.Sum256(sc.Bytes())
		if !seen[sum] {
			seen[sum] = true
			out = append(out, r)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 500 {
		t.Fatalf("the corpus holds %d distinct requests, want the route tests' (over 500): was it written by go test ./internal/api?", len(out))
	}
	return out
}

// findPrism is the prism that make contract installs (npm ci in
// .ci/contract), or PRISM.
func findPrism(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PRISM"); p != "" {
		return p
	}
	p := filepath.Join(servicetest.Root(), ".ci", "contract", "node_modules", ".bin", "prism")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("prism not found at %s: run make contract (npm ci --prefix .ci/contract installs @stoplight/prism-cli; needs Node.js 20 and npm)", p)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node not found: install Node.js 20 (Debian: apt-get install -y npm)")
	}
	return p
}

var badEscape = regexp.MustCompile(`%([^0-9A-Fa-f]|[0-9A-Fa-f][^0-9A-Fa-f]|[0-9A-Fa-f]?$)`)

// prismCarries says whether Prism can carry the request unchanged.
func prismCarries(r contract.Request) bool {
	path, _, _ := strings.Cut(r.Target, "?")
	switch {
	case r.Method == http.MethodHead || r.Method == http.MethodOptions:
		return false
	case strings.HasSuffix(path, "/events"):
		// Prism's proxy waits for the end of a response, and a stream
		// has none.
		return false
	case badEscape.MatchString(r.Target), strings.Contains(path, "//"):
		return false
	case !decodesToUTF8(r.Target):
		// Nor does it answer a path that decodes to invalid UTF-8.
		return false
	case r.Body != "" && !json.Valid([]byte(r.Body)):
		// Prism waits for the rest of a truncated body forever.
		return false
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." || strings.EqualFold(seg, "%2e") || strings.EqualFold(seg, "%2e%2e") {
			return false
		}
	}
	for i := 0; i < len(r.Target); i++ {
		if r.Target[i] <= ' ' || r.Target[i] >= 0x7f {
			return false
		}
	}
	return true
}

// decodesToUTF8 says whether the target's path and query decode to UTF-8.
func decodesToUTF8(target string) bool {
	path, query, _ := strings.Cut(target, "?")
	p, err := url.PathUnescape(path)
	if err != nil || !utf8.ValidString(p) {
		return false
	}
	q, err := url.QueryUnescape(query)
	return err == nil && utf8.ValidString(q)
}

// directViolation judges an answer the service gave without Prism: a
// success, or an error in the API's JSON shape with its request id.
func directViolation(r contract.Request, resp answer, body []byte) string {
	if resp.StatusCode == http.StatusOK && r.Method == http.MethodGet && resp.Header.Get("Content-Type") == "text/event-stream" &&
		!strings.HasPrefix(string(body), "retry: ") {
		return fmt.Sprintf("%s %s (sent directly): a stream that does not open with its retry field: %q", r.Method, r.Target, clip(string(body)))
	}
	if resp.StatusCode < 400 || r.Method == http.MethodHead {
		return ""
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		RequestID string `json:"request_id"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Code == "" || e.RequestID == "" || e.RequestID != resp.Header.Get("X-Request-ID") {
		return fmt.Sprintf("%s %s (sent directly): %d %s %q, want the JSON error shape with the request id", r.Method, r.Target, resp.StatusCode, resp.Header.Get("Content-Type"), clip(string(body)))
	}
	return ""
}

// send writes the request as recorded, byte for byte (the target
// unparsed), and reads the answer. A body without a Content-Type is sent
// as JSON, as the document describes it.
func send(t *testing.T, addr string, r contract.Request) (answer, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", r.Method, r.Target, addr)
	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	if _, ok := r.Header["Authorization"]; !ok {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", token)
	}
	for _, name := range names {
		if name == "Host" || name == "Connection" || name == "Content-Length" {
			continue
		}
		for _, v := range r.Header[name] {
			if strings.ContainsAny(v, "\r\n") {
				continue // a header the recorder took from a hostile case that net/http would never send
			}
			fmt.Fprintf(&b, "%s: %s\r\n", name, v)
		}
	}
	if r.Body != "" || r.Method == http.MethodPost || r.Method == http.MethodPut {
		if r.Header.Get("Content-Type") == "" && r.Body != "" {
			b.WriteString("Content-Type: application/json\r\n")
		}
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.Body))
	}
	b.WriteString("\r\n")
	b.WriteString(r.Body)
	if _, err := conn.Write(b.Bytes()); err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.Target, err)
	}
	req, _ := http.NewRequestWithContext(context.Background(), r.Method, "http://"+addr, nil)
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("%s %s via %s: %v\n%s", r.Method, r.Target, addr, err, clip(b.String()))
	}
	var body []byte
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		// A stream goes on until its client leaves: its first event
		// (the retry field, and a watch's first state) is enough.
		body, _ = bufio.NewReader(resp.Body).ReadBytes('\n')
	} else {
		body, _ = io.ReadAll(resp.Body)
	}
	_ = resp.Body.Close()
	return answer{StatusCode: resp.StatusCode, Header: resp.Header}, body
}

// answer is what send keeps of a response.
type answer struct {
	StatusCode int
	Header     http.Header
}

func download(url, path string) error {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func waitListening(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
