package pages

import (
	"encoding/csv"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/projector-dev/projector/console"
	"github.com/projector-dev/projector/examples/billing/mabis"
)

// row is one period of a group's curve.
type row struct {
	mabis.Point
	// MaLoValues is the number of MaLo values in the period (the MaLos
	// of each quarter hour, summed); Share the substitute values'
	// share of them, in percent (NaN without values).
	MaLoValues int64
	Share      float64
}

// curveRequest reads the month, group and resolution of a curve request
// and the series; it answers errors itself.
func (p *pages) curveRequest(w http.ResponseWriter, r *http.Request) (mabis.Month, mabis.Series, []row, bool) {
	m, ok := p.month(w, r)
	if !ok {
		return m, mabis.Series{}, nil, false
	}
	res := mabis.QuarterHourly
	if s := r.URL.Query().Get("resolution"); s != "" {
		var err error
		if res, err = mabis.ParseResolution(s); err != nil {
			p.fail(w, r, http.StatusBadRequest, fmt.Errorf("parameter resolution: %w", err))
			return m, mabis.Series{}, nil, false
		}
	}
	rd, ok := p.live(w, r)
	if !ok {
		return m, mabis.Series{}, nil, false
	}
	// One read at quarter hours; coarser points are rolled up from it,
	// with the MaLo values summed for the substitute share.
	qh, err := rd.Series(r.Context(), m, r.PathValue("eic"), mabis.QuarterHourly)
	if err != nil {
		p.readErr(w, r, err)
		return m, mabis.Series{}, nil, false
	}
	return m, qh, rows(m, qh, res), true
}

// rows rolls the quarter-hour series qh up to res.
func rows(m mabis.Month, qh mabis.Series, res mabis.Resolution) []row {
	n := len(qh.Points)
	wh, malos, subst := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, pt := range qh.Points {
		wh[i], malos[i], subst[i] = pt.EnergyWh, pt.MaLos, pt.SubstituteValues
	}
	points := mabis.RollUp(m, wh, malos, subst, res)
	out := make([]row, len(points))
	j := 0
	for i, pt := range points {
		out[i].Point = pt
		for ; j < n && qh.Points[j].Start.Before(pt.End); j++ {
			out[i].MaLoValues += qh.Points[j].MaLos
		}
		out[i].Share = math.NaN()
		if out[i].MaLoValues > 0 {
			out[i].Share = 100 * float64(pt.SubstituteValues) / float64(out[i].MaLoValues)
		}
	}
	return out
}

// curve shows a group's curve as charts.
func (p *pages) curve(w http.ResponseWriter, r *http.Request) {
	m, qh, rs, ok := p.curveRequest(w, r)
	if !ok {
		return
	}
	res := mabis.Resolution(r.URL.Query().Get("resolution"))
	if res == "" {
		res = mabis.QuarterHourly
	}
	energy := console.Series{Name: "energy", Class: "s1"}
	share := console.Series{Name: "substitute share", Class: "s2"}
	labels := map[int]string{}
	for i, x := range rs {
		energy.Values = append(energy.Values, float64(x.EnergyWh)/1000)
		share.Values = append(share.Values, x.Share)
		if d := x.Start; d.Hour() == 0 && d.Minute() == 0 && (d.Day()-1)%7 == 0 {
			labels[i] = d.Format("Jan 2")
		}
	}
	unit := map[mabis.Resolution]string{mabis.QuarterHourly: "kWh/15min", mabis.Hourly: "kWh/h", mabis.Daily: "kWh/d"}[res]
	eic := r.PathValue("eic")
	data := struct {
		Prefix, EIC      string
		Month            mabis.Month
		Series           mabis.Series
		Resolution       mabis.Resolution
		Resolutions      []mabis.Resolution
		Points           int
		Energy, Share    console.Chart
		First, Last      time.Time
		SubstituteShare  string
		QuarterHourCount int
	}{
		Prefix: p.cfg.Console.Prefix(), EIC: eic, Month: m, Series: qh, Resolution: res,
		Resolutions: []mabis.Resolution{mabis.QuarterHourly, mabis.Hourly, mabis.Daily}, Points: len(rs), QuarterHourCount: len(qh.Points),
		Energy: console.Chart{Title: "energy of " + eic + " in " + m.String(), Unit: unit, Series: []console.Series{energy}, XLabels: labels, Width: 1180, Height: 300,
			Format: func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }},
		Share: console.Chart{Title: "substitute share of " + eic + " in " + m.String(), Unit: "%", Series: []console.Series{share}, XLabels: labels, Width: 1180, Height: 170,
			Format: func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }},
	}
	if len(rs) > 0 {
		data.First, data.Last = rs[0].Start, rs[len(rs)-1].End
	}
	var values int64
	for _, x := range rs {
		values += x.MaLoValues
	}
	if values > 0 {
		data.SubstituteShare = strconv.FormatFloat(100*float64(qh.SubstituteValues)/float64(values), 'f', 2, 64) + "%"
	}
	p.cfg.Console.Render(w, r, http.StatusOK, "Balance group "+eic+" "+m.String(), 0, p.tmpl["curve"], data)
}

// csv answers the curve's series as CSV: one line per period, times in
// German local time with their offset (RFC 3339).
func (p *pages) csv(w http.ResponseWriter, r *http.Request) {
	m, _, rs, ok := p.curveRequest(w, r)
	if !ok {
		return
	}
	res := r.URL.Query().Get("resolution")
	if res == "" {
		res = string(mabis.QuarterHourly)
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s-%s.csv"`, r.PathValue("eic"), m, res))
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"start", "end", "energy_wh", "malos", "substitute_values", "malo_values", "substitute_share_percent"})
	for _, x := range rs {
		share := ""
		if !math.IsNaN(x.Share) {
			share = strconv.FormatFloat(x.Share, 'f', 4, 64)
		}
		_ = cw.Write([]string{x.Start.Format(time.RFC3339), x.End.Format(time.RFC3339), strconv.FormatInt(x.EnergyWh, 10), strconv.FormatInt(x.MaLos, 10),
			strconv.FormatInt(x.SubstituteValues, 10), strconv.FormatInt(x.MaLoValues, 10), share})
	}
	cw.Flush()
}
