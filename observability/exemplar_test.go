package observability

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/trace"
)

func sampledContext(t *testing.T, id byte) context.Context {
	t.Helper()
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{id, 1},
		SpanID:     trace.SpanID{id, 2},
		TraceFlags: trace.FlagsSampled,
	})
	return trace.ContextWithSpanContext(context.Background(), sc)
}

// exemplarTraces returns the trace id of each bucket's exemplar, "" where
// a bucket has none.
func exemplarTraces(t *testing.T, h prometheus.Histogram) []string {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range m.GetHistogram().GetBucket() {
		id := ""
		for _, l := range b.GetExemplar().GetLabel() {
			if l.GetName() == "trace_id" {
				id = l.GetValue()
			}
		}
		got = append(got, id)
	}
	return got
}

func TestExemplarGate(t *testing.T) {
	t.Parallel()
	buckets := []float64{0.001, 0.01, 0.1}
	g := newExemplarGate(buckets)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Help: "A histogram under test.", Buckets: buckets})
	first, second := sampledContext(t, 1), sampledContext(t, 2)
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{3}, SpanID: trace.SpanID{3},
	}))

	g.observe(unsampled, h, 0.0005) // no exemplar: not sampled
	g.observe(first, h, 0.0005)     // the first in bucket 0
	g.observe(second, h, 0.0007)    // same bucket within the interval: counted, no new exemplar
	g.observe(second, h, 0.05)      // another bucket: its own exemplar

	got := exemplarTraces(t, h)
	want := []string{trace.TraceID{1, 1}.String(), "", trace.TraceID{2, 1}.String()}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("bucket %v: exemplar trace %q, want %q", buckets[i], got[i], want[i])
		}
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	if c := m.GetHistogram().GetSampleCount(); c != 4 {
		t.Errorf("sample count %d, want 4: the gate must never drop an observation", c)
	}

	// After the interval the bucket takes a new exemplar.
	last := g.last[h]
	last[0].Store(last[0].Load() - int64(ExemplarInterval))
	g.observe(second, h, 0.0006)
	if got, want := exemplarTraces(t, h)[0], (trace.TraceID{2, 1}).String(); got != want {
		t.Errorf("after the interval bucket 0 has exemplar %q, want %q", got, want)
	}
}
