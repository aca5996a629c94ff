package telemetry

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Names of the environment variables read here (the exporters and the SDK read more).
const (
	envSDKDisabled       = "OTEL_SDK_DISABLED"
	envTracesExporter    = "OTEL_TRACES_EXPORTER"
	envMetricsExporter   = "OTEL_METRICS_EXPORTER"
	envProtocol          = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol    = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envMetricsProtocol   = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
	envEndpoint          = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint    = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envMetricsEndpoint   = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
	envTracesSampler     = "OTEL_TRACES_SAMPLER"
	envTracesSamplerArg  = "OTEL_TRACES_SAMPLER_ARG"
	exporterOTLP         = "otlp"
	exporterConsole      = "console"
	exporterPrometheus   = "prometheus"
	exporterNone         = "none"
	protocolGRPC         = "grpc"
	protocolHTTPProtobuf = "http/protobuf"
)

// envConfig is what Setup takes from the environment.
type envConfig struct {
	disabled        bool
	disabledInvalid string   // a value of OTEL_SDK_DISABLED that is neither true nor false
	traceExporters  []string // otlp, console; empty: none
	traceProtocol   string
	metricExporters []string // otlp, console; empty: only the Prometheus reader
	metricProtocol  string
	sampler         sdktrace.Sampler // nil: the SDK default, parentbased_always_on
}

// CheckEnv checks the OTEL_* variables Setup reads (exporters, protocols,
// sampler) without building anything: the error Setup would return for
// them, one *EnvError per invalid variable.
func CheckEnv() error {
	_, err := readEnv(os.Getenv)
	return err
}

// readEnv reads and checks the variables, returning one *EnvError per invalid variable.
func readEnv(getenv func(string) string) (envConfig, error) {
	var cfg envConfig
	var errs []error

	switch v := strings.TrimSpace(getenv(envSDKDisabled)); strings.ToLower(v) {
	case "true":
		cfg.disabled = true
		return cfg, nil
	case "", "false":
	default:
		// The specification says: anything but true means false, with a warning.
		cfg.disabledInvalid = v
	}

	var err error
	cfg.traceExporters, err = exporters(getenv, envTracesExporter, envTracesEndpoint,
		[]string{exporterOTLP, exporterConsole, exporterNone})
	errs = append(errs, err)
	cfg.metricExporters, err = exporters(getenv, envMetricsExporter, envMetricsEndpoint,
		[]string{exporterOTLP, exporterConsole, exporterPrometheus, exporterNone})
	errs = append(errs, err)
	// Prometheus is always there (Telemetry.PrometheusHandler): asking for it adds no exporter.
	cfg.metricExporters = slices.DeleteFunc(cfg.metricExporters, func(s string) bool { return s == exporterPrometheus })

	general, err := protocol(getenv, envProtocol, protocolHTTPProtobuf)
	errs = append(errs, err)
	cfg.traceProtocol, err = protocol(getenv, envTracesProtocol, general)
	errs = append(errs, err)
	cfg.metricProtocol, err = protocol(getenv, envMetricsProtocol, general)
	errs = append(errs, err)

	cfg.sampler, err = sampler(getenv)
	errs = append(errs, err)
	return cfg, errors.Join(errs...)
}

// exporters parses a comma-separated exporter list. Unset or empty means otlp when an OTLP
// endpoint is configured for the signal and none otherwise (see the package documentation).
func exporters(getenv func(string) string, name, signalEndpoint string, valid []string) ([]string, error) {
	raw := getenv(name)
	if strings.TrimSpace(raw) == "" {
		if strings.TrimSpace(getenv(envEndpoint)) != "" || strings.TrimSpace(getenv(signalEndpoint)) != "" {
			return []string{exporterOTLP}, nil
		}
		return nil, nil
	}
	var out []string
	for part := range strings.SplitSeq(raw, ",") {
		e := strings.ToLower(strings.TrimSpace(part))
		if !slices.Contains(valid, e) {
			return nil, &EnvError{Var: name, Value: raw,
				Reason: fmt.Sprintf("unknown exporter %q (supported: %s)", e, strings.Join(valid, ", "))}
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	if slices.Contains(out, exporterNone) {
		if len(out) > 1 {
			return nil, &EnvError{Var: name, Value: raw, Reason: "none cannot be combined with other exporters"}
		}
		return nil, nil
	}
	return out, nil
}

// protocol parses an OTLP protocol variable, returning def when it is unset.
func protocol(getenv func(string) string, name, def string) (string, error) {
	raw := getenv(name)
	switch p := strings.TrimSpace(raw); p {
	case "":
		return def, nil
	case protocolGRPC, protocolHTTPProtobuf:
		return p, nil
	case "http/json":
		return def, &EnvError{Var: name, Value: raw,
			Reason: "http/json is not supported by the Go OTLP exporters (supported: grpc, http/protobuf)"}
	default:
		return def, &EnvError{Var: name, Value: raw, Reason: "unknown OTLP protocol (supported: grpc, http/protobuf)"}
	}
}

// sampler parses OTEL_TRACES_SAMPLER and its argument as the SDK would, but reports a bad
// value as an error instead of logging it and carrying on.
func sampler(getenv func(string) string) (sdktrace.Sampler, error) {
	raw := getenv(envTracesSampler)
	name := strings.ToLower(strings.TrimSpace(raw))
	rawArg := getenv(envTracesSamplerArg)
	ratio := func() (float64, error) {
		arg := strings.TrimSpace(rawArg)
		if arg == "" {
			return 1, nil
		}
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || v < 0 || v > 1 {
			return 0, &EnvError{Var: envTracesSamplerArg, Value: rawArg,
				Reason: fmt.Sprintf("want a ratio between 0 and 1 for sampler %s", name)}
		}
		return v, nil
	}
	switch name {
	case "":
		return nil, nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.TraceIDRatioBased(r), nil
	case "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	default:
		return nil, &EnvError{Var: envTracesSampler, Value: raw, Reason: "unknown sampler (supported: always_on, " +
			"always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)"}
	}
}
