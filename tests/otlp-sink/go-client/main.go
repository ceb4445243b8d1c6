// otlp-go-client: sends a known span tree through the OpenTelemetry Go SDK's
// otlptracegrpc exporter (what kubelet and containerd use) and prints, as
// one JSON line per span, what it sent, so a test can compare it with what
// otlp-sink received.
//
//	otlp-go-client --endpoint 127.0.0.1:PORT [--gzip] [--children N]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

type sent struct {
	Name          string         `json:"name"`
	TraceID       string         `json:"trace_id"`
	SpanID        string         `json:"span_id"`
	ParentSpanID  string         `json:"parent_span_id"`
	Kind          string         `json:"kind"`
	StartUnixNano int64          `json:"start_unix_nano"`
	EndUnixNano   int64          `json:"end_unix_nano"`
	StatusCode    string         `json:"status_code"`
	StatusMessage string         `json:"status_message"`
	Attributes    map[string]any `json:"attributes"`
}

func main() {
	endpoint := flag.String("endpoint", "127.0.0.1:4317", "OTLP/gRPC endpoint host:port")
	gzip := flag.Bool("gzip", false, "compress requests with gzip")
	children := flag.Int("children", 2, "child spans under the root")
	service := flag.String("service", "otlp-go-client", "resource service.name")
	host := flag.String("host", "test-host", "resource host.name")
	flag.Parse()
	if err := run(*endpoint, *gzip, *children, *service, *host); err != nil {
		fmt.Fprintln(os.Stderr, "otlp-go-client:", err)
		os.Exit(1)
	}
}

func run(endpoint string, gzip bool, children int, service, host string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The same options kubelet's component-base tracing uses: insecure gRPC.
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure()}
	if gzip {
		opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return fmt.Errorf("exporter: %w", err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", service),
		attribute.String("host.name", host),
	)
	// A recorder next to the exporter: what the SDK handed to the exporter.
	rec := &recorder{}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithResource(res),
		sdktrace.WithBatcher(exp),
		sdktrace.WithSyncer(rec),
	)
	tr := tp.Tracer("podtrace/otlp-go-client")

	// Explicit timestamps: the sink must hand back exactly these nanoseconds.
	base := time.Now().Truncate(time.Microsecond).Add(123 * time.Nanosecond)
	rctx, root := tr.Start(ctx, "root", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(base),
		trace.WithAttributes(
			attribute.String("k8s.pod.uid", "00000000-0000-4000-8000-000000000001"),
			attribute.Bool("flag", true),
			attribute.Int64("count", -42),
			attribute.Float64("ratio", 0.25),
			attribute.StringSlice("list", []string{"a", "b"}),
		))
	for i := 0; i < children; i++ {
		_, c := tr.Start(rctx, fmt.Sprintf("child-%d", i), trace.WithSpanKind(trace.SpanKindClient),
			trace.WithTimestamp(base.Add(time.Duration(i+1)*time.Millisecond)),
			trace.WithAttributes(attribute.Int("index", i)))
		if i%2 == 1 {
			c.SetStatus(codes.Error, "child failed")
		}
		c.End(trace.WithTimestamp(base.Add(time.Duration(i+1)*time.Millisecond + 500*time.Microsecond)))
	}
	root.SetStatus(codes.Ok, "")
	root.End(trace.WithTimestamp(base.Add(time.Duration(children+1) * time.Millisecond)))

	// Shutdown flushes the batcher: Export has been answered when it returns.
	if err := tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown (export): %w", err)
	}
	if len(rec.spans) != children+1 {
		return errors.New("recorder missed spans")
	}
	enc := json.NewEncoder(os.Stdout)
	for _, s := range rec.spans {
		attrs := map[string]any{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.AsInterface()
		}
		parent := ""
		if s.Parent().IsValid() {
			parent = s.Parent().SpanID().String()
		}
		st := map[codes.Code]string{codes.Unset: "unset", codes.Ok: "ok", codes.Error: "error"}[s.Status().Code]
		if err := enc.Encode(sent{
			Name:          s.Name(),
			TraceID:       s.SpanContext().TraceID().String(),
			SpanID:        s.SpanContext().SpanID().String(),
			ParentSpanID:  parent,
			Kind:          s.SpanKind().String(),
			StartUnixNano: s.StartTime().UnixNano(),
			EndUnixNano:   s.EndTime().UnixNano(),
			StatusCode:    st,
			StatusMessage: s.Status().Description,
			Attributes:    attrs,
		}); err != nil {
			return err
		}
	}
	return nil
}

// recorder is a SpanExporter that keeps what it is given.
type recorder struct{ spans []sdktrace.ReadOnlySpan }

func (r *recorder) ExportSpans(_ context.Context, s []sdktrace.ReadOnlySpan) error {
	r.spans = append(r.spans, s...)
	return nil
}
func (r *recorder) Shutdown(context.Context) error { return nil }
