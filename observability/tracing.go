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

// TracingConfig says which spans are kept and where they go. Each field's
// env tag is the variable that sets it (internal/config reads them). The
// OTLP exporters read OTEL_EXPORTER_OTLP_* (endpoint, headers, TLS,
// timeouts) themselves.
type TracingConfig struct {
	ServiceName string `env:"OTEL_SERVICE_NAME" envDefault:"dubebox"`
	Version     string
	// Exporter is "otlp", "console" or "none". With "none" spans are still
	// made, so that logs and exemplars carry trace ids, but nothing leaves
	// the process. Unset, it is "otlp" when an OTLP endpoint is set.
	Exporter string `env:"OTEL_TRACES_EXPORTER" valid:"oneof=otlp|console|none,optional"`
	// Protocol is "http/protobuf" or "grpc", for Exporter "otlp".
	Protocol string `env:"OTEL_EXPORTER_OTLP_PROTOCOL" envDefault:"http/protobuf" valid:"oneof=http/protobuf|grpc"`
	// Console is where the "console" exporter writes.
	Console io.Writer
	// BatchSize is how many spans one export carries: the standard
	// OTEL_BSP_MAX_EXPORT_BATCH_SIZE with a default of the service's own.
	// The SDK's default is 512. Marshalling that many spans is one burst of
	// CPU that requests queue behind: under the benchmark's open-loop load
	// at half the maximum, batches of 128 cut the p99 from 8-12 ms to 6-7 ms
	// at the same throughput (bench/results.md). The SDK queues at most 2048
	// spans.
	BatchSize int `env:"OTEL_BSP_MAX_EXPORT_BATCH_SIZE" envDefault:"128" valid:"1..2048"`
	// Sampler and SamplerArg are the standard OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG, with the service's own default: a tenth of
	// the traces that start here, and the caller's decision, sampled or
	// not, for those that continue its traceparent. Every request is still
	// counted and timed in the metrics and logged with its trace id; what
	// sampling saves is the span export, which at 100% took about a
	// quarter of the server's CPU on a cached GET (bench/results.md). The
	// SDK would read the same variables, but only with its own default
	// (everything) and without saying at start that a value is wrong.
	// Empty, the SDK decides.
	Sampler    string  `env:"OTEL_TRACES_SAMPLER" envDefault:"parentbased_traceidratio" valid:"oneof=always_on|always_off|traceidratio|parentbased_always_on|parentbased_always_off|parentbased_traceidratio"`
	SamplerArg float64 `env:"OTEL_TRACES_SAMPLER_ARG" envDefault:"0.1" valid:"0..1"`
	// AttributeLimit is the standard OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT with
	// a default of the service's own: a span attribute (a URL path a client
	// chose, say) is cut to this many bytes. The SDK's default is no
	// limit.
	AttributeLimit int `env:"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT" envDefault:"1024" valid:"1..1048576"`
}

// sampler is the SDK sampler that Sampler and SamplerArg name, or nil to
// leave the choice to the SDK.
func (c TracingConfig) sampler() sdktrace.Sampler {
	ratio := sdktrace.TraceIDRatioBased(c.SamplerArg)
	switch c.Sampler {
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return ratio
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample())
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(ratio)
	}
	return nil
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
	limits := sdktrace.NewSpanLimits()
	limits.AttributeValueLengthLimit = cfg.AttributeLimit
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithRawSpanLimits(limits)}
	if s := cfg.sampler(); s != nil {
		opts = append(opts, sdktrace.WithSampler(s))
	}
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
