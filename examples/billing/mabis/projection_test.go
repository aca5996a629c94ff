package mabis_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

func TestMain(m *testing.M) {
	if os.Getenv(closeChildAddr) != "" { // a child of TestCloseMonthKilledHalfWay
		err := closeMonthChild()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testenv.Main(m)
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newProjection returns the billing projection on a namespace of its own.
func newProjection(t *testing.T) (*redischeckpoint.AtomicProjection, *testenv.RedisEnv) {
	t.Helper()
	env := testenv.Redis(t)
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: env.Client, Namespace: env.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := mabis.NewProjection(store, mabis.ProjectionName)
	if err != nil {
		t.Fatal(err)
	}
	return p, env
}

func mustMonth(t testing.TB, s string) mabis.Month {
	t.Helper()
	m, err := mabis.ParseMonth(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestProjectionMatchesGeneratedMonth generates a month through an event
// store, runs every stream through the runner into Redis, and compares the
// read model with what the generator expects, quarter hour by quarter
// hour. Then it runs every event again: nothing may count twice.
func TestProjectionMatchesGeneratedMonth(t *testing.T) {
	for _, month := range []string{"2026-03", "2026-10"} {
		t.Run(month, func(t *testing.T) {
			ctx := ctxFor(t)
			store := memstore.NewEventStore()
			cfg := loadgen.Config{Tenant: "netz-test", Month: mustMonth(t, month), MaLos: 60, Seed: 7}
			want, stats, err := loadgen.Generate(ctx, store, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if want.Corrections == 0 || want.SupplierChanges == 0 || want.RetroactiveChanges == 0 || want.SubstituteDays == 0 || want.ClearingResolved == 0 || want.SupplyEnds == 0 {
				t.Fatalf("the generated month lacks a case the test is about: %+v", want)
			}
			p, _ := newProjection(t)
			runner, err := framework.NewProjectionRunner(framework.RunnerConfig{Concurrency: 4})
			if err != nil {
				t.Fatal(err)
			}
			prefix, _ := framework.TenantPrefix(cfg.Tenant)
			start := time.Now()
			res, err := runner.RunPrefix(ctx, p, store, prefix)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d streams, %d events, %d payload bytes; applied %d in %v", stats.Streams, stats.Events, stats.Bytes, res.Applied, time.Since(start))
			if res.Applied != int64(stats.Events) {
				t.Errorf("applied %d events, generated %d", res.Applied, stats.Events)
			}
			reader, err := mabis.NewReader(p, cfg.Tenant)
			if err != nil {
				t.Fatal(err)
			}
			if err := want.Verify(ctx, reader); err != nil {
				t.Fatal(err)
			}
			// Every event again, from an empty checkpoint: the cursors in
			// Redis skip them all.
			again, err := runner.RunPrefix(ctx, p, store, prefix)
			if err != nil {
				t.Fatal(err)
			}
			if p.Skipped() != int64(stats.Events) {
				t.Errorf("second run: the scripts skipped %d events, want all %d (runner applied %d)", p.Skipped(), stats.Events, again.Applied)
			}
			if err := want.Verify(ctx, reader); err != nil {
				t.Fatalf("after a second run: %v", err)
			}
		})
	}
}

func TestUnknownBalanceGroup(t *testing.T) {
	p, _ := newProjection(t)
	r, err := mabis.NewReader(p, "netz-test")
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Series(ctxFor(t), mustMonth(t, "2026-03"), "10YDE-RWENET---I", mabis.Hourly)
	if !errors.Is(err, mabis.ErrUnknownBalanceGroup) {
		t.Errorf("Series of a group without data = %v, want ErrUnknownBalanceGroup", err)
	}
}

// TestCorrectionsReplaceAndMovesSplitTheMonth walks one MaLo through the
// cases of the rule in the package documentation, with values small
// enough to check by hand.
func TestCorrectionsReplaceAndMovesSplitTheMonth(t *testing.T) {
	ctx := ctxFor(t)
	p, _ := newProjection(t)
	m := mustMonth(t, "2026-03")
	stream, _ := mabis.StreamID("netz-test", testMaLo, m)
	other, _ := mabis.StreamID("netz-test", "50000000005", m)

	subst := day96(10)
	subst.Quality = "SS" + strings.Repeat("M", 94)
	day3 := day96(7)
	day3.Day = "2026-03-03"
	corrected := day96(20) // day 2 again: 20 Wh, all measured
	moved := day3
	moved.BalanceGroup, moved.Supplier = otherEIC, "9900000000024"
	otherDay := day96(1)
	otherDay.MaLo = "50000000005"
	events := []framework.Event{
		event(t, stream, 1, mabis.AssignmentBegun{MaLo: testMaLo, Supplier: testVendor, BalanceGroup: testEIC, ValidFrom: "2025-01-01"}),
		event(t, stream, 2, mabis.DayValuesReceived{DayValues: subst}),
		event(t, stream, 3, mabis.DayValuesReceived{DayValues: day3}),
		{StreamID: stream, Sequence: 4, EventID: "x", Type: "MeterExchanged", SchemaVersion: 1, Data: []byte(`{}`)},
		event(t, stream, 5, mabis.ValuesCorrected{DayValues: corrected, Reason: "true values"}),
		// Retroactive: from 3 March the MaLo is in the other group, and day 3
		// moves there.
		event(t, stream, 6, mabis.AssignmentChanged{MaLo: testMaLo, Supplier: "9900000000024", BalanceGroup: otherEIC, ValidFrom: "2026-03-03"}),
		event(t, stream, 7, mabis.ValuesCorrected{DayValues: moved, MovedFrom: testEIC}),
		event(t, other, 1, mabis.AssignmentBegun{MaLo: "50000000005", Supplier: testVendor, BalanceGroup: testEIC, ValidFrom: "2025-01-01"}),
		event(t, other, 2, mabis.DayValuesReceived{DayValues: otherDay}),
		event(t, other, 3, mabis.ClearingCaseOpened{MaLo: "50000000005", CaseID: "K1", BalanceGroup: testEIC}),
	}
	runner, _ := framework.NewProjectionRunner(framework.RunnerConfig{})
	for range 2 { // the second run is all duplicates
		if _, err := runner.Run(ctx, p, events); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := mabis.NewReader(p, "netz-test")
	totals, err := r.BalanceGroups(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		eic                      string
		wh, subst, values, malos int64
		open                     int64
	}
	var got []row
	for _, g := range totals.BalanceGroups {
		got = append(got, row{g.EIC, g.EnergyWh, g.SubstituteValues, g.MaLoValues, g.AssignedMaLos, g.ClearingOpened - g.ClearingResolved})
	}
	want := []row{
		// day 2 corrected to 20 Wh x 96 (no substitutes left) + the other
		// MaLo's 1 Wh x 96; day 3 moved out.
		{testEIC, 96*20 + 96*1, 0, 96 * 2, 2, 1},
		{otherEIC, 96 * 7, 0, 96, 1, 0},
	}
	if len(got) != len(want) {
		t.Fatalf("groups %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("group %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	day := mustDay(t, "2026-03-02")
	s, err := r.Series(ctx, m, testEIC, mabis.QuarterHourly)
	if err != nil {
		t.Fatal(err)
	}
	if q := s.Points[m.FirstSlot(day)]; q.EnergyWh != 21 || q.MaLos != 2 || q.SubstituteValues != 0 {
		t.Errorf("2 March 00:00: %+v, want 21 Wh from 2 MaLos", q)
	}
	if q := s.Points[m.FirstSlot(day.Next())]; q.EnergyWh != 0 || q.MaLos != 0 {
		t.Errorf("3 March 00:00 in the old group: %+v, want nothing after the move", q)
	}
	if p.Skipped() != int64(len(events)) {
		t.Errorf("skipped %d events on the second run, want %d", p.Skipped(), len(events))
	}
}

func TestBadPayloadStopsTheStream(t *testing.T) {
	ctx := ctxFor(t)
	p, _ := newProjection(t)
	m := mustMonth(t, "2026-03")
	stream, _ := mabis.StreamID("netz-test", testMaLo, m)
	bad := day96(10)
	bad.Wh[5] = -1
	wrongMaLo := day96(10)
	wrongMaLo.MaLo = "50000000005"
	for _, tc := range []struct {
		name    string
		p       mabis.Payload
		mention string
	}{
		{"negative value", mabis.DayValuesReceived{DayValues: bad}, "wh[5]"},
		{"another MaLo's values", mabis.DayValuesReceived{DayValues: wrongMaLo}, "malo"},
	} {
		_, err := p.ApplyBatch(ctx, []framework.Event{event(t, stream, 1, tc.p)})
		if !errors.Is(err, mabis.ErrInvalidPayload) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: %v, want an invalid payload naming %s", tc.name, err, tc.mention)
		}
	}
	if seq, _ := p.LastSequence(ctx, stream); seq != 0 {
		t.Errorf("cursor at %d after failed events, want 0", seq)
	}
}

func mustDay(t testing.TB, s string) mabis.Day {
	t.Helper()
	d, err := mabis.ParseDay(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Apply's errors, without Redis: it only records writes.
func TestApplyChecksBeforeWriting(t *testing.T) {
	m := mustMonth(t, "2026-03")
	stream, _ := mabis.StreamID("netz-test", testMaLo, m)
	w := &redischeckpoint.Writes{}
	unknown := event(t, "order/netz-test/1", 1, mabis.DayValuesReceived{DayValues: day96(1)})
	unknown.Type = "MeterExchanged"
	if err := mabis.Apply(unknown, w); err != nil {
		t.Errorf("unknown type on another kind of stream: %v, want it ignored", err)
	}
	e := event(t, "order/netz-test/1", 1, mabis.DayValuesReceived{DayValues: day96(1)})
	if err := mabis.Apply(e, w); !errors.Is(err, mabis.ErrInvalidStreamID) || !strings.HasPrefix(err.Error(), "DayValuesReceived event ") {
		t.Errorf("known type on a stream that is not a billing stream: %v", err)
	}
	e = event(t, stream, 1, mabis.DayValuesReceived{DayValues: day96(1)})
	e.SchemaVersion = 2
	if err := mabis.Apply(e, w); !strings.HasPrefix(fmt.Sprint(err), "event ") || !strings.Contains(fmt.Sprint(err), "schema_version") {
		t.Errorf("schema version 2: %v", err)
	}
	other := day96(1)
	other.MaLo = "50000000005"
	err := mabis.Apply(event(t, stream, 1, mabis.DayValuesReceived{DayValues: other}), w)
	if pe, ok := errors.AsType[*mabis.PayloadError](err); !ok || pe.Field != "malo" || !strings.Contains(err.Error(), "50000000005, but the stream is of MaLo "+testMaLo) {
		t.Errorf("another MaLo's values: %v", err)
	}
	if err := mabis.Apply(event(t, stream, 1, mabis.DayValuesReceived{DayValues: day96(1)}), w); err != nil {
		t.Errorf("valid values: %v", err)
	}
}
