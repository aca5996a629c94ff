package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/examples/billing/api"
	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/ops"
	"github.com/projector-dev/projector/redischeckpoint"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fixture is a small generated March 2026 projected into Redis and served.
type fixture struct {
	srv    *httptest.Server
	want   *loadgen.Expected
	events *memstore.EventStore
	store  *redischeckpoint.Store
	p      *redischeckpoint.AtomicProjection
	reader *mabis.Reader
	tenant string
}

// newServer projects a small generated March 2026 into Redis and serves it.
func newServer(t *testing.T) (*httptest.Server, *loadgen.Expected) {
	f := newFixture(t, true)
	return f.srv, f.want
}

// newFixture is newServer with what it is made of; wait says whether the
// API may wait for the read model (Config.WaitFor).
func newFixture(t *testing.T, wait bool) *fixture {
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
	acfg := api.Config{Reader: reader, Status: func(context.Context) (api.Status, error) {
		st := api.Status{Local: api.Local{State: "live", Applied: 42}}
		st.Projection, st.State = "billing", ops.StateRunning
		st.Parked = []controlplane.ParkedStream{{StreamID: "process/acme/<script>", Sequence: 7, Reason: controlplane.ParkGap}}
		return st, nil
	}}
	if wait {
		acfg.WaitFor = func(ctx context.Context, streamID string, sequence uint64) (string, error) {
			return store.WaitFor(ctx, mabis.ProjectionName, streamID, sequence)
		}
	}
	h, err := api.New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, want: want, events: events, store: store, p: p, reader: reader, tenant: cfg.Tenant}
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
		status, body, header := get(t, http.MethodGet, srv.URL+"/api/v1/months/2026-03/balance-groups")
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		var got mabis.MonthTotals
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if got.ReadModel != "billing" || header.Get(api.ReadModelHeader) != "billing" {
			t.Errorf("read model %q, header %q; want billing", got.ReadModel, header.Get(api.ReadModelHeader))
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
				ReadModel string `json:"read_model"`
				EnergyWh  int64  `json:"energy_wh"`
				Points    []struct {
					Start    string `json:"start"`
					EnergyWh int64  `json:"energy_wh"`
				} `json:"points"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if got.ReadModel != "billing" || header.Get(api.ReadModelHeader) != "billing" {
				t.Errorf("read model %q, header %q; want billing", got.ReadModel, header.Get(api.ReadModelHeader))
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
		{"wait_stream without wait_sequence", "GET", "/api/v1/months/2026-03/balance-groups?wait_stream=process/netz-api/x", 400, "parameter wait_sequence"},
		{"wait_sequence without wait_stream", "GET", "/api/v1/months/2026-03/balance-groups?wait_sequence=3", 400, "parameter wait_stream"},
		{"bad wait_stream", "GET", "/api/v1/months/2026-03/balance-groups?wait_stream=process//x&wait_sequence=3", 400, "parameter wait_stream"},
		{"empty wait_stream", "GET", "/api/v1/months/2026-03/balance-groups?wait_stream=&wait_sequence=3", 400, "parameter wait_stream"},
		{"bad wait_sequence", "GET", "/api/v1/months/2026-03/balance-groups/" + eic + "/series?wait_stream=process/netz-api/x&wait_sequence=-1", 400, "parameter wait_sequence"},
		{"bad wait_timeout", "GET", "/api/v1/months/2026-03/balance-groups?wait_stream=process/netz-api/x&wait_sequence=3&wait_timeout=soon", 400, "parameter wait_timeout"},
		{"wait_timeout above 30s", "GET", "/api/v1/months/2026-03/balance-groups?wait_stream=process/netz-api/x&wait_sequence=3&wait_timeout=31s", 400, "parameter wait_timeout"},
		{"wait_timeout zero", "GET", "/api/v1/months/2026-03/balance-groups?wait_stream=process/netz-api/x&wait_sequence=3&wait_timeout=0s", 400, "parameter wait_timeout"},
		{"wait_timeout alone", "GET", "/api/v1/months/2026-03/balance-groups?wait_timeout=1s", 400, "parameter wait_timeout"},
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
		if err := json.Unmarshal(body, &st); err != nil || status != 200 || st.State != ops.StateRunning || st.Local.State != "live" || st.Local.Applied != 42 || len(st.Parked) != 1 {
			t.Errorf("status %d, %+v, %v", status, st, err)
		}
	})
}

// maloEvent is a valid DayValuesReceived event of a MaLo of the tenant
// that loadgen does not generate, for day 2026-03-<day> in balance group
// eic, with whPerSlot Wh in every quarter hour.
func (f *fixture) maloEvent(t *testing.T, malo string, seq uint64, day int, eic string, whPerSlot int64) framework.Event {
	t.Helper()
	month, _ := mabis.ParseMonth("2026-03")
	d, err := mabis.ParseDay(fmt.Sprintf("2026-03-%02d", day))
	if err != nil {
		t.Fatal(err)
	}
	wh := make([]int64, d.Slots())
	for i := range wh {
		wh[i] = whPerSlot
	}
	p := mabis.DayValuesReceived{DayValues: mabis.DayValues{MaLo: malo, Day: d.String(), Supplier: loadgen.DefaultMarket().Suppliers[0].ID,
		BalanceGroup: eic, Wh: wh, Quality: strings.Repeat(string(rune(mabis.Measured)), d.Slots())}}
	if err := p.Validate(month); err != nil {
		t.Fatal(err)
	}
	data, err := mabis.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := mabis.StreamID(f.tenant, malo, month)
	if err != nil {
		t.Fatal(err)
	}
	return framework.Event{StreamID: stream, Sequence: seq, EventID: fmt.Sprintf("%s#%d", stream, seq), Type: data.Type,
		SchemaVersion: data.SchemaVersion, Data: data.Data}
}

func testMaLo(t *testing.T, first10 string) string {
	t.Helper()
	c, err := mabis.MaLoCheckDigit(first10)
	if err != nil {
		t.Fatal(err)
	}
	return first10 + string(c)
}

func groupEnergy(t *testing.T, body []byte, eic string) (int64, string) {
	t.Helper()
	var got mabis.MonthTotals
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	for _, g := range got.BalanceGroups {
		if g.EIC == eic {
			return g.EnergyWh, got.ReadModel
		}
	}
	t.Fatalf("no balance group %s in %s", eic, body)
	return 0, ""
}

func apiError(t *testing.T, body []byte) api.Error {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("not a JSON error: %v: %s", err, body)
	}
	return e
}

// TestReadYourWrites asks the API to wait for events it has not applied
// yet, applied already, never applied in time, and behind a parked event;
// and reads the version a rebuild made live.
func TestReadYourWrites(t *testing.T) {
	f := newFixture(t, true)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	eic := f.want.EICs()[0]
	base := f.want.Groups[eic].EnergyWh()
	malo := testMaLo(t, "5999000001")
	e1 := f.maloEvent(t, malo, 1, 3, eic, 10)
	groups := f.srv.URL + "/api/v1/months/2026-03/balance-groups"
	waitURL := func(seq uint64, more string) string {
		return fmt.Sprintf("%s?wait_stream=%s&wait_sequence=%d%s", groups, e1.StreamID, seq, more)
	}

	// The event is not applied yet: the request waits for it.
	type response struct {
		status int
		body   []byte
		header http.Header
	}
	answered := make(chan response, 1)
	go func() {
		status, body, header := get(t, http.MethodGet, waitURL(1, ""))
		answered <- response{status, body, header}
	}()
	select {
	case r := <-answered:
		t.Fatalf("answered before the event was applied: %d %s", r.status, r.body)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := f.p.ApplyBatch(ctx, []framework.Event{e1}); err != nil {
		t.Fatal(err)
	}
	r := <-answered
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if got, rm := groupEnergy(t, r.body, eic); got != base+10*96 || rm != "billing" || r.header.Get(api.ReadModelHeader) != "billing" {
		t.Errorf("after waiting: %d Wh in %q (header %q), want %d in billing", got, rm, r.header.Get(api.ReadModelHeader), base+10*96)
	}

	// Applied already: answered at once; the series waits the same way.
	status, body, _ := get(t, http.MethodGet, waitURL(1, "&wait_timeout=2s"))
	if got, _ := groupEnergy(t, body, eic); status != 200 || got != base+10*96 {
		t.Errorf("an applied event: %d, %d Wh", status, got)
	}
	status, body, header := get(t, http.MethodGet, fmt.Sprintf("%s/%s/series?resolution=day&wait_stream=%s&wait_sequence=1", groups, eic, e1.StreamID))
	if status != 200 || header.Get(api.ReadModelHeader) != "billing" || !strings.Contains(string(body), `"read_model":"billing"`) {
		t.Errorf("series with a wait: %d %q %s", status, header.Get(api.ReadModelHeader), body)
	}

	// Never applied in time: 504 naming the stream, the sequence and
	// what the read model applied.
	status, body, _ = get(t, http.MethodGet, waitURL(3, "&wait_timeout=150ms"))
	e := apiError(t, body)
	if status != http.StatusGatewayTimeout || e.Status != 504 || e.Wait == nil || e.Wait.Stream != e1.StreamID || e.Wait.Sequence != 3 ||
		e.Wait.Applied == nil || *e.Wait.Applied != 1 || e.Wait.ReadModel != "billing" || e.Wait.Timeout != "150ms" {
		t.Errorf("timed out: %d %+v (wait %+v)", status, e, e.Wait)
	}
	for _, mention := range []string{e1.StreamID, "sequence 3", "up to sequence 1", "150ms"} {
		if !strings.Contains(e.Error, mention) {
			t.Errorf("timed out: %q does not mention %q", e.Error, mention)
		}
	}
	t.Logf("504: %s", body)

	// Parked at 2: 409 at once, with the reason.
	err := f.store.Park(ctx, mabis.ProjectionName, controlplane.ParkedStream{StreamID: e1.StreamID, Sequence: 2, EventID: "x",
		Reason: controlplane.ParkGap, Error: "sequence 2 after cursor 0", ParkedAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	status, body, _ = get(t, http.MethodGet, waitURL(2, "&wait_timeout=10s"))
	e = apiError(t, body)
	if status != http.StatusConflict || e.Wait == nil || e.Wait.ParkedReason != controlplane.ParkGap || e.Wait.ParkedSequence != 2 ||
		!strings.Contains(e.Error, "parked") || time.Since(start) > 5*time.Second {
		t.Errorf("parked: %d after %v: %s", status, time.Since(start), body)
	}
	t.Logf("409: %s", body)

	// A rebuild made version 1 live: reads name it, and a wait reads it.
	rb, err := f.store.StartRebuild(ctx, mabis.ProjectionName, controlplane.Rebuild{By: "api-test", Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	v1, err := f.p.Version(framework.VersionedName(mabis.ProjectionName, rb.Version))
	if err != nil {
		t.Fatal(err)
	}
	runner, _ := framework.NewProjectionRunner(framework.RunnerConfig{})
	prefix, _ := framework.TenantPrefix(f.tenant)
	if _, err := runner.RunPrefix(ctx, v1, f.events, prefix); err != nil {
		t.Fatal(err)
	}
	e2 := f.maloEvent(t, malo, 2, 4, eic, 20)
	if _, err := v1.ApplyBatch(ctx, []framework.Event{e1, e2}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.SwitchLive(ctx, mabis.ProjectionName, rb.Version, "api-test"); err != nil {
		t.Fatal(err)
	}
	status, body, header = get(t, http.MethodGet, groups)
	if got, rm := groupEnergy(t, body, eic); status != 200 || rm != "billing@v1" || header.Get(api.ReadModelHeader) != "billing@v1" || got != base+10*96+20*96 {
		t.Errorf("after the switch: %d, %d Wh in %q (header %q)", status, got, rm, header.Get(api.ReadModelHeader))
	}
	status, body, header = get(t, http.MethodGet, waitURL(2, ""))
	if got, rm := groupEnergy(t, body, eic); status != 200 || rm != "billing@v1" || header.Get(api.ReadModelHeader) != "billing@v1" || got != base+10*96+20*96 {
		t.Errorf("a wait after the switch: %d, %d Wh in %q (header %q)", status, got, rm, header.Get(api.ReadModelHeader))
	}
}

// TestWaitRefusedWithoutWaitFor: a server without Config.WaitFor refuses
// the option rather than answer what may be stale.
func TestWaitRefusedWithoutWaitFor(t *testing.T) {
	f := newFixture(t, false)
	status, body, _ := get(t, http.MethodGet, f.srv.URL+"/api/v1/months/2026-03/balance-groups?wait_stream=process/netz-api/x&wait_sequence=1")
	if e := apiError(t, body); status != 400 || !strings.Contains(e.Error, "this server cannot wait") {
		t.Errorf("status %d: %s", status, body)
	}
	if status, body, _ := get(t, http.MethodGet, f.srv.URL+"/api/v1/months/2026-03/balance-groups"); status != 200 {
		t.Errorf("without the option: %d %s", status, body)
	}
}

// TestWaitErrors maps what a WaitFor of another kind reports.
func TestWaitErrors(t *testing.T) {
	f := newFixture(t, false)
	for _, tc := range []struct {
		name    string
		err     error
		status  int
		mention string
	}{
		{"parked sentinel", fmt.Errorf("somewhere: %w", redischeckpoint.ErrStreamParked), 409, "stream parked"},
		{"deadline", context.DeadlineExceeded, 504, "waited 50ms for stream process/netz-api/x to be applied up to sequence 2"},
		{"other", fmt.Errorf("redis down"), 503, "redis down"},
		{"unknown version", nil, 503, "resolving the read model's version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := api.New(api.Config{Reader: f.reader, WaitFor: func(ctx context.Context, _ string, _ uint64) (string, error) {
				if tc.err == context.DeadlineExceeded {
					<-ctx.Done()
					return "", ctx.Err()
				}
				return "other@v1", tc.err
			}})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet,
				"/api/v1/months/2026-03/balance-groups?wait_stream=process/netz-api/x&wait_sequence=2&wait_timeout=50ms", nil))
			e := apiError(t, rec.Body.Bytes())
			if rec.Code != tc.status || !strings.Contains(e.Error, tc.mention) {
				t.Errorf("%d %+v; want %d mentioning %q", rec.Code, e, tc.status, tc.mention)
			}
		})
	}
}
