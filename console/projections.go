package console

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/ops"
)

// projectionView is one projection on the projections page.
type projectionView struct {
	Name   string
	Err    string
	Status ops.Status
	// Sums over the replicas' reports.
	Applied, Skipped, Held, ParkedEvents int64
	LagSeconds                           float64
	Rebuild                              *rebuildView
	Records, Seconds                     Chart
}

// rebuildView is a rebuild in progress.
type rebuildView struct {
	Name      string
	By        string
	Reason    string
	StartedAt time.Time
	Blocked   string
	Behind    int64
	Total     int64
	Percent   string
	Done      float64
	ETA       string
}

// projections serves the projections page.
func (c *Console) projections(w http.ResponseWriter, r *http.Request) {
	views := make([]projectionView, len(c.cfg.Projections))
	var wg sync.WaitGroup
	for i, name := range c.cfg.Projections {
		wg.Go(func() { views[i] = c.projectionView(r.Context(), name) })
	}
	wg.Wait()
	c.renderPage(w, r, http.StatusOK, "projections", "Projections", max(int(c.cfg.SampleEvery/time.Second), 5), views)
}

func (c *Console) projectionView(ctx context.Context, name string) projectionView {
	v := projectionView{Name: name}
	st, err := c.cfg.Ops.Status(ctx, name)
	if err != nil {
		v.Err = err.Error()
		return v
	}
	v.Status = st
	for _, r := range st.Replicas {
		v.Applied += r.Applied
		v.Skipped += r.Skipped
		v.Held += r.Held
		v.ParkedEvents += r.Parked
		v.LagSeconds = max(v.LagSeconds, r.LagSeconds)
	}
	samples := c.samples.samples(name)
	if b := st.Versions.Building; b != nil {
		base, _ := framework.SplitVersionedName(name)
		rv := &rebuildView{Name: framework.VersionedName(base, b.Version), By: b.By, Reason: b.Reason, StartedAt: b.StartedAt, Blocked: b.Blocked, Behind: -1}
		if rs, err := c.cfg.Ops.RebuildStatus(ctx, base); err == nil && rs.Rebuilding != nil {
			rv.Behind = rs.Rebuilding.Behind
		}
		// The rebuild reads the topic from its start: its records are
		// the partitions' end offsets (fewer where retention deleted
		// the oldest).
		for _, p := range st.Partitions {
			rv.Total += p.End
		}
		if rv.Behind >= 0 && rv.Total > 0 {
			rv.Done = 100 * float64(rv.Total-min(rv.Behind, rv.Total)) / float64(rv.Total)
			rv.Percent = strconv.FormatFloat(rv.Done, 'f', 1, 64) + "%"
		}
		rv.ETA = "unknown yet"
		if d := eta(samples, rv.Behind); d > 0 {
			rv.ETA = "about " + d.String()
		}
		v.Rebuild = rv
	}
	v.Records, v.Seconds = lagCharts(name, samples, c.cfg.SampleEvery)
	return v
}

// lagCharts draws the sampled lag in records and in seconds.
func lagCharts(name string, samples []Sample, every time.Duration) (Chart, Chart) {
	records := Series{Name: "lag records", Class: "s1"}
	seconds := Series{Name: "lag seconds", Class: "s2"}
	rebuild := Series{Name: "rebuild behind", Class: "s3"}
	labels := map[int]string{}
	rebuilding := false
	for i, s := range samples {
		// A missed sample (the console could not look) is a gap.
		if i > 0 && s.At.Sub(samples[i-1].At) > 3*every {
			records.Values = append(records.Values, math.NaN())
			seconds.Values = append(seconds.Values, math.NaN())
			rebuild.Values = append(rebuild.Values, math.NaN())
		}
		records.Values = append(records.Values, float64(s.Records))
		seconds.Values = append(seconds.Values, s.Seconds)
		if s.Behind >= 0 {
			rebuilding = true
			rebuild.Values = append(rebuild.Values, float64(s.Behind))
		} else {
			rebuild.Values = append(rebuild.Values, math.NaN())
		}
	}
	n := len(records.Values)
	if n > 0 {
		labels[0] = samples[0].At.UTC().Format("15:04:05Z")
		labels[n-1] = samples[len(samples)-1].At.UTC().Format("15:04:05Z")
	}
	rc := Chart{Title: fmt.Sprintf("lag of %s in records", Clean(name)), Unit: "rec", Series: []Series{records}, XLabels: labels, Height: 160,
		Format: func(v float64) string {
			if v != math.Trunc(v) {
				return strconv.FormatFloat(v, 'f', 1, 64)
			}
			return formatInt(int64(v))
		}}
	if rebuilding {
		rc.Series = append(rc.Series, rebuild)
	}
	sc := Chart{Title: fmt.Sprintf("lag of %s in seconds", Clean(name)), Unit: "s", Series: []Series{seconds}, XLabels: labels, Height: 160}
	return rc, sc
}

// formatInt writes n with thousands separated by commas.
func formatInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
