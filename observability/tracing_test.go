package observability_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/dubebox/dubebox/internal/config"
	"github.com/dubebox/dubebox/observability"
	"go.opentelemetry.io/otel/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// TestSpanBatchSize checks that BatchSize bounds how many spans one OTLP
// export carries, as OTEL_BSP_MAX_EXPORT_BATCH_SIZE promises in the README.
func TestSpanBatchSize(t *testing.T) {
	var mu sync.Mutex
	var batches []int
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n := 0
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				n += len(ss.GetSpans())
			}
		}
		mu.Lock()
		batches = append(batches, n)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(sink.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.URL)

	ctx := context.Background()
	tp, err := observability.NewTracerProvider(ctx, observability.TracingConfig{
		ServiceName: "test", Version: "test", Exporter: "otlp", Protocol: "http/protobuf", BatchSize: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	tracer := tp.Tracer("test")
	for range 5 {
		_, span := tracer.Start(ctx, "op")
		span.End()
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, n := range batches {
		if n > 2 {
			t.Errorf("an export carried %d spans, want at most 2 (exports: %v)", n, batches)
		}
		total += n
	}
	if total != 5 {
		t.Errorf("the sink received %d spans in %v, want 5", total, batches)
	}
}

// TestDefaultSampler checks the tracer provider built from the default
// settings (parentbased_traceidratio at 0.1, which internal/config's tests
// pin): about a tenth of the traces that start here are kept, and a
// caller's decision is followed either way.
func TestDefaultSampler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The settings as an empty environment leaves them.
	cfg, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	tp, err := observability.NewTracerProvider(ctx, cfg.Tracing)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.Shutdown(ctx) })
	tracer := tp.Tracer("test")
	const roots = 20000
	kept := 0
	for range roots {
		_, span := tracer.Start(ctx, "op")
		if span.SpanContext().IsSampled() {
			kept++
		}
		span.End()
	}
	// Trace ids are random: 10% of 20,000 is 2,000 with a standard
	// deviation of about 42; 1,700 to 2,300 is over seven of them.
	if kept < 1700 || kept > 2300 {
		t.Errorf("kept %d of %d root traces, want about a tenth", kept, roots)
	}
	for _, sampled := range []bool{true, false} {
		flags := trace.TraceFlags(0)
		if sampled {
			flags = trace.FlagsSampled
		}
		parent := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: flags, Remote: true,
		})
		kept := 0
		for range 100 {
			_, span := tracer.Start(trace.ContextWithRemoteSpanContext(ctx, parent), "op")
			if span.SpanContext().IsSampled() {
				kept++
			}
			span.End()
		}
		if want := map[bool]int{true: 100, false: 0}[sampled]; kept != want {
			t.Errorf("under a remote parent with sampled=%v: kept %d of 100, want %d", sampled, kept, want)
		}
	}
}
