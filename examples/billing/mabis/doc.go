// Package mabis is the domain of the billing example: the MaBiS
// Bilanzkreisabrechnung (balance-group settlement) of a German distribution
// grid operator (Verteilnetzbetreiber) for one billing month.
//
// Every market location (Marktlokation, MaLo) of the grid has one event
// stream per billing month, "process/{tenant}/{malo}-{YYYY-MM}". The stream
// records which supplier (Lieferant) and which balance group (Bilanzkreis)
// the MaLo is assigned to from which day on, the quarter-hour energy values
// of each day, corrections of those values and clearing cases (Klärfälle).
// The "billing" projection aggregates them into one sum time series per
// month and balance group: per quarter hour the energy in watt-hours, the
// number of MaLos that contributed and how many of their values were
// substitute values (Ersatzwerte).
//
// # Identifiers
//
// [ValidateMaLoID] checks the 11-digit MaLo-ID and its check digit,
// [ValidateEIC] the 16-character ENTSO-E Energy Identification Code of a
// balance group and its check character, [ValidateMarketPartnerID] the
// 13-digit BDEW code of a supplier.
//
// # The settlement grid
//
// Settlement is by quarter hour in German local time (Europe/Berlin): a day
// has 96 quarter hours, the day of the spring clock change 92, the autumn
// one 100. [Day] and [Month] number the quarter hours from 0 and convert
// between a quarter hour's index and its instant. Energy is an integer
// number of watt-hours, never a floating-point number.
//
// # Events
//
// The event types and their JSON payloads (schema version 1) are in
// events.go; see [AssignmentBegun], [AssignmentChanged], [AssignmentEnded],
// [DayValuesReceived], [ValuesCorrected], [ClearingCaseOpened] and
// [ClearingCaseResolved]. Each payload's Validate names the field at fault.
//
// A new event type touches two places:
//
//  1. its payload type in events.go, with a Type constant and the methods
//     of [Payload]: EventType, MaLoID and Validate;
//  2. one entry in the event table (eventTypes in projection.go),
//     on(func(s stream, p NewType) { ... }), which writes its events.
//
// [Decode] and [Apply] find the type through that table, which feeds a
// redischeckpoint.Handlers: no switch over event types in this package. An
// event type without an entry is ignored by both. The write side (the
// loadgen package) generates events and derives the expected read model
// on its own; it changes only if it is to produce the new type.
//
// # Which balance group a day belongs to
//
// A day's values belong to the balance group the MaLo is assigned to on
// that day (by valid-from). The MaLo's billing process (the write side)
// knows the assignments, so it stamps that balance group on every
// DayValuesReceived and ValuesCorrected it records: within a stream the
// assignment events come before the values they affect. The projection
// reads the balance group from the event and never infers it: it cannot
// read Redis while it prepares a batch, and state held in its memory would
// be lost with a restart or a rebalance.
//
// An assignment change that reaches back over days whose values were
// already recorded (a retroactive change) is followed in the stream by a
// ValuesCorrected for each such day, naming the balance group the day moves
// from (MovedFrom). The projection takes the day out of that group and puts
// it into the new one.
//
// A correction replaces the day's values; it never adds to them. See
// [Apply] for how each event is written and [Reader] for queries.
//
// # Read model
//
// The read model's keys lie below the projection's read-model prefix
// ("projector:{billing}:rm:"). {t} is the tenant, {m} the month "YYYY-MM",
// {eic} a balance group, {slot} a quarter hour of the month from 0, {day} a
// day "YYYY-MM-DD". This is layout 2 ([LayoutVersion]):
//
//	layout                          string: "2" (CheckLayout)
//	{t}:{m}:balance-groups          set: EICs with an assignment or values in the month
//	{t}:{m}:bk:{eic}:qh-wh          string: int64 per {slot} (8 bytes big-endian at 8*{slot}): sum of energy, Wh
//	{t}:{m}:bk:{eic}:qh-substitutes string: int64 per {slot}: number of substitute values
//	{t}:{m}:bk:{eic}:malos          hash: {day} -> number of MaLos with values that day
//	{t}:{m}:bk:{eic}:assigned       set: MaLos assigned to the group on a day of the month
//	{t}:{m}:bk:{eic}:suppliers      set: their suppliers
//	{t}:{m}:clearing                hash: opened, resolved, opened:{eic}, resolved:{eic}
//	{t}:{m}:clearing:open           set: {malo}/{case_id} of open cases
//	{t}:{m}:closed                  hash: state, closed_at, correction_window, dropped_keys (CloseMonth)
//	{t}:{m}:malo:{malo}             hash: {valid_from} -> "{supplier} {eic}", or "ended"
//	{t}:{m}:malo:{malo}:days        string: the MaLo's days, packed (below)
//
// A MaLo-month's days are one string written by redischeckpoint's
// Writes.ReplacePacked: a byte with the width w of its values (1 to 6
// bytes, the least its largest value needs; a wider value rewrites the
// string), a byte per day (1: delivered), then per day 13 bytes of
// substitute flags (one bit per quarter hour) and 100 values of w bytes
// (big-endian two's complement; 92, 96 or 100 used). About 6.6 KB for a
// month of household values (w = 2) instead of about 24 KB of hashes
// (layout 1). One ReplacePacked per values event replaces the day and, inside
// the apply script, takes the old values out of the group's sums and adds
// the new ones (BITFIELD on Redis), counts the MaLo in the group's day the
// first time and moves the day between groups for a MovedFrom: a
// correction replaces, it never adds.
//
// A delivery always holds every quarter hour of its day, so the MaLos that
// contributed to a quarter hour are those with a delivery that day, and
// they are counted per day (the reader spreads the count over the day's
// quarter hours).
//
// # Closing a month
//
// The MaLos' detail is needed only while corrections may come.
// [Reader.CloseMonth] (billing close-month) refuses a month inside its
// correction window ([DefaultCorrectionWindow], configurable), records the
// closure in {t}:{m}:closed, drops the {t}:{m}:malo:* keys and keeps
// everything else. Every event of a closed month is refused inside the
// apply script (Writes.RefuseIfExists on the closure, code CLOSED): its
// stream parks with the event, nothing of it is written. [Reader.MaLo]
// answers a closed month with a [*MonthClosedError]; the group queries
// answer as before.
//
// # Upgrading from layout 1
//
// Layout 1 kept hashes ({t}:{m}:bk:{eic}:wh, ...:substitutes and a hash
// per MaLo and day). This version neither reads nor writes it:
// [CheckLayout] stops the worker with [ErrOldLayout], and the reader
// answers ErrOldLayout. Rebuild the projection (projectorctl rebuild
// billing): the new version is built in layout 2 beside the old one, from
// the events in Kafka, and replaces it when it has caught up.
package mabis
