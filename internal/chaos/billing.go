package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// Workloads.
const (
	// WorkloadCounter: raw-producer events over Streams streams, applied
	// by the counting worker (cmd/projector-chaos worker); checked per
	// (stream, sequence).
	WorkloadCounter = "counter"
	// WorkloadBilling: a generated MABIS month (examples/billing/loadgen)
	// appended with kafkastore.Store, projected by `billing worker`
	// processes (examples/billing); checked against the generator's
	// expected totals, every quarter hour of every balance group.
	WorkloadBilling = "billing"
)

// billingTenant and billingMonth are the month the billing workload
// generates (a DST month: 2,972 quarter hours).
const (
	billingTenant = "netz-musterstadt"
	billingMonth  = "2026-03"
)

// billingEventsPerMaLo is about how many events loadgen makes per MaLo
// and month, to size the month to the run.
const billingEventsPerMaLo = 33

// billingWorker returns the command of one billing worker replica: its
// Redis traffic goes through the replica's proxy (the URL names it); Kafka
// it reaches directly (the worker has no dialer to point at a proxy, and a
// broker's metadata names the broker itself).
func billingWorker(cfg Config, group string) func(r *replica, dial DialMap) (*exec.Cmd, error) {
	return func(r *replica, dial DialMap) (*exec.Cmd, error) {
		rds := cfg.Topology.Redis.Addrs[0]
		if to, ok := dial[rds]; ok {
			rds = to
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if err := os.WriteFile(r.addFile, []byte(addr), 0o644); err != nil {
			return nil, err
		}
		cmd := exec.Command(cfg.BillingBinary, "worker")
		cmd.Env = append(os.Environ(),
			"PROJECTOR_KAFKA_BROKERS="+strings.Join(cfg.Topology.Brokers, ","),
			"PROJECTOR_TOPIC="+cfg.Topic,
			"PROJECTOR_GROUP="+group,
			"PROJECTOR_PROJECTION="+mabis.ProjectionName,
			"PROJECTOR_REDIS_URL=redis://"+rds,
			"PROJECTOR_REDIS_NAMESPACE="+cfg.Namespace,
			"PROJECTOR_HTTP_ADDR="+addr,
			"PROJECTOR_TENANT="+billingTenant,
			"PROJECTOR_KAFKA_SESSION_TIMEOUT="+cfg.Session.String(),
			"PROJECTOR_SHUTDOWN_TIMEOUT=20s",
			"PROJECTOR_LOG_LEVEL=warn",
			"OTEL_SDK_DISABLED=true",
			"PROJECTOR_REDIS_PASSWORD=", "PROJECTOR_KAFKA_PASSWORD=",
		)
		return cmd, nil
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// billingLoad is the billing workload's ground truth: the generator's
// expected read model, and how far the appends got.
type billingLoad struct {
	expected *loadgen.Expected
	streams  []loadgen.Stream
	events   atomic.Int64
	failures atomic.Int64
}

// newBillingLoad builds a month sized to about rate × duration events.
func newBillingLoad(seed uint64, rate int, duration time.Duration) (*billingLoad, error) {
	month, err := mabis.ParseMonth(billingMonth)
	if err != nil {
		return nil, err
	}
	malos := max(20, int(float64(rate)*duration.Seconds()/billingEventsPerMaLo))
	streams, x, err := loadgen.Build(loadgen.Config{Tenant: billingTenant, Month: month, MaLos: malos, Seed: max(seed, 1)})
	if err != nil {
		return nil, err
	}
	return &billingLoad{expected: x, streams: streams}, nil
}

// run appends every stream with kafkastore.Store, a batch of up to 8
// events per stream per round, paced to about rate events per second.
// Every event must be appended for the expected totals to hold: an append
// that fails is retried (with the version the store reports, so an append
// that did reach the log is not written twice) until ctx ends.
func (b *billingLoad) run(ctx context.Context, brokers []string, topic string, rate int) error {
	st, err := kafkastore.New(ctx, kafkastore.Config{Guard: appendguard.NewMemory(), Seeds: brokers, Topic: topic, ReplicationFactor: -1})
	if err != nil {
		return err
	}
	defer st.Close()
	const producers, batch = 8, 8
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for g := range producers {
		var mine []loadgen.Stream
		for i := g; i < len(b.streams); i += producers {
			mine = append(mine, b.streams[i])
		}
		wg.Go(func() {
			next := make([]int, len(mine))
			interval := time.Duration(float64(time.Second) * float64(producers*batch) / float64(max(rate, 1)))
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				progress := false
				for i, s := range mine {
					if next[i] >= len(s.Events) {
						continue
					}
					progress = true
					select {
					case <-ctx.Done():
						errs <- ctx.Err()
						return
					case <-tick.C:
					}
					to := min(next[i]+batch, len(s.Events))
					if err := b.appendBatch(ctx, st, s, next[i], to); err != nil {
						errs <- err
						return
					}
					next[i] = to
				}
				if !progress {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func (b *billingLoad) appendBatch(ctx context.Context, st *kafkastore.Store, s loadgen.Stream, from, to int) error {
	for attempt := 1; ; attempt++ {
		_, err := st.Append(ctx, s.ID, framework.ExactVersion(uint64(from)), s.Events[from:to])
		if err == nil {
			b.events.Add(int64(to - from))
			return nil
		}
		b.failures.Add(1)
		var conflict *framework.VersionConflictError
		if errors.As(err, &conflict) {
			// An earlier attempt reached the log after all.
			if v, verr := st.StreamVersion(ctx, s.ID); verr == nil && v == uint64(to) {
				b.events.Add(int64(to - from))
				return nil
			}
		}
		if attempt >= 20 || ctx.Err() != nil {
			return fmt.Errorf("billing workload: append %s events %d..%d: %w", s.ID, from+1, to, err)
		}
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
}

// checkBilling compares the live version of the billing read model with
// the generator's expected month; every difference is a violation.
func checkBilling(ctx context.Context, rc redis.UniversalClient, namespace string, x *loadgen.Expected, rep *Report) error {
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: rc, Namespace: namespace})
	if err != nil {
		return err
	}
	p, err := mabis.NewProjection(store, mabis.ProjectionName)
	if err != nil {
		return err
	}
	live, err := p.Live(ctx)
	if err != nil {
		return err
	}
	rep.LiveVersion = live.Name()
	reader, err := mabis.NewReader(live, billingTenant)
	if err != nil {
		return err
	}
	for _, g := range x.Groups {
		rep.EventsChecked += int64(len(g.Wh))
	}
	if err := x.Verify(ctx, reader); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				rep.add(Violation{Kind: "billing-diff", Stream: billingMonth, Detail: line})
			}
		}
	}
	return nil
}
