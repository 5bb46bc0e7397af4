package observability

import (
	"context"
	"fmt"
	"io"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// TracingConfig says where spans go. The sampler is not here: the SDK reads
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG itself, and the OTLP
// exporters read OTEL_EXPORTER_OTLP_* (endpoint, headers, TLS, timeouts).
type TracingConfig struct {
	ServiceName string
	Version     string
	// Exporter is "otlp", "console" or "none". With "none" spans are still
	// made, so that logs and exemplars carry trace ids, but nothing leaves
	// the process.
	Exporter string
	// Protocol is "http/protobuf" or "grpc", for Exporter "otlp".
	Protocol string
	// Console is where the "console" exporter writes.
	Console io.Writer
	// BatchSize is how many spans one export carries (0: the SDK's default).
	BatchSize int
}

// NewTracerProvider builds the SDK tracer provider. The caller must Shutdown
// it to flush the spans still batched.
func NewTracerProvider(ctx context.Context, cfg TracingConfig) (*sdktrace.TracerProvider, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(cfg.ServiceName), semconv.ServiceVersion(cfg.Version)),
		// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the above.
		resource.WithFromEnv(),
		resource.WithHost(),
		resource.WithProcessPID(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	var exp sdktrace.SpanExporter
	switch cfg.Exporter {
	case "otlp":
		if cfg.Protocol == "grpc" {
			exp, err = otlptracegrpc.New(ctx)
		} else {
			exp, err = otlptracehttp.New(ctx)
		}
	case "console":
		exp, err = stdouttrace.New(stdouttrace.WithWriter(cfg.Console))
	}
	if err != nil {
		return nil, fmt.Errorf("trace exporter %s: %w", cfg.Exporter, err)
	}
	if exp != nil {
		var bopts []sdktrace.BatchSpanProcessorOption
		if cfg.BatchSize > 0 {
			bopts = append(bopts, sdktrace.WithMaxExportBatchSize(cfg.BatchSize))
		}
		opts = append(opts, sdktrace.WithBatcher(exp, bopts...))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

// Propagator is the W3C trace context and baggage propagator, used to
// continue an incoming traceparent.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}
