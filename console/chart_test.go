package console

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestChartSVG(t *testing.T) {
	c := Chart{Title: `lag of <b>"x"</b>`, Unit: "rec", XLabels: map[int]string{0: "<start>", 3: "end", 9: "out of range"},
		Series: []Series{{Name: "a", Class: "s1", Values: []float64{1, 2, math.NaN(), 4}}}}
	svg := string(c.SVG())
	for _, want := range []string{`aria-label="lag of &lt;b&gt;&#34;x&#34;&lt;/b&gt;"`, `data-series="a" data-points="3"`, "&lt;start&gt;", ">end<", "5 rec", `text-anchor="start"`, `text-anchor="end"`} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q:\n%s", want, svg)
		}
	}
	if n := strings.Count(svg, "<polyline"); n != 2 {
		t.Errorf("a gap should split the line in 2 polylines, got %d", n)
	}
	if strings.Contains(svg, "out of range") {
		t.Errorf("a label beyond the values is drawn")
	}
	if empty := string(Chart{Title: "none"}.SVG()); !strings.Contains(empty, "no data yet") {
		t.Errorf("empty chart: %s", empty)
	}
}

func TestSamplerRingAndETA(t *testing.T) {
	s := newSampler(3)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		s.add("p", Sample{At: t0.Add(time.Duration(i) * 10 * time.Second), Records: int64(i), Behind: int64(1000 - 100*i)})
	}
	got := s.samples("p")
	if len(got) != 3 || got[0].Records != 2 || got[2].Records != 4 {
		t.Fatalf("samples = %+v", got)
	}
	// 200 records in 20 s: 10/s; 600 behind is about a minute.
	if d := eta(got, 600); d != time.Minute {
		t.Errorf("eta = %v", d)
	}
	if d := eta(got[:1], 600); d != 0 {
		t.Errorf("eta of one sample = %v", d)
	}
	if s.samples("unknown") != nil {
		t.Errorf("samples of an unknown projection")
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain/ü":        "plain/ü",
		"a\x1b[31mb":     `a\x1b[31mb`,
		"x\u202ey":       `x\u202ey`,
		"bad\xffbyte":    `bad\xffbyte`,
		"line\nbreak\t.": `line\nbreak\t.`,
	} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
	if got := CleanBlock("a\nb\x1b"); got != "a\nb\\x1b" {
		t.Errorf("CleanBlock = %q", got)
	}
}
