// Package telemetry sets up OpenTelemetry tracing and metrics for a Projector process from the
// standard OTEL_* environment variables, without touching global state unless asked to.
//
// [Setup] builds a TracerProvider and a MeterProvider and hands them out through a
// [Telemetry]; pass them to the components that instrument themselves (kotel hooks on the Kafka
// clients, the runner's meters). Every MeterProvider also feeds an OpenTelemetry Prometheus
// exporter with a registry of its own, served by [Telemetry.PrometheusHandler], so a scrape
// endpoint works whatever the environment says.
//
// # Environment
//
// Read once by Setup:
//
//	OTEL_SDK_DISABLED=true            no-op providers; nothing is recorded or exported
//	OTEL_SERVICE_NAME                 service.name; wins over Options.ServiceName
//	OTEL_RESOURCE_ATTRIBUTES          key=value,... resource attributes
//	OTEL_TRACES_EXPORTER              otlp, console or none (a comma-separated list)
//	OTEL_METRICS_EXPORTER             otlp, console, prometheus or none (a list)
//	OTEL_EXPORTER_OTLP_PROTOCOL       grpc or http/protobuf (default http/protobuf)
//	OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_METRICS_PROTOCOL  per signal
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG
//	                                  always_on, always_off, traceidratio, parentbased_always_on,
//	                                  parentbased_always_off, parentbased_traceidratio
//
// The OTLP exporters read their own variables as well: OTEL_EXPORTER_OTLP_ENDPOINT,
// _HEADERS, _TIMEOUT, _COMPRESSION, _CERTIFICATE and their OTEL_EXPORTER_OTLP_TRACES_* and
// OTEL_EXPORTER_OTLP_METRICS_* forms; the batch span processor reads OTEL_BSP_* and the
// periodic metric reader OTEL_METRIC_EXPORT_INTERVAL and OTEL_METRIC_EXPORT_TIMEOUT.
//
// One deliberate difference from the specification: when OTEL_TRACES_EXPORTER (or
// OTEL_METRICS_EXPORTER) is unset, the signal is exported over OTLP only if an OTLP endpoint is
// configured for it (OTEL_EXPORTER_OTLP_ENDPOINT or the per-signal _ENDPOINT); otherwise nothing
// is exported. A process started with no OTEL_* variables therefore never tries to reach
// localhost:4317 or :4318 and logs no export errors; its metrics are still recorded (and
// scraped through the Prometheus handler). With no trace exporter the TracerProvider is a no-op
// one: nothing would receive a span, so instrumented components (the runner, kotel) skip the
// work, and an incoming trace context still passes through to what the process sends on. Setting
// the exporter variable to otlp explicitly restores the specification's default endpoint.
//
// An invalid value is an error from Setup that names the variable (an [*EnvError]); all invalid
// variables are reported at once.
package telemetry
