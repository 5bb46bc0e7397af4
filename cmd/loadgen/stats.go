package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// shard is one worker's counts, so that workers never wait on each other.
// The interval part is reset at each live line; the total part is not.
type shard struct {
	mu       sync.Mutex
	interval *counts
	total    *counts
}

type counts struct {
	hist     *hdrhistogram.Histogram
	byStatus map[int]int64
	hits     int64
	misses   int64
	// refused are 4xx answers to requests that were not meant to be bad
	// (-bad): a missing token, a rate limit, a wrong URL.
	refused int64
}

func newCounts() *counts {
	// 1µs to 60s at 3 significant digits.
	return &counts{hist: hdrhistogram.New(1, 60_000_000, 3), byStatus: map[int]int64{}}
}

func newShard() *shard { return &shard{interval: newCounts(), total: newCounts()} }

func (s *shard) record(d time.Duration, code int, k kind) {
	us := max(d.Microseconds(), 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range []*counts{s.interval, s.total} {
		_ = c.hist.RecordValue(us) // values past 60s are clamped out; they are also timeouts
		c.byStatus[code]++
		if k != kindBad && code >= 400 && code < 500 && (k != kindRead || code != 404) {
			c.refused++
		}
		if k == kindRead {
			switch code {
			case 200:
				c.hits++
			case 404:
				c.misses++
			}
		}
	}
}

func (c *counts) merge(o *counts) {
	c.hist.Merge(o.hist)
	for k, v := range o.byStatus {
		c.byStatus[k] += v
	}
	c.hits += o.hits
	c.misses += o.misses
	c.refused += o.refused
}

// summary is what a run (or an interval) measured.
type summary struct {
	Seconds    float64 `json:"seconds"`
	Requests   int64   `json:"requests"`
	Throughput float64 `json:"throughput_rps"`
	Errors     int64   `json:"errors"`
	Refused    int64   `json:"refused"`
	// HitRatio is the share of reads that found their key (200 of 200 and
	// 404), not the near cache's hit ratio (the API's metrics have that).
	HitRatio float64          `json:"hit_ratio"`
	P50ms    float64          `json:"p50_ms"`
	P90ms    float64          `json:"p90_ms"`
	P99ms    float64          `json:"p99_ms"`
	P999ms   float64          `json:"p999_ms"`
	MaxMs    float64          `json:"max_ms"`
	ByStatus map[string]int64 `json:"by_status"`
}

// collect merges the shards' interval counts (and resets them), or their
// totals at the end of the run.
func (g *generator) collect(elapsed time.Duration, total bool) summary {
	all := newCounts()
	for _, s := range g.shards {
		s.mu.Lock()
		if total {
			all.merge(s.total)
		} else {
			all.merge(s.interval)
			s.interval = newCounts()
		}
		s.mu.Unlock()
	}
	sum := summary{Seconds: elapsed.Seconds(), ByStatus: map[string]int64{}, Refused: all.refused}
	for code, n := range all.byStatus {
		sum.Requests += n
		name := fmt.Sprint(code)
		if code == 0 {
			name = "no_answer"
		}
		sum.ByStatus[name] = n
		if code == 0 || code >= 500 {
			sum.Errors += n
		}
	}
	if elapsed > 0 {
		sum.Throughput = float64(sum.Requests) / elapsed.Seconds()
	}
	if all.hits+all.misses > 0 {
		sum.HitRatio = float64(all.hits) / float64(all.hits+all.misses)
	}
	ms := func(q float64) float64 { return float64(all.hist.ValueAtQuantile(q)) / 1000 }
	sum.P50ms, sum.P90ms, sum.P99ms, sum.P999ms = ms(50), ms(90), ms(99), ms(99.9)
	sum.MaxMs = float64(all.hist.Max()) / 1000
	return sum
}

// line is the live line: rate, errors, hit ratio, p50 and p99.
func (s summary) line() string {
	return fmt.Sprintf("rate %8.0f/s  errors %-5d  refused %-5d  found %5.1f%%  p50 %7.3fms  p99 %7.3fms",
		s.Throughput, s.Errors, s.Refused, s.HitRatio*100, s.P50ms, s.P99ms)
}

func (s summary) print(w io.Writer) {
	codes := make([]string, 0, len(s.ByStatus))
	for c := range s.ByStatus {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	parts := make([]string, 0, len(codes))
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%s:%d", c, s.ByStatus[c]))
	}
	fmt.Fprintf(w, "\nsummary: %d requests in %.1fs = %.0f req/s, errors (5xx or no answer) %d, refused (4xx not asked for with -bad) %d, reads that found their key %.1f%%\n",
		s.Requests, s.Seconds, s.Throughput, s.Errors, s.Refused, s.HitRatio*100)
	fmt.Fprintf(w, "latency: p50 %.3fms  p90 %.3fms  p99 %.3fms  p99.9 %.3fms  max %.3fms\n",
		s.P50ms, s.P90ms, s.P99ms, s.P999ms, s.MaxMs)
	fmt.Fprintf(w, "status:  %s\n", strings.Join(parts, "  "))
}

// check fails the run when it sent nothing, or when the share of failed
// requests (5xx or no answer), or of those refused with a 4xx loadgen did
// not mean to cause, is over maxErrors: a run against an API it cannot use
// (no token, a rate limit) measured nothing.
func (s summary) check(maxErrors float64) error {
	if s.Requests == 0 {
		return errors.New("no request was answered or sent")
	}
	if share := float64(s.Refused) / float64(s.Requests); share > maxErrors {
		return fmt.Errorf("%d of %d requests (%.1f%%) were refused with a 4xx loadgen did not mean to cause (401 or 403: pass -token; 429: the API's RATE_LIMIT_RPS), over -max-errors %.1f%%",
			s.Refused, s.Requests, share*100, maxErrors*100)
	}
	if share := float64(s.Errors) / float64(s.Requests); share > maxErrors {
		return fmt.Errorf("%d of %d requests (%.1f%%) failed with a 5xx or no answer, over -max-errors %.1f%%",
			s.Errors, s.Requests, share*100, maxErrors*100)
	}
	return nil
}

func (s summary) writeJSON(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600) //nolint:gosec // -json names the file to write.
}
