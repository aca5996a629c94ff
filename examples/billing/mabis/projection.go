package mabis

import (
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

func maloDaysKey(tenant string, m Month, malo string) []string {
	return monthKey(tenant, m, "malo", malo, "days")
}

// closedKey is the marker of a closed month (see CloseMonth).
func closedKey(tenant string, m Month) []string { return monthKey(tenant, m, "closed") }

// Kinds of a balance group's series. The packed series (qh-wh and
// qh-substitutes) are named apart from layout 1's hashes (wh and
// substitutes), so that no reader takes one for the other.
const (
	kindWh          = "qh-wh"
	kindMaLos       = "malos"
	kindSubstitutes = "qh-substitutes"
	oldKindWh       = "wh" // layout 1: a hash; see CheckLayout
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
	on(func(s stream, p DayValuesReceived) { s.writeDay(p.DayValues, "") }),
	on(func(s stream, p ValuesCorrected) { s.writeDay(p.DayValues, p.MovedFrom) }),
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
				w.RefuseIfExists(w.Key(closedKey(tenant, m)...), "CLOSED", "month "+m.String()+" is closed: its per-MaLo detail was dropped (see CloseMonth)")
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

// writeDay replaces the MaLo's day (values and substitute flags) in its
// packed month string and moves the day's aggregates: from the group of
// its last delivery (movedFrom, or the same group) to the group the event
// names. One Writes.ReplacePacked: the script reads the day's old values,
// takes them out of the old group's sums and adds the new ones, counts the
// MaLo in the group's day the first time and, when the day moves, takes it
// out of the old group's count.
func (s stream) writeDay(v DayValues, movedFrom string) {
	w, key, tenant, m := s.Writes, s.key, s.tenant, s.m
	d, _ := ParseDay(v.Day) // validated
	flags := make([]bool, len(v.Wh))
	for q := range flags {
		flags[q] = v.Quality[q] == Substitute
	}
	target := func(eic string) redischeckpoint.PackedTarget {
		return redischeckpoint.PackedTarget{
			Sums:      key(bkKey(tenant, m, eic, kindWh)),
			FlagSums:  key(bkKey(tenant, m, eic, kindSubstitutes)),
			Count:     redischeckpoint.HashField{Key: key(bkKey(tenant, m, eic, kindMaLos)), Field: d.String()},
			FirstSlot: m.FirstSlot(d),
			Slots:     m.Slots(),
		}
	}
	to, from := target(v.BalanceGroup), target(v.BalanceGroup)
	if movedFrom != "" {
		from = target(movedFrom)
	}
	w.ReplacePacked(key(maloDaysKey(tenant, m, v.MaLo)), d.Day-1, v.Wh, flags, from, to)
	w.SAdd(key(balanceGroupsKey(tenant, m)), v.BalanceGroup)
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
