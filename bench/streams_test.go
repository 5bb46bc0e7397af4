//go:build bench

package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// streamFigures are what one instance does with many open streams.
type streamFigures struct {
	streams, messages int
	// p50 and p99 of every delivery, and the median over messages of the
	// time until the last subscriber had it, from the publish being sent.
	p50, p99, allMedian float64 // ms
	// RSS before any stream, with the streams on one channel, and with
	// as many on a channel each (each its own Redis subscription).
	rssBase, rssOne, rssMany float64 // MiB
}

// perStream is the memory one stream takes, in KiB, in the costlier case:
// the streams on one channel over none, or those on a channel each over
// those on one.
func (f streamFigures) perStream() float64 {
	return max(f.rssOne-f.rssBase, f.rssMany-f.rssOne) * 1024 / float64(f.streams)
}

// in128MiB is how many streams fit in 128 MiB of RSS beside what the
// instance holds without any.
func (f streamFigures) in128MiB() float64 {
	return (128 - f.rssBase) * 1024 / f.perStream()
}

// measureStreams opens n streams on one channel of one instance, publishes
// messages one at a time through the API and times each delivery from the
// moment its publish was sent; then it reads the RSS with the streams on
// one channel and on a channel each.
func measureStreams(t *testing.T, pl plan, bin, redisAddr, otlp string) streamFigures {
	t.Helper()
	n, messages := 1000, 50
	if pl.smoke {
		n, messages = 50, 5
	}
	srv := startServer(t, bin, redisAddr, []string{
		"LOG_LEVEL=warn", "OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp,
		"MAX_SSE_STREAMS=" + strconv.Itoa(2*n+10), "MAX_CONNECTIONS=" + strconv.Itoa(2*n+100),
	})
	defer srv.stop()
	f := streamFigures{streams: n, messages: messages, rssBase: srv.rss(t)}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 4 * n}}
	sent := make([]time.Time, messages)
	var mu sync.Mutex
	var lat []float64
	last := make([]float64, messages)
	var ready, done sync.WaitGroup
	open := func(path string, record bool) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.base+path, nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := client.Do(req) //nolint:bodyclose // closed by its reader goroutine, or at once when refused.
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			return
		}
		body := resp.Body
		if resp.StatusCode != http.StatusOK {
			_ = body.Close()
			t.Errorf("GET %s: %d", path, resp.StatusCode)
			return
		}
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			defer func() { _ = body.Close() }()
			r := bufio.NewReader(body)
			_, _ = r.ReadString('\n') // retry:
			ready.Done()
			got := 0
			for record && got < messages {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				rest, ok := strings.CutPrefix(line, `data: {"channel":"fan","message":"`)
				if !ok {
					continue
				}
				i, _ := strconv.Atoi(rest[:strings.IndexByte(rest, '"')])
				ms := float64(time.Since(sent[i]).Microseconds()) / 1000
				mu.Lock()
				lat = append(lat, ms)
				last[i] = max(last[i], ms)
				mu.Unlock()
				got++
			}
			if !record {
				_, _ = r.ReadString(0) // until the test closes it
			}
		}()
	}
	for range n {
		open("/v1/channels/fan/events", true)
	}
	ready.Wait()
	time.Sleep(500 * time.Millisecond)
	f.rssOne = srv.rss(t)
	for i := range messages {
		sent[i] = time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.base+"/v1/channels/fan/messages",
			strings.NewReader(fmt.Sprintf(`{"message":"%d"}`, i)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("publish: %v %v", err, resp)
		}
		_ = resp.Body.Close()
		time.Sleep(100 * time.Millisecond)
	}
	waited := make(chan struct{})
	go func() { done.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatalf("not every subscriber received every message in 30 s")
	}
	if len(lat) != n*messages {
		t.Fatalf("%d deliveries, want %d", len(lat), n*messages)
	}
	slices.Sort(lat)
	f.p50, f.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	f.allMedian = median(last)

	// As many streams, each on a channel of its own.
	for i := range n {
		open("/v1/channels/own"+strconv.Itoa(i)+"/events", false)
	}
	ready.Wait()
	time.Sleep(500 * time.Millisecond)
	f.rssMany = srv.rss(t)
	cancel()
	return f
}

// rss reads the process's resident set now (VmRSS) in MiB.
func (s *server) rss(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.proc.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func (f streamFigures) render() string {
	return fmt.Sprintf("\n**Streams** (one instance, telemetry as shipped): %d Server-Sent Event streams subscribed to one channel, %d messages published one at a time through the API; from each publish being sent to its delivery at a subscriber, p50 %.2f ms, p99 %.2f ms, and until every subscriber had it, median %.2f ms. RSS %.1f MiB before the streams, %.1f MiB with them on one channel, %.1f MiB with as many again on a channel each (each its own Redis subscription): about %.0f KiB a stream, so 128 MiB holds about %.0f streams.\n",
		f.streams, f.messages, f.p50, f.p99, f.allMedian, f.rssBase, f.rssOne, f.rssMany, f.perStream(), f.in128MiB())
}
