package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// serve runs the runner and the HTTP server until ctx is done and the
// runner has shut down. The server outlives the runner's shutdown, so that
// probes and scrapes see it drain; it stops once the runner has returned.
// A server that fails stops the runner: a worker without its probes is of
// no use.
func (w *Worker) serve(ctx context.Context, opts Options) error {
	ln, err := net.Listen("tcp", w.Config.HTTPAddr)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("http: %w", err)}
	}
	srv := &http.Server{Handler: w.mux, ReadHeaderTimeout: 10 * time.Second}
	runCtx, stopRunner := context.WithCancel(ctx)
	defer stopRunner()
	httpErr := make(chan error, 1)
	go func() {
		defer stopRunner()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			httpErr <- fmt.Errorf("http: %w", err)
			return
		}
		httpErr <- nil
	}()
	fmt.Fprintf(opts.Stdout, "%s: replica %s of projection %s (group %s) on topic %s; health, metrics and API on %s\n",
		opts.Name, w.ReplicaID(), w.Config.Projection, w.Config.ConsumerGroup(), w.Config.Topic, URL(ln.Addr().String()))

	if w.Console != nil {
		fmt.Fprintf(opts.Stdout, "%s: console on %s%s\n", opts.Name, URL(ln.Addr().String()), ConsolePrefix)
		sampled := make(chan struct{})
		defer func() {
			stopRunner() // the sampler stops with runCtx
			<-sampled
		}()
		go func() {
			defer close(sampled)
			_ = w.Console.Run(runCtx)
		}()
	}
	runErr := make(chan error, 1)
	go func() { runErr <- w.runner.Run(runCtx) }()
	select {
	case err = <-runErr:
	case <-runCtx.Done():
		deadline := time.NewTimer(w.Config.ShutdownTimeout + stopSlack)
		defer deadline.Stop()
		select {
		case err = <-runErr:
		case <-deadline.C:
			err = fmt.Errorf("the runner did not stop within %v (PROJECTOR_SHUTDOWN_TIMEOUT) and %v more: a projection stuck in Apply?", w.Config.ShutdownTimeout, stopSlack)
		}
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(shutdown); serr != nil {
		err = errors.Join(err, fmt.Errorf("http shutdown: %w", serr))
	}
	return errors.Join(err, <-httpErr)
}

// URL turns a listening address into a URL people can open: an
// unspecified host (":8080", "[::]:8080") becomes localhost.
func URL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
