package mabis

import (
	"fmt"
	"strconv"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/redischeckpoint"
)

// ProjectionName is the name of the billing projection. It names the Kafka
// consumer group, the checkpoint and every Redis key of the read model:
// renaming it starts an empty read model under a new consumer group.
const ProjectionName = "billing"

// NewProjection returns the billing projection on store, named name
// (normally ProjectionName).
func NewProjection(store *redischeckpoint.Store, name string) (*redischeckpoint.AtomicProjection, error) {
	return store.NewAtomicProjection(name, Apply)
}

// The key functions below build the layout described in the package
// documentation, as parts for Writes.Key and AtomicProjection.Key.

func monthKey(tenant string, m Month, parts ...string) []string {
	return append([]string{tenant, m.String()}, parts...)
}

func balanceGroupsKey(tenant string, m Month) []string {
	return monthKey(tenant, m, "balance-groups")
}

func bkKey(tenant string, m Month, eic, kind string) []string {
	return monthKey(tenant, m, "bk", eic, kind)
}

func clearingKey(tenant string, m Month) []string { return monthKey(tenant, m, "clearing") }

func clearingOpenKey(tenant string, m Month) []string {
	return monthKey(tenant, m, "clearing", "open")
}

func maloKey(tenant string, m Month, malo string) []string {
	return monthKey(tenant, m, "malo", malo)
}

func maloDayKey(tenant string, m Month, malo string, d Day) []string {
	return monthKey(tenant, m, "malo", malo, d.String())
}

// Hash kinds of a balance group's series.
const (
	kindWh          = "wh"
	kindMaLos       = "malos"
	kindSubstitutes = "substitutes"
	kindAssigned    = "assigned"
	kindSuppliers   = "suppliers"
)

// Apply is the billing projection's [redischeckpoint.ApplyFunc]: it turns
// one event of a MaLo's billing stream into Redis writes (see the package
// documentation for the keys).
//
//   - Day values: the day's quarter-hour values are one
//     Writes.ReplaceFields of the fields {slot} of the MaLo's day hash, which
//     adjusts the group's sums (wh) by the differences to the values it
//     replaces. A second one writes the field {day} = 1, which counts the
//     MaLo in the group's day (malos) the first time. Substitute flags are
//     a third, of the fields s{slot} with 0 or 1, adjusting the group's
//     substitute counts. So a correction replaces; it never adds, and
//     re-delivered events count once (the cursor check of
//     redischeckpoint.AtomicProjection skips them). An event is a handful
//     of Redis commands inside the script, not several per quarter hour.
//   - A first delivery (DayValuesReceived) writes flags of substitute
//     values only; a correction writes every flag, so that a true value
//     replacing a substitute value takes it out of the count, and then
//     drops the flags that are 0 again, to keep the day hash small.
//   - A correction with MovedFrom first replaces the day's values and flags
//     in the old group by 0, takes the MaLo out of the old group's count
//     and drops the day hash; then it writes the day as a first delivery
//     to the new group.
//   - Assignment events record the MaLo's assignment timeline and the
//     group's assigned MaLos and suppliers. They move no values: the
//     balance group of a day's values is the one the values event names.
//   - Clearing cases count opened and resolved cases per month and group.
//
// Events of unknown types are ignored, also on streams that are not
// billing streams. A known type on a stream ID that is not
// "process/{tenant}/{malo}-{YYYY-MM}", another schema version, or a payload
// that does not validate or names another MaLo than its stream is an error:
// the stream stops there (and the runner parks it) rather than settle
// wrong sums.
func Apply(e framework.Event, w *redischeckpoint.Writes) error {
	if newPayload(e.Type) == nil {
		return nil
	}
	tenant, malo, m, err := ParseStreamID(e.StreamID)
	if err != nil {
		return fmt.Errorf("%s event %s: %w", e.Type, e, err)
	}
	p, err := Decode(e, m)
	if err != nil {
		return fmt.Errorf("event %s: %w", e, err)
	}
	key := func(parts []string) string { return w.Key(parts...) }
	if got := payloadMaLo(p); got != malo {
		return fmt.Errorf("event %s: %w", e, &PayloadError{Type: e.Type, Field: "malo", Err: fmt.Errorf("%s, but the stream is of MaLo %s", got, malo)})
	}
	switch p := p.(type) {
	case AssignmentBegun:
		assign(w, key, tenant, m, malo, p.ValidFrom, p.Supplier, p.BalanceGroup)
	case AssignmentChanged:
		assign(w, key, tenant, m, malo, p.ValidFrom, p.Supplier, p.BalanceGroup)
	case AssignmentEnded:
		w.HSet(key(maloKey(tenant, m, malo)), p.ValidFrom, "ended")
	case DayValuesReceived:
		writeDay(w, key, tenant, m, p.DayValues, false)
	case ValuesCorrected:
		if p.MovedFrom != "" {
			moveOut(w, key, tenant, m, p.DayValues, p.MovedFrom)
			writeDay(w, key, tenant, m, p.DayValues, false)
		} else {
			writeDay(w, key, tenant, m, p.DayValues, true)
		}
	case ClearingCaseOpened:
		clearing(w, key, tenant, m, "opened", p.BalanceGroup)
		w.SAdd(key(clearingOpenKey(tenant, m)), malo+"/"+p.CaseID)
	case ClearingCaseResolved:
		clearing(w, key, tenant, m, "resolved", p.BalanceGroup)
		w.SRem(key(clearingOpenKey(tenant, m)), malo+"/"+p.CaseID)
	}
	return nil
}

func payloadMaLo(p Payload) string {
	switch p := p.(type) {
	case AssignmentBegun:
		return p.MaLo
	case AssignmentChanged:
		return p.MaLo
	case AssignmentEnded:
		return p.MaLo
	case DayValuesReceived:
		return p.MaLo
	case ValuesCorrected:
		return p.MaLo
	case ClearingCaseOpened:
		return p.MaLo
	case ClearingCaseResolved:
		return p.MaLo
	}
	return ""
}

type keyFunc func(parts []string) string

func assign(w *redischeckpoint.Writes, key keyFunc, tenant string, m Month, malo, validFrom, supplier, eic string) {
	w.HSet(key(maloKey(tenant, m, malo)), validFrom, supplier+" "+eic)
	w.SAdd(key(balanceGroupsKey(tenant, m)), eic)
	w.SAdd(key(bkKey(tenant, m, eic, kindAssigned)), malo)
	w.SAdd(key(bkKey(tenant, m, eic, kindSuppliers)), supplier)
}

// maxMonthSlots is the most quarter hours of a month (31 days with the
// autumn clock change).
const maxMonthSlots = 31*96 + 4

// valueFields and flagFields are the field names of the day hashes and of
// the group's series: "0".."2979" for the values, "s0".."s2979" for the
// substitute flags, numbered by the quarter hour of the month.
var valueFields, flagFields = slotFields()

func slotFields() (values, flags []string) {
	for q := range maxMonthSlots {
		values = append(values, strconv.Itoa(q))
		flags = append(flags, "s"+strconv.Itoa(q))
	}
	return values, flags
}

// writeDay replaces the day's values in its balance group. allFlags writes
// measured flags too (for corrections); otherwise only substitute flags are
// written, since a first delivery has no flags to replace.
func writeDay(w *redischeckpoint.Writes, key keyFunc, tenant string, m Month, v DayValues, allFlags bool) {
	d, _ := ParseDay(v.Day) // validated
	dayKey := key(maloDayKey(tenant, m, v.MaLo, d))
	first, n := m.FirstSlot(d), len(v.Wh) // validated: d.Slots()
	w.ReplaceFields(dayKey, valueFields[first:first+n], v.Wh, []string{key(bkKey(tenant, m, v.BalanceGroup, kindWh))}, nil)
	// A delivery always holds every quarter hour of its day, so the MaLos
	// with a value in a quarter hour are those with a delivery that day:
	// one count per day, raised when the day's marker field is new.
	w.ReplaceFields(dayKey, []string{d.String()}, []int64{1}, nil, []string{key(bkKey(tenant, m, v.BalanceGroup, kindMaLos))})
	var fields, measured []string
	var flags []int64
	for q := range n {
		switch {
		case v.Quality[q] == Substitute:
			fields, flags = append(fields, flagFields[first+q]), append(flags, 1)
		case allFlags:
			fields, flags = append(fields, flagFields[first+q]), append(flags, 0)
			measured = append(measured, flagFields[first+q])
		}
	}
	w.ReplaceFields(dayKey, fields, flags, []string{key(bkKey(tenant, m, v.BalanceGroup, kindSubstitutes))}, nil)
	if len(measured) > 0 {
		w.HDel(dayKey, measured...) // absent means measured
	}
	w.SAdd(key(balanceGroupsKey(tenant, m)), v.BalanceGroup)
}

// moveOut takes the day's values out of the balance group from, where the
// day's last delivery settled them.
func moveOut(w *redischeckpoint.Writes, key keyFunc, tenant string, m Month, v DayValues, from string) {
	d, _ := ParseDay(v.Day) // validated
	dayKey := key(maloDayKey(tenant, m, v.MaLo, d))
	first, n := m.FirstSlot(d), d.Slots()
	zeros := make([]int64, n)
	w.ReplaceFields(dayKey, valueFields[first:first+n], zeros, []string{key(bkKey(tenant, m, from, kindWh))}, nil)
	w.ReplaceFields(dayKey, flagFields[first:first+n], zeros, []string{key(bkKey(tenant, m, from, kindSubstitutes))}, nil)
	w.HIncrBy(key(bkKey(tenant, m, from, kindMaLos)), d.String(), -1)
	w.Del(dayKey)
}

func clearing(w *redischeckpoint.Writes, key keyFunc, tenant string, m Month, what, eic string) {
	k := key(clearingKey(tenant, m))
	w.HIncrBy(k, what, 1)
	if eic != "" {
		w.HIncrBy(k, what+":"+eic, 1)
		w.SAdd(key(balanceGroupsKey(tenant, m)), eic)
	}
}
