package pages

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/projector-dev/projector/examples/billing/mabis"
)

// assignment is one entry of a MaLo's assignments.
type assignment struct {
	ValidFrom, Supplier, BalanceGroup string
	Ended                             bool
}

// event is one event of a MaLo's stream, summarised.
type event struct {
	Sequence   uint64
	RecordedAt time.Time
	Type       string
	Kind       string // assignment, values, correction, clearing
	Summary    string
}

// malo shows a MaLo's month.
func (p *pages) malo(w http.ResponseWriter, r *http.Request) {
	m, ok := p.month(w, r)
	if !ok {
		return
	}
	id := strings.TrimSpace(r.URL.Query().Get("malo"))
	data := struct {
		Prefix      string
		Month       mabis.Month
		MaLo        string
		Detail      *mabis.MaLoMonth
		Assignments []assignment
		Events      []event
		EventsErr   string
		HasEvents   bool
	}{Prefix: p.cfg.Console.Prefix(), Month: m, MaLo: id, HasEvents: p.cfg.Events != nil}
	if id == "" {
		p.cfg.Console.Render(w, r, http.StatusOK, "MaLo", 0, p.tmpl["malo"], data)
		return
	}
	if err := mabis.ValidateMaLoID(id); err != nil {
		p.fail(w, r, http.StatusBadRequest, fmt.Errorf("parameter malo: %w", err))
		return
	}
	rd, ok := p.live(w, r)
	if !ok {
		return
	}
	d, err := rd.MaLo(r.Context(), m, id)
	if err != nil {
		p.readErr(w, r, err)
		return
	}
	data.Detail = &d
	for from, v := range d.Assignments {
		a := assignment{ValidFrom: from, Ended: v == "ended"}
		if !a.Ended {
			a.Supplier, a.BalanceGroup, _ = strings.Cut(v, " ")
		}
		data.Assignments = append(data.Assignments, a)
	}
	slices.SortFunc(data.Assignments, func(a, b assignment) int { return strings.Compare(a.ValidFrom, b.ValidFrom) })
	if p.cfg.Events != nil {
		data.Events, err = p.events(r, m, rd.Tenant(), id)
		if err != nil {
			data.EventsErr = err.Error()
		}
	}
	p.cfg.Console.Render(w, r, http.StatusOK, "MaLo "+id+" in "+m.String(), 0, p.tmpl["malo"], data)
}

// maxEvents bounds the events shown of one stream.
const maxEvents = 500

// events reads the MaLo's stream of the month and summarises each event.
func (p *pages) events(r *http.Request, m mabis.Month, tenant, malo string) ([]event, error) {
	stream, err := mabis.StreamID(tenant, malo, m)
	if err != nil {
		return nil, err
	}
	var out []event
	for e, err := range p.cfg.Events.ReadStream(r.Context(), stream, 0) {
		if err != nil {
			return out, err
		}
		if len(out) == maxEvents {
			break
		}
		ev := event{Sequence: e.Sequence, RecordedAt: e.RecordedAt.In(mabis.Berlin()), Type: e.Type}
		payload, err := mabis.Decode(e, m)
		if err != nil {
			ev.Kind, ev.Summary = "error", err.Error()
			out = append(out, ev)
			continue
		}
		ev.Kind, ev.Summary = summarise(payload)
		out = append(out, ev)
	}
	return out, nil
}

// summarise describes an event of a billing stream in a line.
func summarise(pl mabis.Payload) (kind, summary string) {
	sum := func(v mabis.DayValues) (int64, int) {
		var wh int64
		for _, x := range v.Wh {
			wh += x
		}
		return wh, strings.Count(v.Quality, "S")
	}
	switch e := pl.(type) {
	case mabis.AssignmentBegun:
		return "assignment", fmt.Sprintf("from %s: supplier %s, balance group %s", e.ValidFrom, e.Supplier, e.BalanceGroup)
	case mabis.AssignmentChanged:
		return "assignment", fmt.Sprintf("changed from %s: supplier %s, balance group %s", e.ValidFrom, e.Supplier, e.BalanceGroup)
	case mabis.AssignmentEnded:
		return "assignment", fmt.Sprintf("ended from %s", e.ValidFrom)
	case mabis.DayValuesReceived:
		wh, s := sum(e.DayValues)
		return "values", fmt.Sprintf("%s: %d values, %s, %d substitute, balance group %s", e.Day, len(e.Wh), mabis.FormatWh(wh), s, e.BalanceGroup)
	case mabis.ValuesCorrected:
		wh, s := sum(e.DayValues)
		moved := ""
		if e.MovedFrom != "" {
			moved = ", moved from " + e.MovedFrom
		}
		return "correction", fmt.Sprintf("%s: %s, %d substitute, balance group %s%s; %s", e.Day, mabis.FormatWh(wh), s, e.BalanceGroup, moved, e.Reason)
	case mabis.ClearingCaseOpened:
		return "clearing", fmt.Sprintf("case %s opened (%s%s): %s", e.CaseID, e.BalanceGroup, dayNote(e.Day), e.Reason)
	case mabis.ClearingCaseResolved:
		return "clearing", fmt.Sprintf("case %s resolved (%s): %s", e.CaseID, e.BalanceGroup, e.Resolution)
	}
	raw, _ := json.Marshal(pl)
	return "other", string(raw)
}

func dayNote(day string) string {
	if day == "" {
		return ""
	}
	return ", day " + day
}
