package telemetry

import "fmt"

// EnvError reports an OTEL_* environment variable whose value Setup cannot use. Setup joins
// one per invalid variable with errors.Join; find them with errors.AsType[*EnvError].
type EnvError struct {
	Var    string // the variable, e.g. "OTEL_TRACES_EXPORTER"
	Value  string // its value as set
	Reason string // what is wrong and what is accepted
	Err    error  // the underlying error, if any
}

func (e *EnvError) Error() string {
	msg := fmt.Sprintf("telemetry: %s=%q: %s", e.Var, e.Value, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *EnvError) Unwrap() error { return e.Err }
