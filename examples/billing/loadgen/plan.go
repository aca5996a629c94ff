package loadgen

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/projector-dev/projector/examples/billing/mabis"
)

// assignment is one entry of a MaLo's assignment timeline: from day on,
// supplier and balance group, or no supply when ended.
type assignment struct {
	from     mabis.Day
	supplier string
	eic      string
	ended    bool
}

// timeline is ordered by from.
type timeline []assignment

// at returns the assignment in effect on d, and false when there is none
// (before the first entry or after an end).
func (t timeline) at(d mabis.Day) (assignment, bool) {
	var cur assignment
	found := false
	for _, a := range t {
		if d.Before(a.from) {
			break
		}
		cur, found = a, true
	}
	return cur, found && !cur.ended
}

// dayValues are one day's values as last delivered.
type dayValues struct {
	wh      []int64
	quality []byte
}

// maloMonth is the simulation of one MaLo's month: the events of its
// stream in order, and the truth they describe.
type maloMonth struct {
	id      string
	events  []mabis.Payload
	truth   timeline                // the assignments as they really were
	values  map[mabis.Day]dayValues // the final values of every delivered day
	clears  []clearingCase
	kindTag string
}

type clearingCase struct {
	eic      string
	resolved bool
}

// maloID returns the i-th MaLo-ID of a seed: ten digits from a bijection of
// i (so IDs never collide) and the check digit.
func maloID(seed uint64, i int) string {
	n := (uint64(i)*7919 + seed*104729) % 1_000_000_000
	first10 := fmt.Sprintf("5%09d", n)
	c, err := mabis.MaLoCheckDigit(first10)
	if err != nil {
		panic(err)
	}
	return first10 + string(c)
}

// Load profiles, percent of the base load per local hour.
var (
	householdShape = [24]int64{50, 40, 35, 35, 35, 40, 70, 110, 100, 90, 85, 90, 100, 95, 85, 85, 95, 120, 150, 160, 150, 130, 100, 70}
	businessShape  = [24]int64{30, 30, 30, 30, 30, 40, 80, 160, 200, 210, 210, 200, 180, 200, 210, 200, 180, 120, 70, 50, 40, 35, 30, 30}
)

// simulate builds MaLo i's month. Every random choice comes from a PRNG
// seeded with (seed, i), so the result does not depend on the order MaLos
// are generated in.
func simulate(cfg Config, market Market, i int) *maloMonth {
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1))
	m := cfg.Month
	days := m.Days()
	mm := &maloMonth{id: maloID(cfg.Seed, i), values: map[mabis.Day]dayValues{}}

	// Customer kind and base load per quarter hour, Wh.
	business := false
	var base int64
	switch r := rng.IntN(100); {
	case r < 80:
		mm.kindTag, base = "household", 60+rng.Int64N(100)
	case r < 98:
		mm.kindTag, base, business = "business", 400+rng.Int64N(2000), true
	default:
		mm.kindTag, base, business = "industry", 5000+rng.Int64N(25000), true
	}
	pickSupplier := func(not int) (int, string, string) {
		for {
			total := 0
			for _, s := range market.Suppliers {
				total += s.Weight
			}
			r := rng.IntN(total)
			si := 0
			for ; r >= market.Suppliers[si].Weight; si++ {
				r -= market.Suppliers[si].Weight
			}
			s := market.Suppliers[si]
			eic := market.BalanceGroups[s.BalanceGroups[rng.IntN(len(s.BalanceGroups))]].EIC
			if si != not {
				return si, s.ID, eic
			}
		}
	}

	// The true timeline, and when each entry becomes known.
	si, sup, bk := pickSupplier(-1)
	first := assignment{supplier: sup, eic: bk}
	if rng.IntN(100) < 4 { // supply begins in the month
		first.from = days[1+rng.IntN(len(days)-4)]
	} else { // carried over from an earlier month
		first.from = mabis.Day{Year: 2024, Month: time.January, Day: 1}.AddDays(rng.IntN(700))
	}
	mm.truth = timeline{first}
	var retro *assignment // a change recorded late, on retroOn
	var retroOn mabis.Day
	switch r := rng.IntN(100); {
	case r < 6: // supplier change in the month, announced in advance
		_, sup, bk := pickSupplier(si)
		from := days[2+rng.IntN(len(days)-4)]
		if first.from.Before(from) {
			mm.truth = append(mm.truth, assignment{from: from, supplier: sup, eic: bk})
		}
	case r < 8: // supply ends in the month
		from := days[4+rng.IntN(len(days)-6)]
		if first.from.Before(from) {
			mm.truth = append(mm.truth, assignment{from: from, ended: true})
		}
	case r < 10: // retroactive change: recorded days after it took effect
		_, sup, bk := pickSupplier(si)
		from := days[4+rng.IntN(len(days)-12)]
		if first.from.Before(from) {
			retro = &assignment{from: from, supplier: sup, eic: bk}
			retroOn = from.AddDays(2 + rng.IntN(4))
			mm.truth = append(mm.truth, *retro)
		}
	}
	known := timeline{first}

	emit := func(p mabis.Payload) { mm.events = append(mm.events, p) }
	emitAssignment := func(a assignment, begun bool) {
		switch {
		case a.ended:
			emit(mabis.AssignmentEnded{MaLo: mm.id, ValidFrom: a.from.String()})
		case begun:
			emit(mabis.AssignmentBegun{MaLo: mm.id, Supplier: a.supplier, BalanceGroup: a.eic, ValidFrom: a.from.String()})
		default:
			emit(mabis.AssignmentChanged{MaLo: mm.id, Supplier: a.supplier, BalanceGroup: a.eic, ValidFrom: a.from.String()})
		}
	}
	values := func(d mabis.Day) dayValues {
		n := d.Slots()
		v := dayValues{wh: make([]int64, n), quality: make([]byte, n)}
		weekend := d.Start().Weekday() == time.Saturday || d.Start().Weekday() == time.Sunday
		for q := range n {
			h := d.SlotStart(q).In(mabis.Berlin()).Hour()
			shape := householdShape[h]
			if business {
				shape = businessShape[h]
				if weekend {
					shape = 35
				}
			}
			x := base * shape / 100
			v.wh[q] = max(0, x+rng.Int64N(x/5+1)-x/10)
			v.quality[q] = mabis.Measured
		}
		return v
	}
	// stamped is the balance group a delivered day is settled in, as
	// recorded so far.
	stamped := map[mabis.Day]assignment{}
	type correction struct {
		day    mabis.Day
		reason string
	}
	due := map[mabis.Day][]correction{}
	var caseOpen []struct {
		id  string
		eic string
		on  mabis.Day
	}
	caseDue := map[mabis.Day][]int{}
	correct := func(x mabis.Day, reason string) {
		v := mm.values[x]
		nv := dayValues{wh: append([]int64(nil), v.wh...), quality: append([]byte(nil), v.quality...)}
		for q := range nv.wh {
			if nv.quality[q] == mabis.Substitute {
				// The true value replaces the substitute value.
				nv.quality[q] = mabis.Measured
				nv.wh[q] = max(0, nv.wh[q]+rng.Int64N(21)-10)
			}
		}
		if reason == "plausibility correction" {
			for range 1 + rng.IntN(4) {
				q := rng.IntN(len(nv.wh))
				nv.wh[q] = nv.wh[q] * int64(50+rng.IntN(100)) / 100
			}
		}
		mm.values[x] = nv
		a := stamped[x]
		emit(mabis.ValuesCorrected{DayValues: dayPayload(mm.id, x, a, nv), Reason: reason})
	}

	last := m.LastDay()
	for d := m.FirstDay(); !last.AddDays(10).Before(d); d = d.Next() {
		inMonth := m.Contains(d)
		if d == m.FirstDay() {
			emitAssignment(first, true)
		}
		for _, a := range mm.truth[1:] {
			if a.from == d && (retro == nil || a != *retro) {
				emitAssignment(a, false)
				known = append(known, a)
			}
		}
		if retro != nil && d == retroOn {
			emitAssignment(*retro, false)
			known = append(known, *retro)
			for x := retro.from; x.Before(d); x = x.Next() {
				v, ok := mm.values[x]
				if !ok {
					continue
				}
				old := stamped[x]
				stamped[x] = *retro
				emit(mabis.ValuesCorrected{DayValues: dayPayload(mm.id, x, *retro, v), MovedFrom: old.eic, Reason: "retroactive assignment change"})
			}
		}
		if a, ok := known.at(d); ok && inMonth {
			v := values(d)
			if rng.IntN(100) < 3 { // a gap in the meter's data, filled with substitute values
				from, n := rng.IntN(len(v.wh)-16), 4+rng.IntN(13)
				for q := from; q < from+n; q++ {
					v.quality[q] = mabis.Substitute
				}
				if rng.IntN(2) == 0 {
					later := d.AddDays(1 + rng.IntN(5))
					due[later] = append(due[later], correction{d, "true values replace substitute values"})
				}
			} else if rng.IntN(300) == 0 {
				later := d.AddDays(1 + rng.IntN(5))
				due[later] = append(due[later], correction{d, "plausibility correction"})
			}
			mm.values[d] = v
			stamped[d] = a
			emit(mabis.DayValuesReceived{DayValues: dayPayload(mm.id, d, a, v)})
			if retro == nil && rng.IntN(1000) < 3 { // a clearing case about this day
				id := fmt.Sprintf("KF-%s-%d", mm.id, len(caseOpen)+1)
				caseOpen = append(caseOpen, struct {
					id  string
					eic string
					on  mabis.Day
				}{id, a.eic, d})
				emit(mabis.ClearingCaseOpened{MaLo: mm.id, CaseID: id, BalanceGroup: a.eic, Day: d.String(), Reason: "implausible values"})
				c := clearingCase{eic: a.eic}
				if rng.IntN(10) < 7 {
					later := d.AddDays(2 + rng.IntN(8))
					caseDue[later] = append(caseDue[later], len(mm.clears))
					c.resolved = true
				}
				mm.clears = append(mm.clears, c)
			}
		}
		for _, c := range due[d] {
			correct(c.day, c.reason)
		}
		for _, k := range caseDue[d] {
			c := caseOpen[k]
			emit(mabis.ClearingCaseResolved{MaLo: mm.id, CaseID: c.id, BalanceGroup: c.eic, Resolution: "values confirmed by the metering point operator"})
		}
	}
	return mm
}

func dayPayload(malo string, d mabis.Day, a assignment, v dayValues) mabis.DayValues {
	return mabis.DayValues{
		MaLo: malo, Day: d.String(), Supplier: a.supplier, BalanceGroup: a.eic,
		Wh: append([]int64(nil), v.wh...), Quality: string(v.quality),
	}
}
