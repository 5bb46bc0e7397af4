// Command jaeger is the Compose test's stand-in for the jaegertracing/jaeger
// image, which cannot be pulled where the test runs and takes many minutes
// to build. It does what the test needs of Jaeger and nothing more: it
// receives OTLP/HTTP on :4318 (POST /v1/traces, protobuf, optionally
// gzipped), remembers each trace id with its service and span names, and
// answers Jaeger's query API on :16686 for them (GET /api/services and GET
// /api/traces/{id}). It is never part of the stack a user runs.
package main

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// maxTraces bounds what the stand-in remembers; past it the oldest trace
// is forgotten first.
const maxTraces = 100000

type store struct {
	mu       sync.Mutex
	traces   map[string][]span
	order    []string // trace ids, oldest first
	services map[string]bool
}

type span struct {
	Service string `json:"service"`
	Name    string `json:"operationName"`
	SpanID  string `json:"spanID"`
}

func (s *store) receive(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, 64<<20)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		service := "unknown"
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		s.services[service] = true
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				id := hex.EncodeToString(sp.GetTraceId())
				if _, ok := s.traces[id]; !ok {
					if len(s.order) >= maxTraces {
						delete(s.traces, s.order[0])
						s.order = s.order[1:]
					}
					s.order = append(s.order, id)
				}
				s.traces[id] = append(s.traces[id], span{Service: service, Name: sp.GetName(), SpanID: hex.EncodeToString(sp.GetSpanId())})
			}
		}
	}
	s.mu.Unlock()
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (s *store) query(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.URL.Path == "/api/services":
		names := make([]string, 0, len(s.services))
		for n := range s.services {
			names = append(names, n)
		}
		sort.Strings(names)
		writeJSON(w, http.StatusOK, map[string]any{"data": names, "total": len(names)})
	case strings.HasPrefix(r.URL.Path, "/api/traces/"):
		id := strings.TrimPrefix(r.URL.Path, "/api/traces/")
		spans, ok := s.traces[id]
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"data": nil, "errors": []map[string]any{{"code": 404, "msg": "trace not found"}}})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": []map[string]any{{"traceID": id, "spans": spans}}})
	case r.URL.Path == "/api/stats":
		// Not Jaeger's: how much the stand-in received, for the test's summary.
		writeJSON(w, http.StatusOK, map[string]any{"traces": len(s.traces), "services": len(s.services)})
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "jaeger stand-in:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	s := &store{traces: map[string][]span{}, services: map[string]bool{}}
	otlp := http.NewServeMux()
	otlp.HandleFunc("/v1/traces", s.receive)
	servers := []*http.Server{
		{Addr: ":4318", Handler: otlp, ReadHeaderTimeout: 5 * time.Second},
		{Addr: ":16686", Handler: http.HandlerFunc(s.query), ReadHeaderTimeout: 5 * time.Second},
	}
	errc := make(chan error, len(servers))
	for _, srv := range servers {
		go func() { errc <- srv.ListenAndServe() }()
	}
	fmt.Println("jaeger stand-in: OTLP/HTTP on :4318, query API on :16686")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range servers {
		errs = append(errs, srv.Shutdown(sctx))
	}
	return errors.Join(errs...)
}
