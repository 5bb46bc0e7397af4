package api

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/elnormous/contenttype"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
	"github.com/go-json-experiment/json"
	"go.uber.org/zap/zapcore"
)

// The streams (Server-Sent Events) bypass MAX_INFLIGHT_REQUESTS, which
// bounds short requests, and are bounded by MAX_SSE_STREAMS instead: each
// holds a goroutine, its connection's buffers and a few queued messages
// until its client leaves (bench/results.md has the memory one takes).

// streamBuffer is how many messages a channel's subscriber may have queued
// before it is dropped as a slow reader: a burst this long is absorbed
// while its connection's buffers are full.
const streamBuffer = 64

// queueBudget bounds the bytes of the messages the instance's streams hold,
// queued or being written, each message counted once however many streams
// hold it: 16 MiB, or room for sixteen of the largest. A stream that is
// behind while the budget is spent is dropped as a slow reader; a stream
// that holds nothing still takes each message, so the streams hold at most
// the budget plus MAX_SSE_STREAMS messages (docs/operations.md).
func (h *handler) queueBudget() int { return max(16<<20, 16*h.cfg.MaxMessageBytes) }

// sseRetry is the reconnection delay a stream asks of EventSource.
const sseRetry = 2 * time.Second

const eventStream = "text/event-stream"

// acceptsEventStream refuses a request whose Accept header leaves out
// text/event-stream: the routes answer nothing else.
func acceptsEventStream(c *gin.Context) error {
	if negotiate(c, eventStreamType) < 0 {
		return &Error{Code: CodeNotAcceptable, Message: "this route answers only text/event-stream: send Accept: text/event-stream"}
	}
	return nil
}

var eventStreamType = []contenttype.MediaType{contenttype.NewMediaType(eventStream)}

// headOnly answers HEAD on a stream's route as GET would begin, with no
// stream behind it: the checks GET makes have passed.
func headOnly(c *gin.Context) bool {
	if c.Request.Method != http.MethodHead {
		return false
	}
	streamHeaders(c)
	return true
}

// streamHeaders starts a stream's answer: 200 as an event stream that no
// proxy should buffer.
func streamHeaders(c *gin.Context) {
	c.Header("Content-Type", eventStream)
	c.Header("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
}

// serveStream answers with a stream of kind and hands it what src gives
// (ok false once src is closed) until handle says the stream is over, the
// client leaves, or the service stops (an end event); while src is quiet
// it sends a heartbeat every SSE_HEARTBEAT.
func serveStream[T any](h *handler, c *gin.Context, kind string, src <-chan T, handle func(s *stream, v T, ok bool) bool) {
	s, err := h.openStream(c, kind)
	defer s.close()
	if err != nil {
		s.writeFailed(err)
		return
	}
	beat := time.NewTicker(h.cfg.SSEHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-c.Request.Context().Done():
			return
		case <-h.done:
			_ = s.shutdown()
			return
		case <-beat.C:
			if err := s.heartbeat(); err != nil {
				s.writeFailed(err)
				return
			}
		case v, ok := <-src:
			if !handle(s, v, ok) {
				return
			}
		}
	}
}

// stream writes Server-Sent Events to one client.
type stream struct {
	h    *handler
	c    *gin.Context
	rc   *http.ResponseController
	kind string
}

// openStream answers 200 with the event stream's headers and its retry
// field, and counts the stream as open until close.
func (h *handler) openStream(c *gin.Context, kind string) (*stream, error) {
	s := &stream{h: h, c: c, rc: http.NewResponseController(c.Writer), kind: kind}
	// The server's read and write timeouts bound requests, not streams:
	// a stream lives as long as its client reads, each write bounded by
	// SSE_WRITE_TIMEOUT.
	_ = s.rc.SetReadDeadline(time.Time{})
	streamHeaders(c)
	h.metrics.StreamOpened(kind)
	c.Set(streamKey, true)
	return s, s.write(fmt.Appendf(nil, "retry: %d\n\n", sseRetry.Milliseconds()))
}

func (s *stream) close() { s.h.metrics.StreamClosed(s.kind) }

// streamKey marks a request answered with a stream, for the metrics.
const streamKey = "dubebox.stream"

// write sends b and flushes it within SSE_WRITE_TIMEOUT.
func (s *stream) write(b []byte) error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.h.cfg.SSEWriteTimeout)); err != nil {
		return err
	}
	if _, err := s.c.Writer.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

// event sends one event: its name, its id when not empty, and data as
// JSON on one data line (JSON escapes every line break). The JSON is
// encoded straight to the connection's buffer, so that a large message
// sent to many streams is never copied once per stream.
func (s *stream) event(name, id string, data any) error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.h.cfg.SSEWriteTimeout)); err != nil {
		return err
	}
	w := s.c.Writer
	head := "event: " + name + "\n"
	if id != "" {
		head += "id: " + id + "\n"
	}
	if _, err := w.WriteString(head + "data: "); err != nil {
		return err
	}
	if err := json.MarshalWrite(w, data, encodeOptions); err != nil {
		return err
	}
	if _, err := w.WriteString("\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}

// heartbeat sends a comment, which EventSource ignores and proxies take
// as traffic.
func (s *stream) heartbeat() error { return s.write([]byte(": heartbeat\n\n")) }

type endEvent struct {
	Reason string `json:"reason"`
}

type streamError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// shutdown ends the stream with an end event: the instance is stopping,
// and EventSource reconnects (to another instance, behind a balancer).
func (s *stream) shutdown() error {
	return s.event("end", "", endEvent{Reason: "shutdown"})
}

// fail ends the stream on err: an error event the client can read (its
// code as an error answer's), the drop counted, and the request's log line
// at warn.
func (s *stream) fail(err error) {
	reason := "redis_lost"
	if errors.Is(err, store.ErrSlowReader) {
		reason = "slow_reader"
	}
	s.h.metrics.Dropped(s.kind, reason)
	apiErr, _ := toAPIError(err)
	if errors.Is(err, store.ErrSlowReader) {
		apiErr = Error{Code: CodeOverloaded, Message: "this stream fell too far behind and was dropped; reconnect"}
	}
	s.c.Set(failureKey, &failure{err: err, level: zapcore.WarnLevel})
	_ = s.event("error", "", streamError{Code: apiErr.Code, Message: apiErr.Message})
}

// writeFailed notes that a write to the client failed: a client that
// stopped reading (the deadline passed) is dropped and counted; one that
// left is not news.
func (s *stream) writeFailed(err error) {
	// net/http cancels the request's context on any failed write, so
	// only the error tells a client that stopped reading from one that
	// left.
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return
	}
	s.h.metrics.Dropped(s.kind, "slow_reader")
	s.c.Set(failureKey, &failure{err: fmt.Errorf("stream dropped: %w", err), level: zapcore.WarnLevel})
}
