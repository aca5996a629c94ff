package console

import (
	"context"
	"sync"
	"time"

	"github.com/projector-dev/projector/framework"
)

// Sample is one look at a projection's lag.
type Sample struct {
	At time.Time
	// Records is the live version's lag in records (ops.Status.TotalLag);
	// Seconds the largest lag in seconds the replicas report.
	Records int64
	Seconds float64
	// Behind is how many records a rebuild in progress is behind the
	// topic; -1 without a rebuild.
	Behind int64
}

// sampler keeps the last samples of each projection in a ring.
type sampler struct {
	mu    sync.Mutex
	size  int
	rings map[string]*ring
}

type ring struct {
	buf  []Sample
	next int
	full bool
}

func newSampler(size int) *sampler {
	return &sampler{size: max(size, 2), rings: map[string]*ring{}}
}

func (s *sampler) add(projection string, x Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rings[projection]
	if r == nil {
		r = &ring{buf: make([]Sample, s.size)}
		s.rings[projection] = r
	}
	r.buf[r.next] = x
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// samples returns projection's samples, oldest first.
func (s *sampler) samples(projection string) []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rings[projection]
	if r == nil {
		return nil
	}
	if !r.full {
		return append([]Sample(nil), r.buf[:r.next]...)
	}
	return append(append([]Sample(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

// Run samples the lag of every projection every Config.SampleEvery until
// ctx is done, and returns nil then. A failed look is logged and leaves a
// gap in the chart.
func (c *Console) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.SampleEvery)
	defer t.Stop()
	for {
		c.sampleOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sampleOnce takes one sample of every projection.
func (c *Console) sampleOnce(ctx context.Context) {
	for _, name := range c.cfg.Projections {
		x, err := c.sample(ctx, name)
		if err != nil {
			if ctx.Err() == nil {
				c.cfg.Logger.WarnContext(ctx, "console: sampling the lag", "projection", name, "error", err)
			}
			continue
		}
		c.samples.add(name, x)
	}
}

func (c *Console) sample(ctx context.Context, name string) (Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.SampleEvery)
	defer cancel()
	st, err := c.cfg.Ops.Status(ctx, name)
	if err != nil {
		return Sample{}, err
	}
	x := Sample{At: time.Now().UTC(), Records: st.TotalLag, Behind: -1}
	for _, r := range st.Replicas {
		x.Seconds = max(x.Seconds, r.LagSeconds)
	}
	if st.Versions.Building != nil {
		base, _ := framework.SplitVersionedName(name)
		rs, err := c.cfg.Ops.RebuildStatus(ctx, base)
		if err != nil {
			return Sample{}, err
		}
		if rs.Rebuilding != nil {
			x.Behind = rs.Rebuilding.Behind
		}
	}
	return x, nil
}

// eta estimates when a rebuild now behind records behind catches up, from
// the samples of the last two minutes; 0 when it cannot tell.
func eta(samples []Sample, behind int64) time.Duration {
	if len(samples) < 2 || behind <= 0 {
		return 0
	}
	last := samples[len(samples)-1]
	for _, s := range samples {
		if s.Behind < 0 || last.At.Sub(s.At) > 2*time.Minute {
			continue
		}
		dt := last.At.Sub(s.At).Seconds()
		done := float64(s.Behind - last.Behind)
		if dt <= 0 || done <= 0 {
			return 0
		}
		return time.Duration(float64(behind) / (done / dt) * float64(time.Second)).Round(time.Second)
	}
	return 0
}
