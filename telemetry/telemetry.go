package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/projector-dev/projector/buildinfo"
)

// Options configures Setup. The zero value is usable; the environment (see the package
// documentation) decides what is exported.
type Options struct {
	// ServiceName is the service.name resource attribute unless OTEL_SERVICE_NAME is set.
	// Empty means "unknown_service:<executable name>", as in the OpenTelemetry SDK.
	ServiceName string

	// ServiceVersion is the service.version resource attribute; default:
	// Projector's build version (package buildinfo) (OTEL_RESOURCE_ATTRIBUTES
	// may override it).
	ServiceVersion string

	// SetGlobal installs the providers, the W3C TraceContext+Baggage propagator and an error
	// handler that logs to Logger as the otel package's globals. Off by default: pass
	// TracerProvider, MeterProvider and Propagator to what needs them instead.
	SetGlobal bool

	// Logger receives warnings about the environment and, with SetGlobal, the SDK's export
	// errors. Nil means slog.Default().
	Logger *slog.Logger

	// ConsoleWriter is where the console exporters write. Nil means os.Stdout.
	ConsoleWriter io.Writer
}

func (o *Options) setDefaults() {
	if o.ServiceName == "" {
		o.ServiceName = "unknown_service:" + filepath.Base(os.Args[0])
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ConsoleWriter == nil {
		o.ConsoleWriter = os.Stdout
	}
}

// Telemetry holds the providers made by Setup. Its methods are safe for concurrent use.
type Telemetry struct {
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	propagator     propagation.TextMapPropagator
	prometheus     http.Handler

	// Flush and stop functions of the SDK providers, traces first; empty when disabled.
	flushes   []func(context.Context) error
	shutdowns []func(context.Context) error

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup configures tracing and metrics from opts and the OTEL_* environment variables. An
// invalid variable is an error naming it (an *EnvError; several are joined). The caller must
// call Shutdown to flush what is buffered. ctx bounds the creation of the exporters only
// (exporters connect lazily, so an unreachable collector does not make Setup fail).
func Setup(ctx context.Context, opts Options) (*Telemetry, error) {
	opts.setDefaults()
	env, err := readEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	if env.disabledInvalid != "" {
		opts.Logger.Warn("telemetry: OTEL_SDK_DISABLED is neither true nor false; the SDK stays enabled",
			"value", env.disabledInvalid)
	}

	t := &Telemetry{
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	if env.disabled {
		t.tracerProvider = tracenoop.NewTracerProvider()
		t.meterProvider = metricnoop.NewMeterProvider()
		t.prometheus = promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{})
	} else if err := t.build(ctx, opts, env); err != nil {
		// Stop whatever was built before the failure.
		return nil, errors.Join(err, t.Shutdown(context.WithoutCancel(ctx)))
	}

	if opts.SetGlobal {
		otel.SetTracerProvider(t.tracerProvider)
		otel.SetMeterProvider(t.meterProvider)
		otel.SetTextMapPropagator(t.propagator)
		logger := opts.Logger
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			logger.Error("opentelemetry", "err", err)
		}))
	}
	opts.Logger.Debug("telemetry configured", "disabled", env.disabled,
		"traces", env.traceExporters, "traces_protocol", env.traceProtocol,
		"metrics", env.metricExporters, "metrics_protocol", env.metricProtocol)
	return t, nil
}

func (t *Telemetry) build(ctx context.Context, opts Options, env envConfig) error {
	res, err := newResource(ctx, opts)
	if err != nil {
		return err
	}

	// Traces.
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if env.sampler != nil {
		tpOpts = append(tpOpts, sdktrace.WithSampler(env.sampler))
	}
	for _, name := range env.traceExporters {
		exp, err := newSpanExporter(ctx, name, env.traceProtocol, opts.ConsoleWriter)
		if err != nil {
			return err
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}
	if len(env.traceExporters) == 0 {
		// Nothing would receive a span: a no-op provider, so that
		// components that trace (the runner, kotel) skip the work.
		t.tracerProvider = tracenoop.NewTracerProvider()
	} else {
		tp := sdktrace.NewTracerProvider(tpOpts...)
		t.tracerProvider = tp
		t.flushes = append(t.flushes, tp.ForceFlush)
		t.shutdowns = append(t.shutdowns, tp.Shutdown)
	}

	// Metrics: the Prometheus reader always, push exporters as configured.
	registry := prometheus.NewRegistry()
	// The Go runtime, the process (CPU, memory, open files) and which build
	// runs: present from the start, before any projection metric.
	build := buildinfo.Get()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "projector_build_info",
		Help: "The running build of Projector: always 1, with its version, VCS revision and Go version as labels.",
		ConstLabels: prometheus.Labels{"version": build.Version, "revision": build.Revision, "goversion": build.GoVersion,
			"service": opts.ServiceName},
	})
	buildInfo.Set(1)
	if err := registry.Register(buildInfo); err != nil {
		return fmt.Errorf("telemetry: build info: %w", err)
	}
	if err := registry.Register(collectors.NewGoCollector()); err != nil {
		return fmt.Errorf("telemetry: Go collector: %w", err)
	}
	if err := registry.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return fmt.Errorf("telemetry: process collector: %w", err)
	}
	promExp, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	t.prometheus = promhttp.HandlerFor(registry, promhttp.HandlerOpts{})
	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp)}
	for _, name := range env.metricExporters {
		exp, err := newMetricExporter(ctx, name, env.metricProtocol, opts.ConsoleWriter)
		if err != nil {
			return err
		}
		mpOpts = append(mpOpts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	mp := sdkmetric.NewMeterProvider(mpOpts...)
	t.meterProvider = mp
	t.flushes = append(t.flushes, mp.ForceFlush)
	t.shutdowns = append(t.shutdowns, mp.Shutdown)
	return nil
}

// newResource: Options first, then OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over them.
func newResource(ctx context.Context, opts Options) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{attribute.String("service.name", opts.ServiceName)}
	version := opts.ServiceVersion
	if version == "" {
		version = buildinfo.Get().Version
	}
	attrs = append(attrs, attribute.String("service.version", version))
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...),
		resource.WithFromEnv(),
	)
	if errors.Is(err, resource.ErrPartialResource) {
		return nil, &EnvError{Var: "OTEL_RESOURCE_ATTRIBUTES", Value: os.Getenv("OTEL_RESOURCE_ATTRIBUTES"),
			Reason: "want key=value pairs separated by commas, values percent-encoded", Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

func newSpanExporter(ctx context.Context, name, protocol string, console io.Writer) (sdktrace.SpanExporter, error) {
	var exp sdktrace.SpanExporter
	var err error
	switch {
	case name == exporterConsole:
		exp, err = stdouttrace.New(stdouttrace.WithWriter(console))
	case protocol == protocolGRPC:
		exp, err = otlptracegrpc.New(ctx)
	default:
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s span exporter: %w", name, err)
	}
	return exp, nil
}

func newMetricExporter(ctx context.Context, name, protocol string, console io.Writer) (sdkmetric.Exporter, error) {
	var exp sdkmetric.Exporter
	var err error
	switch {
	case name == exporterConsole:
		exp, err = stdoutmetric.New(stdoutmetric.WithWriter(console))
	case protocol == protocolGRPC:
		exp, err = otlpmetricgrpc.New(ctx)
	default:
		exp, err = otlpmetrichttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s metric exporter: %w", name, err)
	}
	return exp, nil
}

// TracerProvider returns the provider to make tracers from: the SDK's, or a no-op one when
// OTEL_SDK_DISABLED=true. Spans are recorded even when no exporter is configured.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tracerProvider }

// MeterProvider returns the provider to make meters from: the SDK's, or a no-op one when
// OTEL_SDK_DISABLED=true.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.meterProvider }

// Propagator returns the W3C TraceContext+Baggage propagator, for components that take one
// (such as kotel) when SetGlobal is off.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.propagator }

// PrometheusHandler serves every metric made through MeterProvider in the Prometheus text
// format, from a registry of this Telemetry's own (nothing is registered globally). With
// OTEL_SDK_DISABLED=true it serves an empty page.
func (t *Telemetry) PrometheusHandler() http.Handler { return t.prometheus }

// ForceFlush exports what the batch span processor and the periodic metric readers hold,
// waiting at most until ctx is done.
func (t *Telemetry) ForceFlush(ctx context.Context) error {
	var errs []error
	for _, flush := range t.flushes {
		errs = append(errs, flush(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: flush: %w", err)
	}
	return nil
}

// Shutdown flushes and stops the exporters, traces first, waiting at most until ctx is done.
// After it, spans and metrics are dropped. Calling it again returns the first call's result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		var errs []error
		for _, stop := range t.shutdowns {
			errs = append(errs, stop(ctx))
		}
		if err := errors.Join(errs...); err != nil {
			t.shutdownErr = fmt.Errorf("telemetry: shutdown: %w", err)
		}
	})
	return t.shutdownErr
}
