package mabis

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/projector-dev/projector/framework"
)

// SchemaVersion is the version of every payload schema in this file.
const SchemaVersion = 1

// Event types of a MaLo's billing stream.
const (
	// TypeAssignmentBegun: supply by a supplier, in a balance group,
	// begins (Lieferbeginn) or is in effect from before the month.
	TypeAssignmentBegun = "AssignmentBegun"
	// TypeAssignmentChanged: from a day on, the MaLo is assigned to another
	// supplier or balance group (Lieferantenwechsel, Bilanzkreiswechsel).
	TypeAssignmentChanged = "AssignmentChanged"
	// TypeAssignmentEnded: supply ends (Lieferende).
	TypeAssignmentEnded = "AssignmentEnded"
	// TypeDayValuesReceived: the quarter-hour values of one day arrived.
	TypeDayValuesReceived = "DayValuesReceived"
	// TypeValuesCorrected: the values of one day are replaced.
	TypeValuesCorrected = "ValuesCorrected"
	// TypeClearingCaseOpened: a clearing case (Klärfall) was opened.
	TypeClearingCaseOpened = "ClearingCaseOpened"
	// TypeClearingCaseResolved: a clearing case was resolved.
	TypeClearingCaseResolved = "ClearingCaseResolved"
)

// Quality flags of a quarter-hour value, one character per quarter hour in
// the "quality" field.
const (
	// Measured is a true value (wahrer Wert) from the meter.
	Measured = 'M'
	// Substitute is a substitute value (Ersatzwert) formed by the metering
	// point operator where no true value was available.
	Substitute = 'S'
)

// MaxQuarterHourWh bounds one quarter-hour value (1 GWh): larger values are
// typing errors, not loads of a distribution grid.
const MaxQuarterHourWh = 1_000_000_000

// Payload is the decoded payload of one event type.
type Payload interface {
	// EventType returns the event type the payload belongs to.
	EventType() string
	// MaLoID returns the MaLo the payload is about, which must be the
	// MaLo of its stream. (A method named MaLo would clash with the
	// payloads' MaLo field.)
	MaLoID() string
	// Validate reports the first problem of the payload in a stream of
	// month m, as a *PayloadError naming the field.
	Validate(m Month) error
}

// AssignmentBegun says that from ValidFrom on the MaLo is supplied by
// Supplier and settled in BalanceGroup. ValidFrom may lie before the month:
// the first event of a month's stream states the assignment carried over.
//
//	{"malo":"41373559241","supplier":"9900000000017","balance_group":"11YNORDSTROM--1","valid_from":"2026-03-01"}
type AssignmentBegun struct {
	MaLo         string `json:"malo"`
	Supplier     string `json:"supplier"`
	BalanceGroup string `json:"balance_group"`
	ValidFrom    string `json:"valid_from"`
}

// AssignmentChanged says that from ValidFrom (a day of the month) on the
// MaLo is supplied by Supplier and settled in BalanceGroup. Same JSON as
// AssignmentBegun.
type AssignmentChanged AssignmentBegun

// AssignmentEnded says that the MaLo has no supplier from ValidFrom on:
// the day after the last day of supply.
//
//	{"malo":"41373559241","valid_from":"2026-03-21"}
type AssignmentEnded struct {
	MaLo      string `json:"malo"`
	ValidFrom string `json:"valid_from"`
}

// DayValues are the quarter-hour values of one MaLo for one day.
// Wh holds one value per quarter hour of the day (92, 96 or 100), in
// watt-hours, from local midnight on; Quality holds one flag per quarter
// hour, Measured or Substitute. BalanceGroup and Supplier are those
// assigned on Day: the write side stamps them (see the package
// documentation).
type DayValues struct {
	MaLo         string  `json:"malo"`
	Day          string  `json:"day"`
	Supplier     string  `json:"supplier"`
	BalanceGroup string  `json:"balance_group"`
	Wh           []int64 `json:"wh"`
	Quality      string  `json:"quality"`
}

// DayValuesReceived is the first delivery of a day's values.
//
//	{"malo":"41373559241","day":"2026-03-02","supplier":"9900000000017",
//	 "balance_group":"11YNORDSTROM--1","wh":[112,108,...],"quality":"MMMM...SSMM"}
type DayValuesReceived struct {
	DayValues
}

// ValuesCorrected replaces every value of a day, which may or may not have
// been received before; the values it names are the day's values from then
// on. When the day moves to another balance group (after a retroactive
// assignment change), MovedFrom names the balance group the day's values
// were settled in until now; it must be the one of the day's last delivery.
//
//	{"malo":"41373559241","day":"2026-03-02","supplier":"9900000000017",
//	 "balance_group":"11YNORDSTROM--1","wh":[...],"quality":"MMMM...",
//	 "reason":"true values replace substitute values"}
type ValuesCorrected struct {
	DayValues
	MovedFrom string `json:"moved_from,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// ClearingCaseOpened records a clearing case (Klärfall) about the MaLo,
// such as missing values or a disputed assignment. It changes no sum; the
// read model counts open cases per month and balance group.
//
//	{"malo":"41373559241","case_id":"K-2026-03-0001","balance_group":"11YNORDSTROM--1",
//	 "day":"2026-03-09","reason":"values missing"}
type ClearingCaseOpened struct {
	MaLo         string `json:"malo"`
	CaseID       string `json:"case_id"`
	BalanceGroup string `json:"balance_group,omitempty"`
	Day          string `json:"day,omitempty"`
	Reason       string `json:"reason,omitempty"`
}

// ClearingCaseResolved records that a clearing case was resolved.
//
//	{"malo":"41373559241","case_id":"K-2026-03-0001","balance_group":"11YNORDSTROM--1",
//	 "resolution":"substitute values sent"}
type ClearingCaseResolved struct {
	MaLo         string `json:"malo"`
	CaseID       string `json:"case_id"`
	BalanceGroup string `json:"balance_group,omitempty"`
	Resolution   string `json:"resolution,omitempty"`
}

// EventType implements Payload.
func (AssignmentBegun) EventType() string { return TypeAssignmentBegun }

// EventType implements Payload.
func (AssignmentChanged) EventType() string { return TypeAssignmentChanged }

// EventType implements Payload.
func (AssignmentEnded) EventType() string { return TypeAssignmentEnded }

// EventType implements Payload.
func (DayValuesReceived) EventType() string { return TypeDayValuesReceived }

// EventType implements Payload.
func (ValuesCorrected) EventType() string { return TypeValuesCorrected }

// EventType implements Payload.
func (ClearingCaseOpened) EventType() string { return TypeClearingCaseOpened }

// EventType implements Payload.
func (ClearingCaseResolved) EventType() string { return TypeClearingCaseResolved }

// MaLoID implements Payload.
func (p AssignmentBegun) MaLoID() string { return p.MaLo }

// MaLoID implements Payload.
func (p AssignmentChanged) MaLoID() string { return p.MaLo }

// MaLoID implements Payload.
func (p AssignmentEnded) MaLoID() string { return p.MaLo }

// MaLoID implements Payload for DayValuesReceived and ValuesCorrected.
func (v DayValues) MaLoID() string { return v.MaLo }

// MaLoID implements Payload.
func (p ClearingCaseOpened) MaLoID() string { return p.MaLo }

// MaLoID implements Payload.
func (p ClearingCaseResolved) MaLoID() string { return p.MaLo }

// checker collects the first problem of a payload.
type checker struct {
	typ string
	err error
}

func (c *checker) fail(field string, err error) {
	if c.err == nil {
		c.err = &PayloadError{Type: c.typ, Field: field, Err: err}
	}
}

func (c *checker) malo(v string) {
	if v == "" {
		c.fail("malo", errors.New("missing"))
	} else if err := ValidateMaLoID(v); err != nil {
		c.fail("malo", err)
	}
}

func (c *checker) eic(field, v string, required bool) {
	if v == "" {
		if required {
			c.fail(field, errors.New("missing"))
		}
	} else if err := ValidateEIC(v); err != nil {
		c.fail(field, err)
	}
}

func (c *checker) supplier(v string) {
	if v == "" {
		c.fail("supplier", errors.New("missing"))
	} else if err := ValidateMarketPartnerID(v); err != nil {
		c.fail("supplier", err)
	}
}

// day parses a required day field. When set, notAfter is the latest day
// allowed and inMonth the month the day must lie in.
func (c *checker) day(field, v string, notAfter Day, inMonth Month) Day {
	if v == "" {
		c.fail(field, errors.New("missing"))
		return Day{}
	}
	d, err := ParseDay(v)
	if err != nil {
		c.fail(field, err)
		return Day{}
	}
	if inMonth != (Month{}) && !inMonth.Contains(d) {
		c.fail(field, fmt.Errorf("%s is not in the stream's month %s", d, inMonth))
	}
	if notAfter != (Day{}) && notAfter.Before(d) {
		c.fail(field, fmt.Errorf("%s is after the stream's month", d))
	}
	return d
}

func (c *checker) text(field, v string, required bool, max int) {
	switch {
	case v == "" && required:
		c.fail(field, errors.New("missing"))
	case len(v) > max:
		c.fail(field, fmt.Errorf("longer than %d bytes", max))
	}
}

// Validate implements Payload.
func (p AssignmentBegun) Validate(m Month) error {
	c := checker{typ: TypeAssignmentBegun}
	c.malo(p.MaLo)
	c.supplier(p.Supplier)
	c.eic("balance_group", p.BalanceGroup, true)
	c.day("valid_from", p.ValidFrom, m.LastDay(), Month{})
	return c.err
}

// Validate implements Payload.
func (p AssignmentChanged) Validate(m Month) error {
	c := checker{typ: TypeAssignmentChanged}
	c.malo(p.MaLo)
	c.supplier(p.Supplier)
	c.eic("balance_group", p.BalanceGroup, true)
	c.day("valid_from", p.ValidFrom, Day{}, m)
	return c.err
}

// Validate implements Payload.
func (p AssignmentEnded) Validate(m Month) error {
	c := checker{typ: TypeAssignmentEnded}
	c.malo(p.MaLo)
	c.day("valid_from", p.ValidFrom, Day{}, m)
	return c.err
}

// validate checks day values of a stream of month m.
func (p DayValues) validate(c *checker, m Month) {
	c.malo(p.MaLo)
	d := c.day("day", p.Day, Day{}, m)
	c.supplier(p.Supplier)
	c.eic("balance_group", p.BalanceGroup, true)
	if c.err != nil {
		return
	}
	slots := d.Slots()
	if len(p.Wh) != slots {
		c.fail("wh", fmt.Errorf("%d values, but %s has %d quarter hours", len(p.Wh), d, slots))
		return
	}
	for i, v := range p.Wh {
		if v < 0 || v > MaxQuarterHourWh {
			c.fail(fmt.Sprintf("wh[%d]", i), fmt.Errorf("%d Wh is outside 0 to %d", v, MaxQuarterHourWh))
			return
		}
	}
	if len(p.Quality) != slots {
		c.fail("quality", fmt.Errorf("%d flags, but %s has %d quarter hours", len(p.Quality), d, slots))
		return
	}
	for i := range len(p.Quality) {
		if f := p.Quality[i]; f != Measured && f != Substitute {
			c.fail(fmt.Sprintf("quality[%d]", i), fmt.Errorf("flag %q: want %q (measured) or %q (substitute)", f, Measured, Substitute))
			return
		}
	}
}

// Validate implements Payload.
func (p DayValuesReceived) Validate(m Month) error {
	c := checker{typ: TypeDayValuesReceived}
	p.validate(&c, m)
	return c.err
}

// Validate implements Payload.
func (p ValuesCorrected) Validate(m Month) error {
	c := checker{typ: TypeValuesCorrected}
	p.validate(&c, m)
	c.eic("moved_from", p.MovedFrom, false)
	if p.MovedFrom != "" && p.MovedFrom == p.BalanceGroup {
		c.fail("moved_from", fmt.Errorf("equals balance_group %s", p.BalanceGroup))
	}
	c.text("reason", p.Reason, false, 512)
	return c.err
}

// validCaseID reports whether id can name a clearing case: 1 to 64
// characters from [A-Za-z0-9._-].
func validCaseID(id string) error {
	if id == "" {
		return errors.New("missing")
	}
	if len(id) > 64 {
		return errors.New("longer than 64 characters")
	}
	if i := strings.IndexFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}); i >= 0 {
		return fmt.Errorf("character %d is %q: only A-Z, a-z, 0-9, '.', '_' and '-' are allowed", i+1, id[i])
	}
	return nil
}

// Validate implements Payload.
func (p ClearingCaseOpened) Validate(m Month) error {
	c := checker{typ: TypeClearingCaseOpened}
	c.malo(p.MaLo)
	if err := validCaseID(p.CaseID); err != nil {
		c.fail("case_id", err)
	}
	c.eic("balance_group", p.BalanceGroup, false)
	if p.Day != "" {
		c.day("day", p.Day, Day{}, m)
	}
	c.text("reason", p.Reason, false, 512)
	return c.err
}

// Validate implements Payload.
func (p ClearingCaseResolved) Validate(m Month) error {
	c := checker{typ: TypeClearingCaseResolved}
	c.malo(p.MaLo)
	if err := validCaseID(p.CaseID); err != nil {
		c.fail("case_id", err)
	}
	c.eic("balance_group", p.BalanceGroup, false)
	c.text("resolution", p.Resolution, false, 512)
	return c.err
}

// Decode decodes and validates the payload of an event of a stream of month
// m. It returns nil and no error for an event type it does not know: new
// event types must not break this read model. A known type with another
// schema version, a payload that does not decode and one that does not
// validate are *PayloadErrors naming the field. The payload is a value
// (AssignmentBegun, not *AssignmentBegun), as Encode takes it.
func Decode(e framework.Event, m Month) (Payload, error) {
	t, ok := eventTypes[e.Type]
	if !ok {
		return nil, nil
	}
	return t.decode(e, m)
}

// decodePayload decodes the payload of e into p, a pointer to a payload
// type, and validates it for a stream of month m.
func decodePayload(e framework.Event, p Payload, m Month) error {
	if e.SchemaVersion != SchemaVersion {
		return &PayloadError{Type: e.Type, Field: "schema_version", Err: fmt.Errorf("version %d: this read model knows version %d", e.SchemaVersion, SchemaVersion)}
	}
	if err := json.Unmarshal(e.Data, p); err != nil {
		field := ""
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			// The embedded DayValues shows in the path; its fields are
			// top-level in the JSON.
			field = strings.TrimPrefix(te.Field, "DayValues.")
		}
		return &PayloadError{Type: e.Type, Field: field, Err: err}
	}
	return p.Validate(m)
}

// decodeEvent is the billing projection's [redischeckpoint.Decoder]: v is
// a pointer to the payload type of e's handler. Besides what Decode checks
// it checks the stream ID and that the payload is about the stream's MaLo.
func decodeEvent(e framework.Event, v any) error {
	_, malo, m, err := ParseStreamID(e.StreamID)
	if err != nil {
		return fmt.Errorf("%s event %s: %w", e.Type, e, err)
	}
	p := v.(Payload)
	if err := decodePayload(e, p, m); err != nil {
		return fmt.Errorf("event %s: %w", e, err)
	}
	if got := p.MaLoID(); got != malo {
		return fmt.Errorf("event %s: %w", e, &PayloadError{Type: e.Type, Field: "malo", Err: fmt.Errorf("%s, but the stream is of MaLo %s", got, malo)})
	}
	return nil
}

// Encode returns the event to append for p: its type, the schema version
// and the JSON payload. It does not validate p.
func Encode(p Payload) (framework.EventData, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return framework.EventData{}, fmt.Errorf("mabis: encode %s: %w", p.EventType(), err)
	}
	return framework.EventData{Type: p.EventType(), SchemaVersion: SchemaVersion, Data: data}, nil
}

// StreamID returns the billing stream of a MaLo for a month,
// "process/{tenant}/{malo}-{YYYY-MM}".
func StreamID(tenant, malo string, m Month) (string, error) {
	if err := ValidateMaLoID(malo); err != nil {
		return "", err
	}
	return framework.ProcessStreamID(tenant, malo+"-"+m.String())
}

// ParseStreamID splits a billing stream ID into tenant, MaLo and month.
func ParseStreamID(id string) (tenant, malo string, m Month, err error) {
	rest, ok := strings.CutPrefix(id, framework.ProcessPrefix)
	tenant, process, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || len(process) != MaLoIDLength+1+7 || process[MaLoIDLength] != '-' {
		return "", "", Month{}, fmt.Errorf("%w: %q: want process/{tenant}/{malo}-{YYYY-MM}", ErrInvalidStreamID, id)
	}
	if err := framework.ValidateTenantID(tenant); err != nil {
		return "", "", Month{}, fmt.Errorf("%w: %q: %w", ErrInvalidStreamID, id, err)
	}
	malo = process[:MaLoIDLength]
	if err := ValidateMaLoID(malo); err != nil {
		return "", "", Month{}, fmt.Errorf("%w: %q: %w", ErrInvalidStreamID, id, err)
	}
	m, err = ParseMonth(process[MaLoIDLength+1:])
	if err != nil {
		return "", "", Month{}, fmt.Errorf("%w: %q: %w", ErrInvalidStreamID, id, err)
	}
	return tenant, malo, m, nil
}
