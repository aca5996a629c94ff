package mabis

import (
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
//
// Apply dispatches through a [redischeckpoint.Handlers] built from the
// event table (eventTypes); its Decoder checks the stream ID, the schema
// version, the payload's Validate and its MaLo.
func Apply(e framework.Event, w *redischeckpoint.Writes) error {
	return handlers.Apply(e, w)
}

// eventTypes is the table of the event types this package knows: each
// entry pairs a payload type (which names its event type) with the writes
// of its events. It is the one place to register an event type; see the
// package documentation.
var eventTypes = newEventTable(
	on(func(s stream, p AssignmentBegun) { s.assign(p.ValidFrom, p.Supplier, p.BalanceGroup) }),
	on(func(s stream, p AssignmentChanged) { s.assign(p.ValidFrom, p.Supplier, p.BalanceGroup) }),
	on(func(s stream, p AssignmentEnded) { s.HSet(s.key(maloKey(s.tenant, s.m, s.malo)), p.ValidFrom, "ended") }),
	on(func(s stream, p DayValuesReceived) { s.writeDay(p.DayValues, false) }),
	on(func(s stream, p ValuesCorrected) {
		if p.MovedFrom != "" {
			s.moveOut(p.DayValues, p.MovedFrom)
			s.writeDay(p.DayValues, false)
		} else {
			s.writeDay(p.DayValues, true)
		}
	}),
	on(func(s stream, p ClearingCaseOpened) {
		s.clearing("opened", p.BalanceGroup)
		s.SAdd(s.key(clearingOpenKey(s.tenant, s.m)), s.malo+"/"+p.CaseID)
	}),
	on(func(s stream, p ClearingCaseResolved) {
		s.clearing("resolved", p.BalanceGroup)
		s.SRem(s.key(clearingOpenKey(s.tenant, s.m)), s.malo+"/"+p.CaseID)
	}),
)

// handlers dispatches Apply by event type; it ignores unknown types.
var handlers = eventTypes.handlers()

// eventType is an entry of the event table.
type eventType struct {
	name   string
	decode func(e framework.Event, m Month) (Payload, error) // for Decode
	handle func(h *redischeckpoint.Handlers)                 // registers the writes
}

// on returns the table entry of payload type P, whose events apply
// writes. The event type is P's EventType. (PP, inferred, is *P: the
// decoders fill a *P.)
func on[P Payload, PP interface {
	*P
	Payload
}](apply func(s stream, p P)) eventType {
	var zero P
	name := zero.EventType()
	return eventType{
		name: name,
		decode: func(e framework.Event, m Month) (Payload, error) {
			var p P
			if err := decodePayload(e, PP(&p), m); err != nil {
				return nil, err
			}
			return p, nil
		},
		handle: func(h *redischeckpoint.Handlers) {
			redischeckpoint.Handle(h, name, func(e framework.Event, p P, w *redischeckpoint.Writes) error {
				tenant, malo, m, _ := ParseStreamID(e.StreamID) // checked by decodeEvent
				apply(stream{Writes: w, tenant: tenant, m: m, malo: malo}, p)
				return nil
			})
		},
	}
}

type eventTable map[string]eventType

func newEventTable(types ...eventType) eventTable {
	t := eventTable{}
	for _, et := range types {
		if _, dup := t[et.name]; dup {
			panic("mabis: event type " + et.name + " registered twice")
		}
		t[et.name] = et
	}
	return t
}

// handlers returns the dispatch table of Apply: payloads decoded and
// checked by decodeEvent, unknown event types ignored.
func (t eventTable) handlers() *redischeckpoint.Handlers {
	h := &redischeckpoint.Handlers{Decoder: decodeEvent}
	for _, et := range t {
		et.handle(h)
	}
	return h
}

// stream is what an event's writes need: the writes and the tenant, month
// and MaLo of the event's stream.
type stream struct {
	*redischeckpoint.Writes
	tenant string
	m      Month
	malo   string
}

func (s stream) key(parts []string) string { return s.Key(parts...) }

func (s stream) assign(validFrom, supplier, eic string) {
	s.HSet(s.key(maloKey(s.tenant, s.m, s.malo)), validFrom, supplier+" "+eic)
	s.SAdd(s.key(balanceGroupsKey(s.tenant, s.m)), eic)
	s.SAdd(s.key(bkKey(s.tenant, s.m, eic, kindAssigned)), s.malo)
	s.SAdd(s.key(bkKey(s.tenant, s.m, eic, kindSuppliers)), supplier)
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
func (s stream) writeDay(v DayValues, allFlags bool) {
	w, key, tenant, m := s.Writes, s.key, s.tenant, s.m
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
func (s stream) moveOut(v DayValues, from string) {
	w, key, tenant, m := s.Writes, s.key, s.tenant, s.m
	d, _ := ParseDay(v.Day) // validated
	dayKey := key(maloDayKey(tenant, m, v.MaLo, d))
	first, n := m.FirstSlot(d), d.Slots()
	zeros := make([]int64, n)
	w.ReplaceFields(dayKey, valueFields[first:first+n], zeros, []string{key(bkKey(tenant, m, from, kindWh))}, nil)
	w.ReplaceFields(dayKey, flagFields[first:first+n], zeros, []string{key(bkKey(tenant, m, from, kindSubstitutes))}, nil)
	w.HIncrBy(key(bkKey(tenant, m, from, kindMaLos)), d.String(), -1)
	w.Del(dayKey)
}

func (s stream) clearing(what, eic string) {
	w, key, tenant, m := s.Writes, s.key, s.tenant, s.m
	k := key(clearingKey(tenant, m))
	w.HIncrBy(k, what, 1)
	if eic != "" {
		w.HIncrBy(k, what+":"+eic, 1)
		w.SAdd(key(balanceGroupsKey(tenant, m)), eic)
	}
}
