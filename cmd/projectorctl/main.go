package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/projector-dev/projector/ops"
	"github.com/projector-dev/projector/redischeckpoint"
	"github.com/projector-dev/projector/telemetry"
)

// Exit codes; see the package documentation.
const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	exitRefused  = 3
	exitNotFound = 4
)

// exitError carries an exit code with its message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func refused(format string, args ...any) error {
	return &exitError{code: exitRefused, err: fmt.Errorf(format, args...)}
}

func usage(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

type telemetryKey struct{}

// tracer returns the command's tracer (a no-op one outside run).
func tracer(ctx context.Context) trace.Tracer {
	if tel, ok := ctx.Value(telemetryKey{}).(*telemetry.Telemetry); ok {
		return tel.TracerProvider().Tracer("github.com/projector-dev/projector/cmd/projectorctl")
	}
	return noop.NewTracerProvider().Tracer("")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns its exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	// go-redis's own notices (Sentinel's master selection, the pool's
	// dial failures) go to the logger at debug level: not printed.
	redischeckpoint.SetLogger(logger)
	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "projectorctl", Logger: logger})
	if err != nil {
		fmt.Fprintln(stderr, "projectorctl:", safeText(err.Error()))
		return exitUsage
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx) // flush the replay's span
	}()
	cmd := newRootCommand(stdin, stdout, stderr)
	cmd.SetArgs(args)
	ctx = context.WithValue(ctx, telemetryKey{}, tel)
	err = cmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "projectorctl:", safeText(err.Error())) // errors quote data
	if ee, ok := errors.AsType[*exitError](err); ok {
		return ee.code
	}
	switch {
	case errors.Is(err, ops.ErrInvalid):
		return exitUsage
	case errors.Is(err, ops.ErrRefused):
		return exitRefused
	case errors.Is(err, ops.ErrNotFound):
		return exitNotFound
	}
	if isUsageError(err) {
		return exitUsage
	}
	return exitFailed
}
