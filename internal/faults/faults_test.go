//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/servicetest"
	"github.com/redis/go-redis/v9"
)

const redisTimeout = 300 * time.Millisecond

// TestRedisStalls pauses redis-server (SIGSTOP) for 3 s under load.
func TestRedisStalls(t *testing.T) {
	rs := redistest.Start(t)
	s := start(t, rs.Addr, "REDIS_TIMEOUT="+redisTimeout.String())
	ctx, cancel := context.WithCancel(context.Background())
	l := runLoad(ctx, s.base, 8, mixed)
	time.Sleep(time.Second)

	if err := rs.Pause(); err != nil {
		t.Fatal(err)
	}
	// SIGSTOP lands asynchronously: requests sent in the next moments may
	// still have been answered by Redis.
	stopAt := time.Now().Add(20 * time.Millisecond)
	time.Sleep(time.Second)
	readyDuring, _, _ := get(s.base + "/readyz")
	time.Sleep(2 * time.Second)
	contAt := time.Now()
	if err := rs.Resume(); err != nil {
		t.Fatal(err)
	}
	readyAfter := 0
	for time.Since(contAt) < time.Second {
		if readyAfter, _, _ = get(s.base + "/readyz"); readyAfter == 200 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	cancel()
	rs2 := l.wait()

	during := between(rs2, stopAt, contAt)
	counts, worst := tally(during)
	bound := redisTimeout + 200*time.Millisecond
	for _, r := range during {
		// A request that started during the stall but was answered after
		// SIGCONT may have succeeded: Redis served it late, within the bound.
		answeredInStall := r.end.Before(contAt)
		switch {
		case r.err != nil:
			t.Errorf("%s %s during the stall: %v", r.method, r.path, r.err)
		case r.took() > bound:
			t.Errorf("%s %s took %v during the stall, past REDIS_TIMEOUT+200ms", r.method, r.path, r.took())
		case r.status == 503 || r.status == 504:
			if !isJSONError(r.body, "unavailable", "timeout") {
				t.Errorf("during the stall, not the error shape: %s", r.body)
			}
		case answeredInStall || r.status >= 500:
			t.Errorf("%s %s during the stall: %d %s", r.method, r.path, r.status, r.body)
		}
	}
	var firstOK time.Duration = -1
	for _, r := range rs2 {
		if !r.start.Before(contAt) && r.err == nil && r.status < 300 {
			firstOK = r.end.Sub(contAt)
			break
		}
	}
	if readyDuring != 503 || readyAfter != 200 {
		t.Errorf("/readyz: %d during the stall, %d within 1s after; want 503 then 200", readyDuring, readyAfter)
	}
	if firstOK < 0 || firstOK > time.Second {
		t.Errorf("first success %v after SIGCONT, want within 1s", firstOK)
	}
	t.Logf("faults: stall: SIGSTOP redis for %v under 8 workers; %d requests during it by status %v, worst %v (bound %v); /readyz %d during, %d after; first success %v after SIGCONT",
		contAt.Sub(stopAt).Round(time.Millisecond), len(during), counts, worst.Round(time.Millisecond), bound, readyDuring, readyAfter, firstOK.Round(time.Millisecond))
}

// TestNearCacheDuringStall pauses Redis while a key is in the near cache
// (on by default): the process may keep answering that key from memory, as
// nobody can change it while Redis is stopped, but only until its tracking
// health check fails (a quiet second, then REDIS_TIMEOUT); from then on it
// answers 504 like any other read, and it serves from memory again once
// Redis is back.
func TestNearCacheDuringStall(t *testing.T) {
	rs := redistest.Start(t)
	s := start(t, rs.Addr, "REDIS_TIMEOUT="+redisTimeout.String())
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, s.base+"/v1/kv/hot", strings.NewReader(`{"value":"v"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := quick.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	waitNear := func(within time.Duration) bool {
		for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if code, _, cache := readHot(s.base); code == 200 && cache == "near" {
				return true
			}
		}
		return false
	}
	if !waitNear(5 * time.Second) {
		t.Fatal("the key was never answered from the near cache")
	}
	if err := rs.Pause(); err != nil {
		t.Fatal(err)
	}
	stopAt := time.Now()
	// One quiet second before the health check, REDIS_TIMEOUT for its
	// PING, and room for the scheduler.
	bound := time.Second + redisTimeout + 500*time.Millisecond
	var lastNear time.Duration = -1
	refused := 0
	for time.Since(stopAt) < 3*time.Second {
		code, body, cache := readHot(s.base)
		switch {
		case code == 200 && cache == "near" && body == "v":
			lastNear = time.Since(stopAt)
		case code == 503 || code == 504:
			refused++
		default:
			t.Errorf("GET during the stall: %d %q X-Cache %q", code, body, cache)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := rs.Resume(); err != nil {
		t.Fatal(err)
	}
	if lastNear > bound {
		t.Errorf("the near cache answered %v into the stall, past its bound %v", lastNear, bound)
	}
	if refused == 0 {
		t.Error("no read was refused during a 3 s stall: the near cache never noticed")
	}
	if !waitNear(5 * time.Second) {
		t.Error("the near cache did not come back within 5 s of Redis")
	}
	t.Logf("faults: near cache during a 3 s stall: last answer from memory %v in (bound %v), then %d reads refused; back after SIGCONT",
		lastNear.Round(time.Millisecond), bound, refused)
}

// readHot GETs the key "hot" and returns the status, the value and where
// it came from.
func readHot(base string) (code int, value, cache string) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, base+"/v1/kv/hot", nil)
	if err != nil {
		return 0, err.Error(), ""
	}
	resp, err := quick.Do(req)
	if err != nil {
		return 0, err.Error(), ""
	}
	defer func() { _ = resp.Body.Close() }()
	var got struct {
		Value string `json:"value"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&got)
	return resp.StatusCode, got.Value, resp.Header.Get("X-Cache")
}

// TestRedisDiesAndComesBack kills redis-server (-9) under load and restarts
// it on the same port; Redis fsyncs every write, so any lost acknowledged
// write is the API's fault.
func TestRedisDiesAndComesBack(t *testing.T) {
	rs := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	s := start(t, rs.Addr, "REDIS_TIMEOUT="+redisTimeout.String())
	ctx, cancel := context.WithCancel(context.Background())
	l := runLoad(ctx, s.base, 8, mixed)
	time.Sleep(time.Second)

	killAt := time.Now()
	rs.Kill()
	time.Sleep(time.Second)
	backAt := time.Now()
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	cancel()
	recs := l.wait()

	gone := between(recs, killAt.Add(50*time.Millisecond), backAt)
	counts, worst := tally(gone)
	for _, r := range gone {
		if r.err != nil || (r.status != 503 && r.status != 504) {
			t.Errorf("%s %s with Redis gone: %d %v %s", r.method, r.path, r.status, r.err, r.body)
		}
	}
	var recovered time.Duration = -1
	for _, r := range recs {
		if !r.start.Before(backAt) && r.err == nil && r.status < 300 {
			recovered = r.end.Sub(backAt)
			break
		}
	}
	if recovered < 0 || recovered > 2*time.Second {
		t.Errorf("first success %v after Redis came back, want within 2s", recovered)
	}

	// Every write answered 2xx must be in Redis, value for value.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer func() { _ = rdb.Close() }()
	acked, lost := 0, 0
	last := map[string]string{}
	for _, r := range recs {
		if r.method == http.MethodPut && r.err == nil && r.status == 200 {
			last[r.path] = r.value
		}
	}
	for path, want := range last {
		acked++
		got, err := rdb.Get(context.Background(), "dubebox:"+strings.TrimPrefix(path, "/v1/kv/")).Result()
		if err != nil || got != want {
			lost++
			t.Errorf("acknowledged write %s=%q reads back %q, %v", path, want, got, err)
		}
	}
	if acked == 0 {
		t.Fatal("no write was acknowledged")
	}
	t.Logf("faults: kill -9: redis gone %v; %d requests meanwhile by status %v, worst %v; first success %v after restart; acknowledged writes checked %d, lost %d",
		backAt.Sub(killAt).Round(time.Millisecond), len(gone), counts, worst.Round(time.Millisecond), recovered.Round(time.Millisecond), acked, lost)
}

// TestPoolExhaustion floods a pool of 2 connections while Redis is busy:
// requests wait at most REDIS_POOL_TIMEOUT, then get 503, and the server's
// goroutines return to their baseline.
func TestPoolExhaustion(t *testing.T) {
	rs := redistest.Start(t, "--enable-debug-command", "yes")
	const poolTimeout = 200 * time.Millisecond
	s := start(t, rs.Addr, "REDIS_POOL_SIZE=2", "REDIS_POOL_TIMEOUT="+poolTimeout.String(), "REDIS_TIMEOUT=2s")
	for range 20 {
		_, _, _ = get(s.base + "/v1/kv/warm")
	}
	time.Sleep(200 * time.Millisecond)
	baseline := s.metric("go_goroutines")

	// Keep Redis busy for 800ms, so the two pooled connections stay taken.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer func() { _ = rdb.Close() }()
	go func() { _ = rdb.Do(context.Background(), "DEBUG", "SLEEP", "0.8").Err() }()
	time.Sleep(50 * time.Millisecond)

	var mu sync.Mutex
	var recs []rec
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rec{start: time.Now(), method: "GET", path: fmt.Sprintf("/v1/kv/p%d", i)}
			c := &http.Client{Timeout: 10 * time.Second}
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.base+r.path, nil)
			resp, err := c.Do(req)
			if err != nil {
				r.err = err
			} else {
				buf := make([]byte, 512)
				n, _ := resp.Body.Read(buf)
				_ = resp.Body.Close()
				r.status, r.body = resp.StatusCode, string(buf[:n])
			}
			r.end = time.Now()
			mu.Lock()
			recs = append(recs, r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	counts, worst := tally(recs)
	unavailable := 0
	for _, r := range recs {
		switch {
		case r.err != nil:
			t.Errorf("no answer: %v", r.err)
		case r.status == 503:
			// Past MAX_INFLIGHT_REQUESTS (64) a request is refused at
			// once as overloaded, before it waits for a connection.
			if isJSONError(r.body, "unavailable") {
				unavailable++
			} else if !isJSONError(r.body, "overloaded") {
				t.Errorf("503 without the error shape: %s", r.body)
			}
			if r.took() > poolTimeout+300*time.Millisecond {
				t.Errorf("a 503 took %v, past the pool timeout %v", r.took(), poolTimeout)
			}
		case r.status != 404 && r.status != 504:
			t.Errorf("got %d %s", r.status, r.body)
		}
	}
	if unavailable == 0 {
		t.Errorf("no request was refused for want of a connection: %v", counts)
	}
	timeouts := s.metric("dubebox_redis_pool_timeouts_total")
	if code, _, _ := get(s.base + "/healthz"); code != 200 {
		t.Errorf("healthz after the flood: %d", code)
	}
	var after float64
	deadline := time.Now().Add(5 * time.Second)
	for {
		after = s.metric("go_goroutines")
		if after <= baseline+2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if after > baseline+2 {
		t.Errorf("goroutines %v after the flood, baseline %v", after, baseline)
	}
	t.Logf("faults: pool exhaustion: 200 concurrent GETs on a pool of 2 while Redis sleeps 800ms; by status %v, worst %v; pool timeouts %v; goroutines %v before, %v after",
		counts, worst.Round(time.Millisecond), timeouts, baseline, after)
}

// TestRedisOutOfMemory runs Redis at a tiny maxmemory with noeviction and
// drives every write route (servicetest.Writes, which the API's tests keep
// complete): a write that adds data answers 507, deletes and TTL changes
// on a missing key 404, never a 500; reads keep working.
func TestRedisOutOfMemory(t *testing.T) {
	rs := redistest.Start(t, "--maxmemory", "1", "--maxmemory-policy", "noeviction")
	s := start(t, rs.Addr)
	statuses := map[string]int{}
	for _, w := range servicetest.Writes {
		var body io.Reader
		if w.Body != "" {
			body = strings.NewReader(w.Body)
		}
		req, _ := http.NewRequestWithContext(context.Background(), w.Method, s.base+w.Path, body)
		resp, err := quick.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&got)
		_ = resp.Body.Close()
		statuses[fmt.Sprintf("%d %s", resp.StatusCode, got.Error.Code)]++
		if resp.StatusCode != w.FullStatus || (w.FullStatus == 507 && got.Error.Code != "insufficient_storage") {
			t.Errorf("%s %s with Redis full: %d %s, want %d", w.Method, w.Route, resp.StatusCode, got.Error.Code, w.FullStatus)
		}
	}
	code, _, _ := get(s.base + "/v1/kv/k")
	if code != 404 {
		t.Errorf("GET with Redis full: %d, want reads to keep working", code)
	}
	t.Logf("faults: out of memory: maxmemory 1 byte, noeviction; %d write routes by status %v; GET %d", len(servicetest.Writes), statuses, code)
}

// TestGracefulShutdown sends SIGTERM while requests are in flight.
func TestGracefulShutdown(t *testing.T) {
	rs := redistest.Start(t, "--enable-debug-command", "yes")
	s := start(t, rs.Addr, "REDIS_TIMEOUT=3s", "SHUTDOWN_TIMEOUT=5s")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := runLoad(ctx, s.base, 8, mixed)
	time.Sleep(500 * time.Millisecond)

	// Redis sleeps 500ms so that requests are in flight at the signal.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer func() { _ = rdb.Close() }()
	go func() { _ = rdb.Do(context.Background(), "DEBUG", "SLEEP", "0.5").Err() }()
	time.Sleep(100 * time.Millisecond)
	termAt := time.Now()
	inFlight := s.metric("dubebox_http_requests_in_flight")
	s.signal(syscall.SIGTERM)

	var exitErr error
	var exitAfter time.Duration
	select {
	case <-s.proc.Exited():
		exitErr, exitAfter = s.proc.Wait(), time.Since(termAt)
	case <-time.After(6 * time.Second):
		t.Fatal("the server did not exit within SHUTDOWN_TIMEOUT + 1s")
	}
	cancel()
	recs := l.wait()
	before := between(recs, time.Time{}, termAt)
	counts, worst := tally(before)
	for _, r := range before {
		if r.err != nil || r.status >= 500 {
			t.Errorf("request accepted before SIGTERM failed: %s %s %d %v", r.method, r.path, r.status, r.err)
		}
	}
	_, dialErr := net.DialTimeout("tcp", s.addr, time.Second)
	if dialErr == nil {
		t.Errorf("a new connection was accepted after shutdown")
	}
	if exitErr != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", exitErr)
	}
	t.Logf("faults: graceful shutdown: SIGTERM with %v requests in flight; %d requests sent before it, by status %v, worst %v; exit status ok=%v after %v; new connection refused=%v",
		inFlight, len(before), counts, worst.Round(time.Millisecond), exitErr == nil, exitAfter.Round(time.Millisecond), dialErr != nil)
}

// TestSlowClients opens a connection that trickles its headers and one
// that never reads its responses; the server's timeouts cut both while
// other clients are served.
func TestSlowClients(t *testing.T) {
	rs := redistest.Start(t)
	s := start(t, rs.Addr, "HTTP_READ_HEADER_TIMEOUT=1s", "HTTP_WRITE_TIMEOUT=2s", "MAX_VALUE_BYTES=2097152")
	big := strings.Repeat("x", 1<<20)
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPut, s.base+"/v1/kv/big", strings.NewReader(`{"value":"`+big+`"}`))
	resp, err := quick.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT big: %v", err)
	}
	_ = resp.Body.Close()

	// The trickler: a header line every 300ms, forever.
	trickleCut := make(chan time.Duration, 1)
	go func() {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			trickleCut <- -1
			return
		}
		defer func() { _ = c.Close() }()
		began := time.Now()
		_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n"))
		for i := 0; time.Since(began) < 10*time.Second; i++ {
			time.Sleep(300 * time.Millisecond)
			if _, err := fmt.Fprintf(c, "X-Slow-%d: y\r\n", i); err != nil {
				trickleCut <- time.Since(began)
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			buf := make([]byte, 1)
			if _, err := c.Read(buf); err != nil && !isTimeout(err) {
				trickleCut <- time.Since(began)
				return
			}
		}
		trickleCut <- -1
	}()

	// The non-reader: asks for the 1 MiB value 20 times on one connection
	// and reads nothing.
	go func() {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			return
		}
		defer func() { _ = c.Close() }()
		for range 20 {
			_, _ = c.Write([]byte("GET /v1/kv/big HTTP/1.1\r\nHost: x\r\n\r\n"))
		}
		time.Sleep(8 * time.Second)
	}()

	// Meanwhile other clients are served normally.
	var worst time.Duration
	served := 0
	for served < 40 {
		began := time.Now()
		code, _, err := get(s.base + "/v1/kv/small")
		if err != nil || code != 404 {
			t.Errorf("another client: %d %v", code, err)
		}
		worst = max(worst, time.Since(began))
		served++
		time.Sleep(100 * time.Millisecond)
	}
	cut := <-trickleCut
	if cut < 0 || cut > 2500*time.Millisecond {
		t.Errorf("the trickling client was cut after %v, want about HTTP_READ_HEADER_TIMEOUT (1s)", cut)
	}
	var inFlight float64
	deadline := time.Now().Add(4 * time.Second)
	for {
		inFlight = s.metric("dubebox_http_requests_in_flight")
		if inFlight <= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if inFlight > 1 { // the scrape itself is in flight
		t.Errorf("%v requests still in flight: the non-reading client was not cut by HTTP_WRITE_TIMEOUT", inFlight)
	}
	if worst > 500*time.Millisecond {
		t.Errorf("other clients waited up to %v", worst)
	}
	t.Logf("faults: slow clients: header trickler cut after %v (read-header timeout 1s); non-reader's requests released (in flight %v); %d other requests served, worst %v",
		cut.Round(time.Millisecond), inFlight, served, worst.Round(time.Millisecond))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestBigStructuresDoNotBlockRedis grows a hash and a list to their bounds
// (MAX_HASH_FIELDS 100,000 and MAX_LIST_LENGTH 10,000 by default) through
// many legal writes, then reads them whole a page at a time, removes
// values from the list (LREM walks it all), trims it and deletes both:
// Redis's SLOWLOG, set to record anything over 10 ms (its own default),
// records none of it. (A whole-hash HGETALL of 463,201 fields blocked
// Redis 110 to 129 ms, and a DEL of it 94 ms.)
func TestBigStructuresDoNotBlockRedis(t *testing.T) {
	rs := redistest.Start(t)
	s := start(t, rs.Addr)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer func() { _ = rdb.Close() }()
	ctx := context.Background()
	const slow = 10 * time.Millisecond
	if err := rdb.ConfigSet(ctx, "slowlog-log-slower-than", fmt.Sprint(slow.Microseconds())).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.SlowLogReset(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	send := func(method, path, body string) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, s.base+path, strings.NewReader(body))
		resp, err := quick.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return string(b)
	}
	start := time.Now()
	for w := range 100 {
		fields := map[string]string{}
		values := make([]string, 0, 1000)
		for i := range 1000 {
			fields[fmt.Sprintf("field-%d-%d", w, i)] = "value"
			values = append(values, fmt.Sprintf("v%d", i%10))
		}
		hb, _ := json.Marshal(map[string]any{"fields": fields})
		send(http.MethodPut, "/v1/hash/bighash", string(hb))
		if w < 10 {
			lb, _ := json.Marshal(map[string]any{"values": values})
			send(http.MethodPost, "/v1/list/biglist/push", string(lb))
		}
	}
	grew := time.Since(start)
	refused := func(method, path, body string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, s.base+path, strings.NewReader(body))
		resp, err := quick.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if code := refused(http.MethodPut, "/v1/hash/bighash", `{"fields":{"one-too-many":"v"}}`); code != http.StatusConflict {
		t.Fatalf("a write past MAX_HASH_FIELDS: %d, want 409", code)
	}
	pages, fields := 0, 0
	cursor := ""
	for {
		var page struct {
			Fields     map[string]string `json:"fields"`
			NextCursor string            `json:"next_cursor"`
		}
		url := "/v1/hash/bighash?limit=1000"
		if cursor != "" {
			url += "&cursor=" + cursor
		}
		if err := json.Unmarshal([]byte(send(http.MethodGet, url, "")), &page); err != nil {
			t.Fatal(err)
		}
		pages++
		fields += len(page.Fields)
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if code := refused(http.MethodPost, "/v1/list/biglist/push", `{"values":["one-too-many"]}`); code != http.StatusConflict {
		t.Fatalf("a push past MAX_LIST_LENGTH: %d, want 409", code)
	}
	for off := 0; off < 10000; off += 1000 {
		send(http.MethodGet, fmt.Sprintf("/v1/list/biglist?offset=%d&limit=1000", off), "")
	}
	send(http.MethodPost, "/v1/list/biglist/remove", `{"value":"v7"}`)
	send(http.MethodPost, "/v1/list/biglist/trim", `{"start":0,"stop":4999}`)
	send(http.MethodDelete, "/v1/hash/bighash", "")
	send(http.MethodDelete, "/v1/list/biglist", "")

	entries, err := rdb.SlowLogGet(ctx, 128).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("Redis was blocked %v by %q", e.Duration, strings.Join(e.Args[:min(len(e.Args), 3)], " "))
	}
	t.Logf("faults: big structures: a hash of 100,000 fields and a list of 10,000 values grown by 110 writes in %v, the hash read in %d pages (%d fields), the list in 10 pages, LREM over all of it, LTRIM, both deleted: %d SLOWLOG entries over %v",
		grew.Round(time.Millisecond), pages, fields, len(entries), slow)
}
