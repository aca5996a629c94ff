package pages_test

import (
	"context"
	"encoding/csv"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/console"
	"github.com/projector-dev/projector/controlplane/memcontrol"
	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/examples/billing/pages"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/ops"
	"github.com/projector-dev/projector/redischeckpoint"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const tenant = "netz-pages"

// fixture serves the console with the billing pages over small generated
// months March 2026 (2,972 quarter hours) and October 2026 (2,980).
type fixture struct {
	srv  *httptest.Server
	want map[string]*loadgen.Expected
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	events := memstore.NewEventStore()
	f := &fixture{want: map[string]*loadgen.Expected{}}
	for _, ms := range []string{"2026-03", "2026-10"} {
		m, _ := mabis.ParseMonth(ms)
		want, _, err := loadgen.Generate(ctx, events, loadgen.Config{Tenant: tenant, Month: m, MaLos: 8, Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		f.want[ms] = want
	}
	env := testenv.Redis(t)
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: env.Client, Namespace: env.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := mabis.NewProjection(store, mabis.ProjectionName)
	if err != nil {
		t.Fatal(err)
	}
	runner, _ := framework.NewProjectionRunner(framework.RunnerConfig{})
	prefix, _ := framework.TenantPrefix(tenant)
	if _, err := runner.RunPrefix(ctx, p, events, prefix); err != nil {
		t.Fatal(err)
	}
	reader, err := mabis.NewReader(p, tenant)
	if err != nil {
		t.Fatal(err)
	}
	// The operations pages are not under test here: an in-memory control
	// plane will do.
	oc, err := ops.New(ops.Config{Admin: memcontrol.NewStore(), Topic: "events"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := console.New(console.Config{Ops: oc, Projections: []string{"billing"}, Links: pages.Links("/console/")})
	if err != nil {
		t.Fatal(err)
	}
	march, _ := mabis.ParseMonth("2026-03")
	if err := pages.Register(pages.Config{Console: c, Reader: reader, Month: march, Events: events}); err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(c)
	t.Cleanup(f.srv.Close)
	return f
}

func get(t *testing.T, u string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

var energyPoints = regexp.MustCompile(`data-series="energy" data-points="(\d+)"`)

func TestBillingPages(t *testing.T) {
	f := newFixture(t)
	base := f.srv.URL + "/console/billing/"

	code, body, _ := get(t, base)
	if code != http.StatusOK {
		t.Fatalf("balance groups: %d\n%s", code, body)
	}
	march := f.want["2026-03"]
	for _, eic := range march.EICs() {
		if !strings.Contains(body, "billing/groups/"+eic+"?month=2026-03") || !strings.Contains(body, mabis.FormatWh(march.Groups[eic].EnergyWh())) {
			t.Errorf("balance groups page lacks %s or its energy", eic)
		}
	}
	if !strings.Contains(body, "2972 quarter hours") || !strings.Contains(body, `href="/console/billing/malo"`) {
		t.Errorf("balance groups page lacks the month's quarter hours or the navigation")
	}

	for _, tc := range []struct {
		month      string
		resolution string
		points     int
	}{
		{"2026-03", "", 2972}, {"2026-03", "quarter-hour", 2972}, {"2026-03", "hour", 743}, {"2026-03", "day", 31},
		{"2026-10", "quarter-hour", 2980}, {"2026-10", "hour", 745},
	} {
		eic := f.want[tc.month].EICs()[0]
		q := url.Values{"month": {tc.month}}
		if tc.resolution != "" {
			q.Set("resolution", tc.resolution)
		}
		code, body, _ := get(t, base+"groups/"+eic+"?"+q.Encode())
		if code != http.StatusOK {
			t.Fatalf("curve %v: %d\n%s", tc, code, body)
		}
		m := energyPoints.FindStringSubmatch(body)
		if m == nil || m[1] != strconv.Itoa(tc.points) {
			t.Errorf("curve %v: energy points %v, want %d", tc, m, tc.points)
		}
		if !strings.Contains(body, `data-series="substitute share"`) || !strings.Contains(body, "Europe/Berlin") {
			t.Errorf("curve %v: no substitute share chart or no time zone", tc)
		}

		code, body, h := get(t, base+"groups/"+eic+"/series.csv?"+q.Encode())
		if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/csv") || !strings.Contains(h.Get("Content-Disposition"), "attachment") {
			t.Fatalf("CSV %v: %d %v", tc, code, h)
		}
		rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != tc.points+1 {
			t.Errorf("CSV %v: %d rows, want %d and a header", tc, len(rows), tc.points)
			continue
		}
		var sum int64
		for _, r := range rows[1:] {
			n, _ := strconv.ParseInt(r[2], 10, 64)
			sum += n
		}
		if want := f.want[tc.month].Groups[eic].EnergyWh(); sum != want {
			t.Errorf("CSV %v: energy %d, want %d", tc, sum, want)
		}
		if tc.month == "2026-03" && (rows[1][0] != "2026-03-01T00:00:00+01:00" || !strings.HasSuffix(rows[len(rows)-1][1], "+02:00")) {
			t.Errorf("CSV %v: first start %s, last end %s: want German local time", tc, rows[1][0], rows[len(rows)-1][1])
		}
	}

	// A MaLo's month: assignments, days and the stream's events.
	var malo string
	for m := range march.Groups[march.EICs()[0]].Assigned {
		malo = m
		break
	}
	code, body, _ = get(t, base+"malo?"+url.Values{"month": {"2026-03"}, "malo": {malo}}.Encode())
	if code != http.StatusOK {
		t.Fatalf("MaLo %s: %d\n%s", malo, code, body)
	}
	for _, want := range []string{`class="assignment"`, `class="day"`, `class="event kind-assignment"`, `class="event kind-values"`, "CET"} {
		if !strings.Contains(body, want) {
			t.Errorf("MaLo page lacks %q", want)
		}
	}
	if code, _, _ := get(t, base+"malo"); code != http.StatusOK {
		t.Errorf("MaLo form: %d", code)
	}

	// Bad input is answered, escaped.
	check, err := mabis.EICCheckChar("11YUNKNOWN-----")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"?month=2026-13", http.StatusBadRequest},
		{"groups/11YUNKNOWN-----" + string(check) + "?month=2026-03", http.StatusNotFound},
		{"groups/" + url.PathEscape("<script>alert(1)</script>"), http.StatusBadRequest},
		{"groups/" + march.EICs()[0] + "?resolution=%3Cscript%3E", http.StatusBadRequest},
		{"malo?malo=" + url.QueryEscape("<script>alert(1)</script>\x1b[31m"), http.StatusBadRequest},
		{"malo?malo=99999999999", http.StatusBadRequest}, // check digit
	} {
		code, body, _ := get(t, base+tc.path)
		if code != tc.code {
			t.Errorf("%s: %d, want %d\n%s", tc.path, code, tc.code, body)
		}
		if strings.Contains(body, "<script>") || strings.ContainsRune(body, 0x1b) {
			t.Errorf("%s: unescaped input in the answer", tc.path)
		}
	}
}
