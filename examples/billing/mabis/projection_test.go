package mabis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

func TestMain(m *testing.M) { testenv.Main(m) }

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
			cfg := loadgen.Config{Tenant: "netz-test", Month: mustMonth(t, month), MaLos: 150, Seed: 7}
			want, stats, err := loadgen.Generate(ctx, store, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if want.Corrections == 0 || want.SupplierChanges == 0 || want.RetroactiveChanges == 0 || want.SubstituteDays == 0 || want.ClearingOpened == 0 {
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
