package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/servicetest"
)

// sseEvent is one event of a stream, or a comment (a heartbeat).
type sseEvent struct {
	name, id, data string
	comment        string
}

// sseStream reads a stream's events as EventSource would.
type sseStream struct {
	resp   *http.Response
	header http.Header
	events chan sseEvent
	cancel context.CancelFunc
}

// servers are the envs' HTTP servers: streams need a real connection.
var servers sync.Map // *env -> *httptest.Server

// url serves the env's router on a real listener, once, and returns its
// base URL.
func (e *env) url(t testing.TB) string {
	t.Helper()
	if s, ok := servers.Load(e); ok {
		return s.(*httptest.Server).URL
	}
	s := httptest.NewServer(e.h)
	if old, loaded := servers.LoadOrStore(e, s); loaded {
		s.Close()
		return old.(*httptest.Server).URL
	}
	t.Cleanup(func() {
		servers.Delete(e)
		s.CloseClientConnections()
		s.Close()
	})
	return s.URL
}

// open sends a GET for a stream (headers are name, value pairs) and,
// when it answers 200, reads its events in the background until the test
// ends or close, and returns the status. It records the request for the
// contract's replay.
func (e *env) open(t testing.TB, path string, headers ...string) (*sseStream, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url(t)+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := req.Clone(ctx)
	rec.RequestURI = path
	record(t, rec, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		_ = resp.Body.Close()
		return nil, resp.StatusCode
	}
	s := &sseStream{resp: resp, header: resp.Header, events: make(chan sseEvent, 1<<16), cancel: cancel}
	t.Cleanup(s.close)
	go s.read()
	return s, resp.StatusCode
}

func (s *sseStream) close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

func (s *sseStream) read() {
	raw := make(chan servicetest.Event, 1<<16)
	go servicetest.ReadEvents(s.resp.Body, raw)
	defer close(s.events)
	for ev := range raw {
		s.events <- sseEvent{name: ev.Name, id: ev.ID, data: ev.Data, comment: ev.Comment}
	}
}

// next returns the stream's next event (heartbeats skipped), failing the
// test after within.
func (s *sseStream) next(t testing.TB, within time.Duration) sseEvent {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("the stream ended; want an event")
			}
			if ev.comment != "" {
				continue
			}
			return ev
		case <-timer.C:
			t.Fatalf("no event within %v", within)
		}
	}
}

// nextOf is next, checking the event's name, and decodes its data.
func (s *sseStream) nextOf(t testing.TB, name string) map[string]any {
	t.Helper()
	ev := s.next(t, 5*time.Second)
	if ev.name != name {
		t.Fatalf("event %q (%s), want %q", ev.name, ev.data, name)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
		t.Fatalf("event %s: data is not JSON: %v: %q", name, err, ev.data)
	}
	return m
}

// quiet checks that no event comes within d.
func (s *sseStream) quiet(t testing.TB, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-s.events:
			if ok && ev.comment != "" {
				continue
			}
			t.Fatalf("event %q %s, want none", ev.name, ev.data)
		case <-timer.C:
			return
		}
	}
}

// ended waits for the stream to end.
func (s *sseStream) ended(t testing.TB, within time.Duration) {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatalf("the stream did not end within %v", within)
		}
	}
}
