package worker

import (
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/projector-dev/projector/console"
	"github.com/projector-dev/projector/ops"
)

// ConsolePrefix is where the worker serves the web console.
const ConsolePrefix = "/console/"

// newConsole builds the web console of the worker's projection
// (PROJECTOR_CONSOLE) on an admin client of its own; serve runs its lag
// sampler and the HTTP server serves it under ConsolePrefix.
func (w *Worker) newConsole() error {
	cl, err := w.KafkaClient()
	if err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	w.Defer(adm.Close)
	cfg := w.Config
	oc, err := ops.New(ops.Config{Admin: w.Store, Checkpoints: w.Store, Kafka: adm, Seeds: cfg.Brokers, ClientOpts: w.KafkaOpts,
		Topic: cfg.Topic, Group: cfg.Group})
	if err != nil {
		return err
	}
	c, err := console.New(console.Config{Ops: oc, Projections: []string{cfg.Projection}, Prefix: ConsolePrefix,
		AdminToken: cfg.ConsoleAdminToken, Logger: w.Logger})
	if err != nil {
		return err
	}
	w.Console = c
	w.mux.Handle(ConsolePrefix, c)
	return nil
}
