package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/examples/billing/api"
	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// newServer projects a small generated March 2026 into Redis and serves it.
func newServer(t *testing.T) (*httptest.Server, *loadgen.Expected) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	month, _ := mabis.ParseMonth("2026-03")
	events := memstore.NewEventStore()
	cfg := loadgen.Config{Tenant: "netz-api", Month: month, MaLos: 12, Seed: 3}
	want, _, err := loadgen.Generate(ctx, events, cfg)
	if err != nil {
		t.Fatal(err)
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
	prefix, _ := framework.TenantPrefix(cfg.Tenant)
	if _, err := runner.RunPrefix(ctx, p, events, prefix); err != nil {
		t.Fatal(err)
	}
	reader, err := mabis.NewReader(p, cfg.Tenant)
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Config{Reader: reader, Status: func(context.Context) (api.Status, error) {
		return api.Status{Projection: "billing", State: "live", Applied: 42, Parked: 1}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, want
}

func get(t *testing.T, method, url string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, resp.Header
}

func TestAPI(t *testing.T) {
	srv, want := newServer(t)
	eic := want.EICs()[0]
	g := want.Groups[eic]

	t.Run("balance groups", func(t *testing.T) {
		status, body, _ := get(t, http.MethodGet, srv.URL+"/api/v1/months/2026-03/balance-groups")
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		var got mabis.MonthTotals
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.BalanceGroups) != len(want.Groups) {
			t.Fatalf("%d balance groups, want %d", len(got.BalanceGroups), len(want.Groups))
		}
		for _, bg := range got.BalanceGroups {
			if w := want.Groups[bg.EIC]; w == nil || bg.EnergyWh != w.EnergyWh() || bg.QuarterHours != 2972 {
				t.Errorf("%s: %d Wh over %d quarter hours, want %d Wh over 2972", bg.EIC, bg.EnergyWh, bg.QuarterHours, w.EnergyWh())
			}
		}
	})

	for _, tc := range []struct {
		resolution string
		points     int
		first      string // start of the first point
		dst        int    // index of the point that starts at the clock change
		dstStart   string
	}{
		{"", 2972, "2026-03-01T00:00:00+01:00", 28*96 + 8, "2026-03-29T03:00:00+02:00"},
		{"quarter-hour", 2972, "2026-03-01T00:00:00+01:00", 28*96 + 8, "2026-03-29T03:00:00+02:00"},
		{"hour", 743, "2026-03-01T00:00:00+01:00", 28*24 + 2, "2026-03-29T03:00:00+02:00"},
		{"day", 31, "2026-03-01T00:00:00+01:00", 29, "2026-03-30T00:00:00+02:00"},
	} {
		t.Run("series "+tc.resolution, func(t *testing.T) {
			url := srv.URL + "/api/v1/months/2026-03/balance-groups/" + eic + "/series"
			if tc.resolution != "" {
				url += "?resolution=" + tc.resolution
			}
			status, body, header := get(t, http.MethodGet, url)
			if status != http.StatusOK || header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, %s: %s", status, header.Get("Content-Type"), body)
			}
			var got struct {
				EnergyWh int64 `json:"energy_wh"`
				Points   []struct {
					Start    string `json:"start"`
					EnergyWh int64  `json:"energy_wh"`
				} `json:"points"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Points) != tc.points || got.Points[0].Start != tc.first || got.Points[tc.dst].Start != tc.dstStart {
				t.Fatalf("%d points from %s, point %d at %s; want %d from %s, %s", len(got.Points), got.Points[0].Start,
					tc.dst, got.Points[tc.dst].Start, tc.points, tc.first, tc.dstStart)
			}
			var sum int64
			for _, p := range got.Points {
				sum += p.EnergyWh
			}
			if sum != g.EnergyWh() || got.EnergyWh != g.EnergyWh() {
				t.Errorf("points sum to %d Wh, total %d Wh; want %d", sum, got.EnergyWh, g.EnergyWh())
			}
		})
	}

	for _, tc := range []struct {
		name, method, path string
		status             int
		mention            string
	}{
		{"bad month", "GET", "/api/v1/months/2026-13/balance-groups", 400, "parameter month"},
		{"month not YYYY-MM", "GET", "/api/v1/months/march/balance-groups/" + eic + "/series", 400, "parameter month"},
		{"bad EIC check character", "GET", "/api/v1/months/2026-03/balance-groups/10YDE-RWENET---X/series", 400, "parameter eic"},
		{"short EIC", "GET", "/api/v1/months/2026-03/balance-groups/10YDE/series", 400, "parameter eic"},
		{"bad resolution", "GET", "/api/v1/months/2026-03/balance-groups/" + eic + "/series?resolution=minute", 400, "parameter resolution"},
		{"unknown balance group", "GET", "/api/v1/months/2026-03/balance-groups/10YDE-RWENET---I/series", 404, "unknown balance group"},
		{"month without data", "GET", "/api/v1/months/2026-04/balance-groups/" + eic + "/series", 404, "unknown balance group"},
		{"unknown path", "GET", "/api/v1/nothing", 404, "no route"},
		{"wrong method", "POST", "/api/v1/status", 405, "not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, header := get(t, tc.method, srv.URL+tc.path)
			var e api.Error
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("status %d, body %q is not a JSON error: %v", status, body, err)
			}
			if status != tc.status || e.Status != tc.status || !strings.Contains(e.Error, tc.mention) {
				t.Errorf("status %d, %+v; want %d mentioning %q", status, e, tc.status, tc.mention)
			}
			if header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", header.Get("Content-Type"))
			}
		})
	}

	t.Run("month without data lists nothing", func(t *testing.T) {
		status, body, _ := get(t, http.MethodGet, srv.URL+"/api/v1/months/2026-04/balance-groups")
		if status != 200 || !strings.Contains(string(body), `"balance_groups":[]`) {
			t.Errorf("status %d: %s", status, body)
		}
	})

	t.Run("status", func(t *testing.T) {
		status, body, _ := get(t, http.MethodGet, srv.URL+"/api/v1/status")
		var st api.Status
		if err := json.Unmarshal(body, &st); err != nil || status != 200 || st.State != "live" || st.Applied != 42 || st.Parked != 1 {
			t.Errorf("status %d, %+v, %v", status, st, err)
		}
	})
}
