package api_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/dubebox/dubebox/internal/api"
	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/store"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// withStreams sets the streams' settings.
func withStreams(maxStreams int, heartbeat, writeTimeout time.Duration) option {
	return func(c *api.Config, _ *api.Deps) {
		c.MaxSSEStreams, c.SSEHeartbeat, c.SSEWriteTimeout = maxStreams, heartbeat, writeTimeout
	}
}

// samePrefix makes a second instance over the same keys as e.
func samePrefix(e *env) func(*store.Config) {
	return func(c *store.Config) { c.KeyPrefix = e.prefix }
}

// TestChannelsAcrossInstances: subscribers on two instances each receive
// every message published through either, in the order published, as
// the document's MessageEvent; a publish answers the receivers' count.
func TestChannelsAcrossInstances(t *testing.T) {
	onEveryTopology(t, func(t *testing.T, tp redistest.Topology, a *env) {
		t.Helper()
		b := newEnvStore(t, tp, samePrefix(a))
		sa, _ := a.open(t, "/v1/channels/news/events")
		sb, _ := b.open(t, "/v1/channels/news/events")
		const n = 50
		for i := range n {
			from := a
			if i%2 == 1 {
				from = b
			}
			w := from.do(t, "POST", "/v1/channels/news/messages", fmt.Sprintf(`{"message":"m%d"}`, i))
			if w.Code != http.StatusOK {
				t.Fatalf("publish: %d %s", w.Code, w.Body.String())
			}
			// On one server both instances' subscriptions are Redis's
			// receivers; on a Cluster, those on the channel's shard node.
			if got := decode(t, w)["receivers"].(float64); got < 1 {
				t.Fatalf("receivers %v, want at least 1", got)
			}
		}
		for _, s := range []*sseStream{sa, sb} {
			for i := range n {
				m := s.nextOf(t, "message")
				if m["channel"] != "news" || m["message"] != fmt.Sprintf("m%d", i) {
					t.Fatalf("message %d: %v", i, m)
				}
				if at, err := time.Parse(time.RFC3339Nano, m["published_at"].(string)); err != nil || time.Since(at) > time.Minute {
					t.Fatalf("published_at %v: %v", m["published_at"], err)
				}
			}
		}
		if got := sample(t, a.metrics, "dubebox_sse_events_delivered_total", "kind", "channel"); got != n {
			t.Errorf("delivered %v on one instance, want %d", got, n)
		}
		if got := sample(t, a.metrics, "dubebox_channel_messages_published_total"); got != n/2 {
			t.Errorf("published %v on one instance, want %d", got, n/2)
		}
		if got := sample(t, a.metrics, "dubebox_sse_streams", "kind", "channel"); got != 1 {
			t.Errorf("open streams %v, want 1", got)
		}
	})
}

// TestChannelTrace: the delivery's span is a child of the publish's (its
// trace context travelled in the message) and links to the subscriber's
// request.
func TestChannelTrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	s, _ := e.open(t, "/v1/channels/traced/events")
	if w := e.do(t, "POST", "/v1/channels/traced/messages", `{"message":"x"}`); w.Code != http.StatusOK {
		t.Fatalf("publish: %d", w.Code)
	}
	s.nextOf(t, "message")
	var publish, deliver trace.SpanContext
	var link trace.SpanContext
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !deliver.IsValid() {
		for _, sp := range e.spans.Ended() {
			switch sp.Name() {
			case "publish":
				publish = sp.SpanContext()
			case "deliver":
				if sp.Parent().SpanID() == publish.SpanID() && publish.IsValid() {
					deliver = sp.SpanContext()
					if len(sp.Links()) == 1 {
						link = sp.Links()[0].SpanContext
					}
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !publish.IsValid() || !deliver.IsValid() {
		t.Fatalf("no deliver span whose parent is the publish span (publish %v)", publish)
	}
	if deliver.TraceID() != publish.TraceID() {
		t.Errorf("delivery in trace %s, publish in %s", deliver.TraceID(), publish.TraceID())
	}
	if !link.IsValid() || link.TraceID() == publish.TraceID() {
		t.Errorf("the delivery links %v, want the subscriber's request span", link)
	}
}

// TestWatchString follows a string through each kind of change, made
// through the API and around it (as redis-cli would).
func TestWatchString(t *testing.T) {
	onEveryTopology(t, func(t *testing.T, tp redistest.Topology, e *env) {
		t.Helper()
		if tp.Name == "cluster" {
			if _, status := e.open(t, "/v1/kv/w/events"); status != http.StatusNotImplemented {
				t.Fatalf("watch on a Cluster: %d, want 501", status)
			}
			w := e.do(t, "GET", "/v1/kv/w/events", "", "Accept", "text/event-stream")
			if w.Code != http.StatusNotImplemented || errorCode(t, w) != api.CodeNotSupported {
				t.Fatalf("watch on a Cluster: %d %s", w.Code, w.Body.String())
			}
			return
		}
		ctx := t.Context()
		s, _ := e.open(t, "/v1/kv/w/events")
		s.nextOf(t, "deleted")
		e.do(t, "PUT", "/v1/kv/w", `{"value":"one"}`)
		m := s.nextOf(t, "changed")
		if m["value"] != "one" || m["ttl_seconds"] != -1.0 || m["etag"] == "" {
			t.Fatalf("changed: %v", m)
		}
		if err := e.rdb.Set(ctx, e.prefix+"w", "two", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if m := s.nextOf(t, "changed"); m["value"] != "two" {
			t.Fatalf("changed by another client: %v", m)
		}
		e.do(t, "DELETE", "/v1/kv/w", "")
		s.nextOf(t, "deleted")
		e.do(t, "PUT", "/v1/kv/w", `{"value":"short","ttl_seconds":1}`)
		if m := s.nextOf(t, "changed"); m["ttl_seconds"] != 1.0 {
			t.Fatalf("changed with a TTL: %v", m)
		}
		s.nextOf(t, "expired")

		// A second watcher gets the state first; the first hears nothing
		// of it.
		e.do(t, "PUT", "/v1/kv/w", `{"value":"three"}`)
		s.nextOf(t, "changed")
		s2, _ := e.open(t, "/v1/kv/w/events")
		first := s2.next(t, 5*time.Second)
		if first.name != "state" || !strings.Contains(first.data, `"three"`) || first.id == "" {
			t.Fatalf("first event %+v", first)
		}
		s.quiet(t, 200*time.Millisecond)

		// Last-Event-ID that still matches: no first event.
		s3, _ := e.open(t, "/v1/kv/w/events", "Last-Event-ID", first.id)
		s3.quiet(t, 200*time.Millisecond)
		e.do(t, "PUT", "/v1/kv/w", `{"value":"four"}`)
		if m := s3.nextOf(t, "changed"); m["value"] != "four" {
			t.Fatalf("after Last-Event-ID: %v", m)
		}

		// A hash at the key: 409 before the stream, an error event after.
		e.do(t, "PUT", "/v1/hash/wh", `{"fields":{"a":"1"}}`)
		w := e.do(t, "GET", "/v1/kv/wh/events", "", "Accept", "text/event-stream")
		if w.Code != http.StatusConflict {
			t.Fatalf("watch a hash as a string: %d", w.Code)
		}
		e.do(t, "DELETE", "/v1/kv/w", "")
		if err := e.rdb.HSet(ctx, e.prefix+"w", "f", "v").Err(); err != nil {
			t.Fatal(err)
		}
		for _, st := range []*sseStream{s, s2} {
			st.nextOf(t, "changed")
		}
		for _, st := range []*sseStream{s, s2, s3} {
			// The read after the delete may already find the hash.
			ev := st.next(t, 5*time.Second)
			if ev.name == "deleted" {
				ev = st.next(t, 5*time.Second)
			}
			if ev.name != "error" || !strings.Contains(ev.data, api.CodeWrongType) {
				t.Fatalf("event %+v, want an error event with wrong_type", ev)
			}
			st.ended(t, 5*time.Second)
		}
	})
}

// TestWatchHash follows a hash's fields.
func TestWatchHash(t *testing.T) {
	onEveryTopology(t, func(t *testing.T, tp redistest.Topology, e *env) {
		t.Helper()
		if tp.Name == "cluster" {
			return // TestWatchString checks the refusal.
		}
		e.do(t, "PUT", "/v1/hash/h", `{"fields":{"a":"1"},"ttl_seconds":100}`)
		s, _ := e.open(t, "/v1/hash/h/events")
		m := s.nextOf(t, "state")
		if f := m["fields"].(map[string]any); f["a"] != "1" || len(f) != 1 || m["ttl_seconds"].(float64) < 99 {
			t.Fatalf("state: %v", m)
		}
		e.do(t, "POST", "/v1/hash/h/n/incr", `{"by":5}`)
		if f := s.nextOf(t, "changed")["fields"].(map[string]any); f["n"] != "5" || f["a"] != "1" {
			t.Fatalf("changed: %v", f)
		}
		e.do(t, "DELETE", "/v1/hash/h", "")
		s.nextOf(t, "deleted")
	})
}

// TestWatchOrder: a watcher of a key written many times in a row sees its
// states in order, never an older after a newer, and the last one.
func TestWatchOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	s, _ := e.open(t, "/v1/kv/n/events")
	s.nextOf(t, "deleted")
	const n = 300
	for range n {
		e.do(t, "POST", "/v1/kv/n/incr", "")
	}
	last := 0
	for last < n {
		m := s.nextOf(t, "changed")
		var v int
		_, _ = fmt.Sscan(m["value"].(string), &v)
		if v <= last {
			t.Fatalf("value %d after %d", v, last)
		}
		last = v
	}
}

// TestStreamHeartbeatAndAccept: a quiet stream sends its retry field, then
// a comment every SSE_HEARTBEAT; a client that will not take
// text/event-stream is refused; HEAD answers the headers.
func TestStreamHeartbeatAndAccept(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", withStreams(10, 50*time.Millisecond, time.Second))
	s, _ := e.open(t, "/v1/channels/quiet/events")
	if ct := s.header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	beats := 0
	timeout := time.After(5 * time.Second)
	for beats < 3 {
		select {
		case ev := <-s.events:
			if ev.comment == "heartbeat" {
				beats++
			} else {
				t.Fatalf("event %+v on a quiet channel", ev)
			}
		case <-timeout:
			t.Fatalf("%d heartbeats in 5 s at one every 50 ms", beats)
		}
	}
	for _, accept := range []string{"application/json", "text/event-stream;q=0"} {
		w := e.do(t, "GET", "/v1/channels/quiet/events", "", "Accept", accept)
		if w.Code != http.StatusNotAcceptable || errorCode(t, w) != api.CodeNotAcceptable {
			t.Errorf("Accept %s: %d %s", accept, w.Code, w.Body.String())
		}
	}
	for _, path := range []string{"/v1/channels/quiet/events", "/v1/kv/quiet/events"} {
		w := e.do(t, "HEAD", path, "")
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "text/event-stream" {
			t.Errorf("HEAD %s: %d %q", path, w.Code, w.Header().Get("Content-Type"))
		}
	}
}

// TestStreamLimit: past MAX_SSE_STREAMS a stream is refused with 503
// overloaded; closing one makes room; short requests are not held up.
func TestStreamLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", withStreams(2, time.Second, time.Second))
	a, _ := e.open(t, "/v1/channels/c1/events")
	if _, status := e.open(t, "/v1/kv/c2/events"); status != http.StatusOK {
		t.Fatalf("second stream: %d", status)
	}
	if _, status := e.open(t, "/v1/channels/c3/events"); status != http.StatusServiceUnavailable {
		t.Fatalf("third stream: %d, want 503", status)
	}
	w := e.do(t, "GET", "/v1/channels/c3/events", "")
	if w.Code != http.StatusServiceUnavailable || errorCode(t, w) != api.CodeOverloaded || w.Header().Get("Retry-After") == "" {
		t.Fatalf("third stream: %d %s", w.Code, w.Body.String())
	}
	if w := e.do(t, "PUT", "/v1/kv/c9", `{"value":"v"}`); w.Code != http.StatusOK {
		t.Fatalf("a write while the streams are full: %d", w.Code)
	}
	a.close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, status := e.open(t, "/v1/channels/c3/events")
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after a stream closed: %d", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReadTokenStreams: the read token may subscribe and watch, not
// publish.
func TestReadTokenStreams(t *testing.T) {
	t.Parallel()
	const full, read = "full-token-0123456789", "read-token-0123456789"
	e := newEnv(t, "", func(c *apiConfig, _ *apiDeps) { c.APIToken, c.APIReadToken = full, read })
	for _, path := range []string{"/v1/channels/rt/events", "/v1/kv/rt/events", "/v1/hash/rt/events"} {
		if _, status := e.open(t, path, "Authorization", "Bearer "+read); status != http.StatusOK {
			t.Errorf("GET %s with the read token: %d", path, status)
		}
		if _, status := e.open(t, path); status != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d", path, status)
		}
	}
	if w := e.do(t, "POST", "/v1/channels/rt/messages", `{"message":"x"}`, "Authorization", "Bearer "+read); w.Code != http.StatusForbidden {
		t.Errorf("publish with the read token: %d", w.Code)
	}
	if w := e.do(t, "POST", "/v1/channels/rt/messages", `{"message":"x"}`, "Authorization", "Bearer "+full); w.Code != http.StatusOK {
		t.Errorf("publish with the full token: %d %s", w.Code, w.Body.String())
	}
}

// TestPublishRefusals: bad channel names and bodies change nothing.
func TestPublishRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", func(c *apiConfig, _ *apiDeps) { c.MaxMessageBytes = 100 })
	for _, tc := range []struct{ path, body, code string }{
		{"/v1/channels/c/messages", `{}`, api.CodeInvalidArgument},
		{"/v1/channels/c/messages", `{"message":null}`, api.CodeInvalidArgument},
		{"/v1/channels/c/messages", `{"message":1}`, api.CodeInvalidArgument},
		{"/v1/channels/c/messages", `{"message":"x","extra":1}`, api.CodeInvalidArgument},
		{"/v1/channels/c/messages", `{"message":"` + strings.Repeat("x", 1025) + `"}`, api.CodePayloadTooLarge},
		{"/v1/channels/c/messages", `{"message":"` + strings.Repeat("x", 101) + `"}`, api.CodePayloadTooLarge},
		{"/v1/channels/" + strings.Repeat("c", 33) + "/messages", `{"message":"x"}`, api.CodeInvalidArgument},
		{"/v1/channels/%2e%2e/messages", `{"message":"x"}`, api.CodeInvalidArgument},
	} {
		w := e.do(t, "POST", tc.path, tc.body)
		if w.Code < 400 || errorCode(t, w) != tc.code {
			t.Errorf("POST %s %.40s: %d %s, want %s", tc.path, tc.body, w.Code, w.Body.String(), tc.code)
		}
	}
}

// TestSlowReaderDropped: a subscriber that stops reading is dropped and
// counted, and the one that reads gets every message.
func TestSlowReaderDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", withStreams(10, time.Hour, 200*time.Millisecond), func(c *apiConfig, _ *apiDeps) { c.MaxValueBytes, c.MaxMessageBytes = 64<<10, 64<<10 })
	good, _ := e.open(t, "/v1/channels/flood/events")

	// The slow client: a small receive buffer, and it never reads.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	conn, err := d.DialContext(t.Context(), "tcp", strings.TrimPrefix(e.url(t), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	fmt.Fprintf(conn, "GET /v1/channels/flood/events HTTP/1.1\r\nHost: example.com\r\nAccept: text/event-stream\r\n\r\n")
	// Wait for both subscriptions.
	deadline := time.Now().Add(5 * time.Second)
	for sample(t, e.metrics, "dubebox_sse_streams", "kind", "channel") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the slow client's stream did not open")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// 32 MiB: more than the connection's buffers hold.
	msg := strings.Repeat("m", 64<<10)
	const n = 512
	received := make(chan int, 1)
	go func() {
		got := 0
		for got < n {
			ev, ok := <-good.events
			if !ok {
				break
			}
			if ev.name == "message" {
				got++
			}
		}
		received <- got
	}()
	for range n {
		if w := e.do(t, "POST", "/v1/channels/flood/messages", `{"message":"`+msg+`"}`); w.Code != http.StatusOK {
			t.Fatalf("publish: %d", w.Code)
		}
	}
	select {
	case got := <-received:
		if got != n {
			t.Errorf("the reading subscriber got %d of %d messages", got, n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the reading subscriber did not get every message in 30 s")
	}
	deadline = time.Now().Add(10 * time.Second)
	for sample(t, e.metrics, "dubebox_sse_dropped_total", "kind", "channel", "reason", "slow_reader") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("slow readers dropped: %v, want 1", sample(t, e.metrics, "dubebox_sse_dropped_total", "kind", "channel", "reason", "slow_reader"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := e.logs.FilterMessage("request failed").FilterField(zap.String("route", "/v1/channels/:channel/events")).Len(); got != 1 {
		t.Errorf("%d failure lines for the dropped stream, want 1", got)
	}
}

// TestStreamsEndOnShutdown: when Done closes, every stream gets an end
// event and ends.
func TestStreamsEndOnShutdown(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	e := newEnv(t, "", func(_ *apiConfig, d *apiDeps) { d.Done = done })
	a, _ := e.open(t, "/v1/channels/bye/events")
	b, _ := e.open(t, "/v1/kv/bye/events")
	b.nextOf(t, "deleted")
	close(done)
	for _, s := range []*sseStream{a, b} {
		if m := s.nextOf(t, "end"); m["reason"] != "shutdown" {
			t.Errorf("end event %v", m)
		}
		s.ended(t, 5*time.Second)
	}
	if got := sample(t, e.metrics, "dubebox_sse_streams", "kind", "channel") + sample(t, e.metrics, "dubebox_sse_streams", "kind", "kv"); got != 0 {
		t.Errorf("%v streams open after shutdown", got)
	}
}

// TestStreamsRedisLost: when Redis goes, each stream ends with an error
// event (never silence), counted; once it is back, streams open again.
func TestStreamsRedisLost(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	e := newEnv(t, srv.Addr)
	sub, _ := e.open(t, "/v1/channels/lost/events")
	watch, _ := e.open(t, "/v1/kv/lost/events")
	watch.nextOf(t, "deleted")
	srv.Kill()
	for _, s := range []*sseStream{sub, watch} {
		if m := s.nextOf(t, "error"); m["code"] != api.CodeUnavailable {
			t.Errorf("error event %v", m)
		}
		s.ended(t, 5*time.Second)
	}
	for _, kind := range []string{"channel", "kv"} {
		if got := sample(t, e.metrics, "dubebox_sse_dropped_total", "kind", kind, "reason", "redis_lost"); got != 1 {
			t.Errorf("%s streams dropped as redis_lost: %v, want 1", kind, got)
		}
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, path := range []string{"/v1/channels/lost/events", "/v1/kv/lost/events"} {
		for {
			s, status := e.open(t, path)
			if status == http.StatusOK {
				if strings.HasPrefix(path, "/v1/kv") {
					s.nextOf(t, "deleted")
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after Redis came back: %d", path, status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestEventSourceInChromium: a page in headless Chromium, on another origin
// named in CORS_ALLOWED_ORIGINS, subscribes with EventSource to a channel
// and watches a key; curl publishes to the channel and redis-cli changes
// the key, and the page shows both.
func TestEventSourceInChromium(t *testing.T) {
	t.Parallel()
	browser := needChromium(t)
	for _, tool := range []string{"curl", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install Debian's %s", tool, map[string]string{"curl": "curl", "redis-cli": "redis-tools"}[tool])
		}
	}
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<!doctype html><title>app</title>`))
	}))
	t.Cleanup(page.Close)
	e := newEnv(t, "", func(c *api.Config, _ *api.Deps) { c.CORSAllowedOrigins = []string{page.URL} })
	srv := e.url(t)
	ctx := headlessChromium(t, browser)
	script := `new Promise((resolve) => {
  window.got = [];
  let open = 0;
  const opened = () => { if (++open === 2) resolve('open'); };
  const news = new EventSource('` + srv + `/v1/channels/browser/events');
  news.onopen = opened;
  news.addEventListener('message', (m) => window.got.push('message ' + JSON.parse(m.data).message));
  const watch = new EventSource('` + srv + `/v1/kv/browser-key/events');
  watch.addEventListener('deleted', opened);
  watch.addEventListener('changed', (m) => window.got.push('changed ' + JSON.parse(m.data).value));
  setTimeout(() => resolve('not open: ' + news.readyState + ' ' + watch.readyState), 10000);
})`
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL)); err != nil {
		t.Fatalf("the page in Chromium: %v", err)
	}
	state, err := chromedp.Run(ctx, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
	if err != nil || state != "open" {
		t.Fatalf("EventSource in the page: %q %v", state, err)
	}
	out, err := exec.CommandContext(t.Context(), "curl", "-sS", "-X", "POST", "-d", `{"message":"from curl"}`,
		srv+"/v1/channels/browser/messages").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"receivers":1`) {
		t.Fatalf("curl: %v %s", err, out)
	}
	host, port, _ := net.SplitHostPort(redistest.Addr(t))
	if out, err := exec.CommandContext(t.Context(), "redis-cli", "-h", host, "-p", port, "SET", e.prefix+"browser-key", "from redis-cli").CombinedOutput(); err != nil {
		t.Fatalf("redis-cli: %v %s", err, out)
	}
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		got, err = chromedp.Run(ctx, chromedp.Evaluate[string](`window.got.sort().join('; ')`))
		if err != nil {
			t.Fatal(err)
		}
		if got == "changed from redis-cli; message from curl" {
			t.Logf("the page received: %s", got)
			return
		}
	}
	t.Errorf("the page received %q, want the message from curl and the change from redis-cli", got)
}

// TestChannelMessagesAroundDubeBox: a message published with redis-cli's
// SPUBLISH reaches the subscribers as it is; one that is not UTF-8 is
// skipped and counted, and the stream goes on.
func TestChannelMessagesAroundDubeBox(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	s, _ := e.open(t, "/v1/channels/raw/events")
	for _, payload := range []string{"from redis-cli", "\xff\xfe", `{"message":"looks like JSON"}`} {
		if err := e.rdb.SPublish(t.Context(), e.prefix+"raw", payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"from redis-cli", `{"message":"looks like JSON"}`} {
		if m := s.nextOf(t, "message"); m["message"] != want {
			t.Errorf("message %v, want %q", m, want)
		}
	}
	if got := sample(t, e.metrics, "dubebox_sse_dropped_total", "kind", "channel", "reason", "not_utf8"); got != 1 {
		t.Errorf("messages skipped as not UTF-8: %v, want 1", got)
	}
}
