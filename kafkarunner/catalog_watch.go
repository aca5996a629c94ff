package kafkarunner

import (
	"context"
	"time"

	"github.com/projector-dev/projector/kafkastore"
)

// The stream catalog is written by kafkastore.Store.Append only: streams other
// producers write are not in it until `projectorctl catalog rebuild`
// (ListStreams does not list them; ReadStream finds them in their murmur2
// partition). The runner reports the streams it applies that the catalog
// lacks: projector.streams.uncataloged, RunnerStats.Uncataloged and a
// warning naming the first ones.

// catalogGrace is how long after the runner first sees a stream it looks
// the stream up in the catalog: Append writes the catalog record after the
// events. A variable for tests.
var catalogGrace = 10 * time.Second

// Bounds of the catalog watch: streams waiting to be looked up (more are
// dropped, not reported), streams remembered as looked up, warnings logged
// by stream ID.
const (
	catalogQueue    = 10_000
	catalogChecked  = 200_000
	catalogWarnings = 20
)

type seenStream struct {
	id string
	at time.Time
}

// noteStreams queues streams a worker saw for the first time in its
// session, without blocking it.
func (r *Runner) noteStreams(ids []string) {
	if r.seen == nil {
		return
	}
	now := time.Now()
	for _, id := range ids {
		select {
		case r.seen <- seenStream{id, now}:
		default:
			return
		}
	}
}

// watchCatalog looks the streams up in the catalog once they are older
// than catalogGrace, each once per runner.
func (r *Runner) watchCatalog(ctx context.Context, st *kafkastore.Store) {
	checked := map[string]bool{}
	var pending []seenStream
	warned := 0
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-r.seen:
			if !checked[s.id] {
				pending = append(pending, s)
			}
			continue
		case <-tick.C:
		}
		n := 0
		for n < len(pending) && time.Since(pending[n].at) >= catalogGrace {
			id := pending[n].id
			n++
			if checked[id] {
				continue
			}
			_, ok, err := st.Entry(ctx, id)
			if err != nil {
				n-- // looked up again at the next tick
				break
			}
			if len(checked) >= catalogChecked {
				clear(checked)
			}
			checked[id] = true
			if ok {
				continue
			}
			r.metrics.uncataloged.Add(ctx, 1)
			if warned < catalogWarnings {
				warned++
				r.cfg.Logger.Warn("a stream applied by the runner is not in the stream catalog (written by another producer): ListStreams does not list it until `projectorctl catalog rebuild`",
					"stream", id, "catalog", st.Config().CatalogTopic)
			}
		}
		pending = pending[n:]
	}
}
