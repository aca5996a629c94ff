package kafkarunner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
)

func newAdmin(cl *kgo.Client) *kadm.Client { return kadm.NewClient(cl) }

// Healthy reports whether the process works: Run has been called and has
// not returned. It depends on neither Kafka nor Redis, so a liveness probe
// built on it does not restart replicas during a broker outage.
func (r *Runner) Healthy() error {
	if !r.ran.Load() {
		return errors.New("kafkarunner: runner not started")
	}
	if r.stopped.Load() {
		return errors.New("kafkarunner: runner stopped")
	}
	return nil
}

// Ready reports whether the replica takes part: it has joined its consumer
// group (it may hold no partition when there are more replicas than
// partitions), every partition it was assigned has a working worker, and
// the checkpoint store answers. A partition whose worker retries a failing
// step, was fenced, found its stored state lost or failed makes the
// replica not ready, with the partition and the error named.
func (r *Runner) Ready(ctx context.Context) error {
	if err := r.Healthy(); err != nil {
		return err
	}
	switch r.State() {
	case "paused", "waiting-reset", "resetting":
		// Out of the group on purpose (an admin paused it, or a replay
		// is under way): ready, so that a rollout or a node drain does
		// not wait for the replay.
	default:
		if !r.joined.Load() {
			return errors.New("kafkarunner: not (yet) a member of consumer group " + r.cfg.Group)
		}
	}
	var problems []string
	if n := r.leftBehind.Load(); n > 0 {
		problems = append(problems, fmt.Sprintf("%d partition worker(s) ignored cancellation and still run (a projection stuck in Apply)", n))
	}
	for _, p := range r.Partitions() {
		if p.State != PartitionRunning && (p.State != PartitionStarting || p.Error != "") {
			problems = append(problems, fmt.Sprintf("partition %d %s since %s: %s", p.Partition, p.State, p.Since.Format(time.RFC3339), p.Error))
		}
	}
	if len(problems) > 0 {
		return errors.New("kafkarunner: " + strings.Join(problems, "; "))
	}
	if p, ok := r.cfg.Checkpoints.(controlplane.Pinger); ok {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Handler serves GET /healthz (Healthy) and GET /readyz (Ready), with 200
// or 503 and a JSON body naming the problem.
func (r *Runner) Handler() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, err error) {
		w.Header().Set("Content-Type", "application/json")
		body := map[string]any{"status": "ok", "group": r.cfg.Group, "partitions": r.Assigned()}
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			body["status"], body["error"] = "unavailable", err.Error()
		}
		_ = json.NewEncoder(w).Encode(body)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { reply(w, r.Healthy()) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) { reply(w, r.Ready(req.Context())) })
	return mux
}
