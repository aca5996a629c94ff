package console

import (
	"bytes"
	"cmp"
	"fmt"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Chart is a line chart drawn as inline SVG on the server: one or more
// series over the same x positions and one y axis from 0.
type Chart struct {
	// Title is the chart's accessible name; Unit follows the y labels.
	Title string
	Unit  string
	// Series share the x positions: Values[i] is at position i. NaN is a
	// gap.
	Series []Series
	// XLabels are labels under some positions, by position.
	XLabels map[int]string
	// Width and Height in px (default 720 by 200).
	Width, Height int
	// Format formats a y value for the axis (default %g).
	Format func(float64) string
}

// Series is one line of a [Chart]. Class styles it (console.css has
// "s1", "s2", "s3").
type Series struct {
	Name   string
	Class  string
	Values []float64
}

const chartPad = 58

type chartLine struct {
	Name, Class string
	// Points is the polyline's points; Count how many (data-points in
	// the SVG, for tests and browsers).
	Points []string
	Count  int
}

type chartTick struct {
	X, Y  float64
	Label string
	// Anchor is the label's text-anchor: a label at an edge of the plot
	// stays inside it.
	Anchor string
}

type chartData struct {
	Title         string
	Width, Height int
	Left, Right   float64
	Top, Bottom   float64
	Lines         []chartLine
	YTicks        []chartTick
	XTicks        []chartTick
	Empty         bool
}

var chartTemplate = template.Must(template.New("chart").Parse(`<svg class="chart" role="img" aria-label="{{.Title}}" viewBox="0 0 {{.Width}} {{.Height}}" width="{{.Width}}" height="{{.Height}}" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">
<title>{{.Title}}</title>
<rect class="frame" x="{{.Left}}" y="{{.Top}}" width="{{.Right}}" height="{{.Bottom}}"/>
{{range .YTicks}}<line class="grid" x1="{{$.Left}}" x2="{{.X}}" y1="{{.Y}}" y2="{{.Y}}"/><text class="ylabel" x="{{$.Left}}" dx="-4" y="{{.Y}}" dy="4">{{.Label}}</text>
{{end}}{{range .XTicks}}<text class="xlabel" x="{{.X}}" y="{{.Y}}" text-anchor="{{.Anchor}}">{{.Label}}</text>
{{end}}{{range .Lines}}{{$l := .}}{{range .Points}}<polyline class="line {{$l.Class}}" data-series="{{$l.Name}}" points="{{.}}"/>
{{end}}<g class="series" data-series="{{.Name}}" data-points="{{.Count}}"></g>
{{end}}{{if .Empty}}<text class="empty" x="50%" y="50%">no data yet</text>{{end}}
</svg>`))

// SVG renders the chart.
func (c Chart) SVG() template.HTML {
	w, h := c.Width, c.Height
	if w <= 0 {
		w = 720
	}
	if h <= 0 {
		h = 200
	}
	format := c.Format
	if format == nil {
		format = func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }
	}
	d := chartData{Title: c.Title, Width: w, Height: h, Left: chartPad + 14, Top: 8}
	d.Right, d.Bottom = float64(w)-d.Left-8, float64(h)-d.Top-24
	n, top := 0, 0.0
	for _, s := range c.Series {
		n = max(n, len(s.Values))
		for _, v := range s.Values {
			if !math.IsNaN(v) {
				top = max(top, v)
			}
		}
	}
	d.Empty = n == 0
	top = niceCeil(top)
	x := func(i int) float64 {
		if n <= 1 {
			return d.Left
		}
		return d.Left + float64(i)*d.Right/float64(n-1)
	}
	y := func(v float64) float64 { return d.Top + d.Bottom - v/top*d.Bottom }
	for _, s := range c.Series {
		l := chartLine{Name: s.Name, Class: s.Class}
		var b strings.Builder
		for i, v := range s.Values {
			if math.IsNaN(v) { // a gap ends the polyline
				if b.Len() > 0 {
					l.Points = append(l.Points, b.String())
					b.Reset()
				}
				continue
			}
			l.Count++
			fmt.Fprintf(&b, "%.1f,%.1f ", x(i), y(v))
		}
		if b.Len() > 0 {
			l.Points = append(l.Points, b.String())
		}
		d.Lines = append(d.Lines, l)
	}
	for _, f := range []float64{0, 0.5, 1} {
		d.YTicks = append(d.YTicks, chartTick{X: d.Left + d.Right, Y: y(top * f), Label: format(top*f) + " " + c.Unit})
	}
	for i, label := range c.XLabels {
		if i >= 0 && i < n {
			anchor := "middle"
			switch {
			case x(i)-d.Left < 40:
				anchor = "start"
			case d.Left+d.Right-x(i) < 40:
				anchor = "end"
			}
			d.XTicks = append(d.XTicks, chartTick{X: x(i), Y: d.Top + d.Bottom + 16, Label: label, Anchor: anchor})
		}
	}
	slices.SortFunc(d.XTicks, func(a, b chartTick) int { return cmp.Compare(a.X, b.X) })
	var buf bytes.Buffer
	if err := chartTemplate.Execute(&buf, d); err != nil {
		return template.HTML(template.HTMLEscapeString(err.Error()))
	}
	return template.HTML(buf.String()) // html/template escaped every value above
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1), so
// that the axis' labels are round numbers.
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}
