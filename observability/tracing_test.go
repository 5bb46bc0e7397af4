package observability_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/dubebox/dubebox/observability"
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
