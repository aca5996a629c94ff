package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
)

// Config says what month to generate. Zero fields mean their documented
// default.
type Config struct {
	// Tenant is the grid operator whose streams are generated. Default
	// "netz-musterstadt".
	Tenant string
	// Month is the billing month (required).
	Month mabis.Month
	// MaLos is the number of MaLos, one stream each. Default 2000.
	MaLos int
	// Seed selects the month; the same seed yields the same events.
	// Default 1.
	Seed uint64
	// BatchSize is the most events per Append. Default 16.
	BatchSize int
	// Concurrency is how many streams are appended at once. Default 8.
	Concurrency int
}

func (c *Config) setDefaults() {
	if c.Tenant == "" {
		c.Tenant = "netz-musterstadt"
	}
	if c.MaLos == 0 {
		c.MaLos = 2000
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.BatchSize == 0 {
		c.BatchSize = 16
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
}

// Validate reports every problem of c, joined.
func (c Config) Validate() error {
	var errs []error
	if err := framework.ValidateTenantID(c.Tenant); c.Tenant != "" && err != nil {
		errs = append(errs, fmt.Errorf("loadgen: Tenant: %w", err))
	}
	if c.Month == (mabis.Month{}) {
		errs = append(errs, errors.New("loadgen: Month is required"))
	} else if _, err := mabis.ParseMonth(c.Month.String()); err != nil {
		errs = append(errs, fmt.Errorf("loadgen: Month: %w", err))
	}
	if c.MaLos < 0 || c.MaLos > 1_000_000 {
		errs = append(errs, fmt.Errorf("loadgen: MaLos %d: want 1 to 1000000", c.MaLos))
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("loadgen: BatchSize %d is negative", c.BatchSize))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("loadgen: Concurrency %d is negative", c.Concurrency))
	}
	return errors.Join(errs...)
}

// Stats says what Generate appended.
type Stats struct {
	Streams  int
	Events   int
	Bytes    int64 // payload bytes
	Duration time.Duration
}

// Stream is one generated MaLo stream.
type Stream struct {
	ID     string
	MaLo   string
	Events []framework.EventData
}

// streamOf returns the stream of the i-th MaLo of cfg (0 <= i < cfg.MaLos)
// and the simulation it was built from.
func streamOf(cfg Config, market Market, i int) (Stream, *maloMonth, error) {
	mm := simulate(cfg, market, i)
	id, err := mabis.StreamID(cfg.Tenant, mm.id, cfg.Month)
	if err != nil {
		return Stream{}, nil, err
	}
	s := Stream{ID: id, MaLo: mm.id, Events: make([]framework.EventData, 0, len(mm.events))}
	for _, p := range mm.events {
		if err := p.Validate(cfg.Month); err != nil {
			return Stream{}, nil, fmt.Errorf("loadgen: generated an invalid event for %s: %w", id, err)
		}
		e, err := mabis.Encode(p)
		if err != nil {
			return Stream{}, nil, err
		}
		e.Metadata = map[string]string{framework.MetadataTenant: cfg.Tenant, framework.MetadataCorrelationID: id}
		s.Events = append(s.Events, e)
	}
	return s, mm, nil
}

// Generate appends the month cfg describes to store, one stream per MaLo,
// and returns what the billing read model must hold afterwards. Streams
// must not exist yet: a month is generated once per store (an append
// expects the stream's version, so a second run fails with
// framework.ErrVersionConflict instead of doubling the events).
func Generate(ctx context.Context, store framework.EventStore, cfg Config) (*Expected, Stats, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, Stats{}, err
	}
	start := time.Now()
	market := DefaultMarket()
	x := newExpected(cfg, market)
	var (
		mu    sync.Mutex
		stats Stats
		errs  []error
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	for range cfg.Concurrency {
		wg.Go(func() {
			for i := range next {
				s, mm, err := streamOf(cfg, market, i)
				if err == nil {
					err = appendStream(ctx, store, s, cfg.BatchSize)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					cancel()
				} else {
					x.add(mm)
					stats.Streams++
					stats.Events += len(s.Events)
					for _, e := range s.Events {
						stats.Bytes += int64(len(e.Data))
					}
				}
				mu.Unlock()
			}
		})
	}
feed:
	for i := range cfg.MaLos {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	stats.Duration = time.Since(start)
	if len(errs) > 0 {
		return nil, stats, errors.Join(errs...)
	}
	if err := ctx.Err(); err != nil {
		return nil, stats, err
	}
	return x, stats, nil
}

// Build returns the month cfg describes as streams, without appending
// them, and what the read model must hold once they are applied.
func Build(cfg Config) ([]Stream, *Expected, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	market := DefaultMarket()
	x := newExpected(cfg, market)
	streams := make([]Stream, 0, cfg.MaLos)
	for i := range cfg.MaLos {
		s, mm, err := streamOf(cfg, market, i)
		if err != nil {
			return nil, nil, err
		}
		x.add(mm)
		streams = append(streams, s)
	}
	return streams, x, nil
}

// appendStream appends s in batches, each expecting the version the last
// one left.
func appendStream(ctx context.Context, store framework.EventStore, s Stream, batch int) error {
	var version uint64
	for from := 0; from < len(s.Events); from += batch {
		to := min(from+batch, len(s.Events))
		if _, err := store.Append(ctx, s.ID, framework.ExactVersion(version), s.Events[from:to]); err != nil {
			return fmt.Errorf("loadgen: append %s events %d to %d: %w", s.ID, from+1, to, err)
		}
		version = uint64(to)
	}
	return nil
}
