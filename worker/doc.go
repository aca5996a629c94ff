// Package worker is the runtime of a projection worker: the main of a
// container image that runs one replica of a projection from Kafka into
// Redis, as the Helm chart in deploy/helm/projector deploys it. A program
// passes its projection; the runtime does the rest:
//
//   - configuration from flags and the PROJECTOR_* variables, with the
//     table, the boolean syntax and the secret handling of package
//     projectorconfig (the same names projectorctl reads), plus the
//     program's own settings ([Options.Vars]);
//   - the Redis client and checkpoint store ([redischeckpoint.Store]), the
//     Kafka SASL/TLS options, OpenTelemetry from the OTEL_* variables
//     (package telemetry);
//   - the consumer-group runner: a [kafkarunner.VersionedRunner] for a
//     projection with read-model versions (rebuilds with projectorctl
//     rebuild), or a [kafkarunner.Runner] for a single one;
//   - one HTTP server with GET /healthz (the process), GET /readyz (group
//     joined, Redis reachable), GET /metrics (Prometheus) and the program's
//     own handlers ([Worker.Handle]); with PROJECTOR_CONSOLE=true also the
//     web console under /console/ (package console, docs/console.md;
//     retry and skip only with PROJECTOR_CONSOLE_ADMIN_TOKEN);
//   - SIGTERM and SIGINT: the runner finishes its batch, stores its
//     cursors, commits and leaves the group within PROJECTOR_SHUTDOWN_TIMEOUT,
//     and the HTTP server keeps answering until it has; a second signal
//     ends the process at once;
//   - a clear error and exit status: 2 for a usage or configuration error
//     (every problem named at once), 1 for a failure.
//
// A complete main:
//
//	func main() {
//		worker.Main(worker.Options{
//			Defaults: map[string]string{"PROJECTOR_PROJECTION": "orders", "PROJECTOR_TOPIC": "shop.orders"},
//			Setup: func(ctx context.Context, w *worker.Worker) (worker.Projection, error) {
//				p, err := w.Store.NewAtomicProjection(w.Config.Projection, applyOrder)
//				if err != nil {
//					return worker.Projection{}, err
//				}
//				return worker.Versioned(p), nil
//			},
//		})
//	}
//
// docs/deploy.md shows how to build its image (the repository's
// Dockerfile, --build-arg MAIN=./path/to/main) and deploy it with the chart.
package worker
