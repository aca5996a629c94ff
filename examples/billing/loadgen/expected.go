package loadgen

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/projector-dev/projector/examples/billing/mabis"
)

// Expected is what the billing read model must hold for a generated month.
// It is computed from the generator's own record of the truth (the real
// assignment timeline of every MaLo and the last values delivered for each
// day), with plain maps and slices, never with the projection's code.
type Expected struct {
	Tenant string
	Month  mabis.Month
	// Groups by EIC.
	Groups map[string]*ExpectedGroup
	// Clearing cases of the month.
	ClearingOpened, ClearingResolved int64
	// Counts of what the month holds, for reports.
	MaLos, SupplierChanges, RetroactiveChanges, SupplyEnds, SupplyBegins int
	Corrections, SubstituteDays                                          int
}

// ExpectedGroup is what one balance group must hold.
type ExpectedGroup struct {
	EIC  string
	Name string
	// Wh, MaLos and Substitutes hold one entry per quarter hour of the
	// month: the sum, the number of contributing MaLos and of substitute
	// values.
	Wh, MaLos, Substitutes []int64
	// Assigned are the MaLos assigned to the group on a day of the month,
	// Suppliers their suppliers.
	Assigned, Suppliers              map[string]bool
	ClearingOpened, ClearingResolved int64
}

// EnergyWh returns the group's monthly sum.
func (g *ExpectedGroup) EnergyWh() int64 {
	var n int64
	for _, v := range g.Wh {
		n += v
	}
	return n
}

// SubstituteValues returns the group's number of substitute values.
func (g *ExpectedGroup) SubstituteValues() int64 {
	var n int64
	for _, v := range g.Substitutes {
		n += v
	}
	return n
}

// EICs returns the groups' EICs in order.
func (x *Expected) EICs() []string { return slices.Sorted(maps.Keys(x.Groups)) }

func newExpected(cfg Config, market Market) *Expected {
	return &Expected{Tenant: cfg.Tenant, Month: cfg.Month, Groups: map[string]*ExpectedGroup{}}
}

func (x *Expected) group(eic string) *ExpectedGroup {
	g, ok := x.Groups[eic]
	if !ok {
		n := x.Month.Slots()
		g = &ExpectedGroup{EIC: eic, Wh: make([]int64, n), MaLos: make([]int64, n), Substitutes: make([]int64, n),
			Assigned: map[string]bool{}, Suppliers: map[string]bool{}}
		for _, bg := range DefaultMarket().BalanceGroups {
			if bg.EIC == eic {
				g.Name = bg.Name
			}
		}
		x.Groups[eic] = g
	}
	return g
}

// add folds one MaLo's month into x.
func (x *Expected) add(mm *maloMonth) {
	x.MaLos++
	m := x.Month
	for _, d := range m.Days() {
		a, ok := mm.truth.at(d)
		if ok {
			g := x.group(a.eic)
			g.Assigned[mm.id] = true
			g.Suppliers[a.supplier] = true
		}
		v, delivered := mm.values[d]
		if !delivered {
			continue
		}
		if !ok {
			panic(fmt.Sprintf("loadgen: %s has values on %s without an assignment", mm.id, d))
		}
		g := x.group(a.eic)
		first := m.FirstSlot(d)
		for q, wh := range v.wh {
			g.Wh[first+q] += wh
			g.MaLos[first+q]++
			if v.quality[q] == mabis.Substitute {
				g.Substitutes[first+q]++
			}
		}
	}
	for _, c := range mm.clears {
		g := x.group(c.eic)
		g.ClearingOpened++
		x.ClearingOpened++
		if c.resolved {
			g.ClearingResolved++
			x.ClearingResolved++
		}
	}
	for _, p := range mm.events {
		switch p := p.(type) {
		case mabis.AssignmentChanged:
			x.SupplierChanges++
		case mabis.AssignmentEnded:
			x.SupplyEnds++
		case mabis.AssignmentBegun:
			if m.Contains(mustDay(p.ValidFrom)) {
				x.SupplyBegins++
			}
		case mabis.ValuesCorrected:
			if p.MovedFrom != "" {
				continue
			}
			x.Corrections++
		case mabis.DayValuesReceived:
			for i := range len(p.Quality) {
				if p.Quality[i] == mabis.Substitute {
					x.SubstituteDays++
					break
				}
			}
		}
	}
	for _, p := range mm.events {
		if c, ok := p.(mabis.ValuesCorrected); ok && c.MovedFrom != "" {
			x.RetroactiveChanges++
			break
		}
	}
}

func mustDay(s string) mabis.Day {
	d, err := mabis.ParseDay(s)
	if err != nil {
		panic(err)
	}
	return d
}

// Verify reads the month from r and reports every difference from x, or nil
// when the read model holds exactly what x expects: the same groups, each
// quarter hour's sum, MaLo count and substitute count, the assigned MaLos,
// suppliers and clearing counts.
func (x *Expected) Verify(ctx context.Context, r *mabis.Reader) error {
	got, err := r.BalanceGroups(ctx, x.Month)
	if err != nil {
		return err
	}
	var diffs []error
	diff := func(format string, args ...any) {
		if len(diffs) < 20 {
			diffs = append(diffs, fmt.Errorf(format, args...))
		}
	}
	gotEICs := make([]string, 0, len(got.BalanceGroups))
	for _, g := range got.BalanceGroups {
		gotEICs = append(gotEICs, g.EIC)
	}
	if want := x.EICs(); !slices.Equal(gotEICs, want) {
		diff("balance groups %v, want %v", gotEICs, want)
	}
	if got.ClearingOpened != x.ClearingOpened || got.ClearingResolved != x.ClearingResolved || got.ClearingOpen != x.ClearingOpened-x.ClearingResolved {
		diff("clearing cases opened/resolved/open %d/%d/%d, want %d/%d/%d", got.ClearingOpened, got.ClearingResolved, got.ClearingOpen,
			x.ClearingOpened, x.ClearingResolved, x.ClearingOpened-x.ClearingResolved)
	}
	for _, t := range got.BalanceGroups {
		g, ok := x.Groups[t.EIC]
		if !ok {
			continue
		}
		if t.EnergyWh != g.EnergyWh() || t.SubstituteValues != g.SubstituteValues() {
			diff("%s: %d Wh with %d substitute values, want %d Wh with %d", t.EIC, t.EnergyWh, t.SubstituteValues, g.EnergyWh(), g.SubstituteValues())
		}
		if t.AssignedMaLos != int64(len(g.Assigned)) {
			diff("%s: %d assigned MaLos, want %d", t.EIC, t.AssignedMaLos, len(g.Assigned))
		}
		if want := slices.Sorted(maps.Keys(g.Suppliers)); !slices.Equal(t.Suppliers, want) {
			diff("%s: suppliers %v, want %v", t.EIC, t.Suppliers, want)
		}
		if t.ClearingOpened != g.ClearingOpened || t.ClearingResolved != g.ClearingResolved {
			diff("%s: clearing cases opened/resolved %d/%d, want %d/%d", t.EIC, t.ClearingOpened, t.ClearingResolved, g.ClearingOpened, g.ClearingResolved)
		}
		s, err := r.Series(ctx, x.Month, t.EIC, mabis.QuarterHourly)
		if err != nil {
			return err
		}
		if len(s.Points) != len(g.Wh) {
			diff("%s: %d quarter hours, want %d", t.EIC, len(s.Points), len(g.Wh))
		}
		for i, p := range s.Points {
			if i >= len(g.Wh) {
				break
			}
			if p.EnergyWh != g.Wh[i] || p.MaLos != g.MaLos[i] || p.SubstituteValues != g.Substitutes[i] {
				diff("%s: quarter hour %d (%s): %d Wh from %d MaLos with %d substitute values, want %d Wh from %d with %d",
					t.EIC, i, p.Start.Format("2006-01-02 15:04 -07:00"), p.EnergyWh, p.MaLos, p.SubstituteValues, g.Wh[i], g.MaLos[i], g.Substitutes[i])
			}
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("loadgen: the read model differs from the expected month %s: %w", x.Month, errors.Join(diffs...))
	}
	return nil
}
