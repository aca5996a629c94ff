package pages

import (
	"net/http"

	"github.com/projector-dev/projector/examples/billing/mabis"
)

// groups shows the balance groups of a month with their totals.
func (p *pages) groups(w http.ResponseWriter, r *http.Request) {
	m, ok := p.month(w, r)
	if !ok {
		return
	}
	rd, ok := p.live(w, r)
	if !ok {
		return
	}
	totals, err := rd.BalanceGroups(r.Context(), m)
	if err != nil {
		p.readErr(w, r, err)
		return
	}
	p.cfg.Console.Render(w, r, http.StatusOK, "Balance groups "+m.String(), 0, p.tmpl["groups"], struct {
		Prefix string
		Month  mabis.Month
		Totals mabis.MonthTotals
		Slots  int
	}{p.cfg.Console.Prefix(), m, totals, m.Slots()})
}
