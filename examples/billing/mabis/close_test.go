package mabis_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// closeFixture is a generated March 2026 projected into real Redis.
type closeFixture struct {
	p      *redischeckpoint.AtomicProjection
	client redis.UniversalClient
	reader *mabis.Reader
	events *memstore.EventStore
	month  mabis.Month
	prefix string
	// namespace is the Redis key namespace of the projection's Store.
	namespace string
}

func newCloseFixture(t *testing.T) *closeFixture {
	t.Helper()
	ctx := ctxFor(t)
	f := &closeFixture{events: memstore.NewEventStore(), month: mustMonth(t, "2026-03")}
	cfg := loadgen.Config{Tenant: "netz-close", Month: f.month, MaLos: 30, Seed: 9}
	if _, _, err := loadgen.Generate(ctx, f.events, cfg); err != nil {
		t.Fatal(err)
	}
	env := testenv.Redis(t)
	f.namespace = env.Prefix(t)
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: env.Client, Namespace: f.namespace})
	if err != nil {
		t.Fatal(err)
	}
	if f.p, err = mabis.NewProjection(store, mabis.ProjectionName); err != nil {
		t.Fatal(err)
	}
	f.client = f.p.Client()
	f.prefix, _ = framework.TenantPrefix(cfg.Tenant)
	f.project(t)
	f.reader, _ = mabis.NewReader(f.p, cfg.Tenant)
	return f
}

func (f *closeFixture) project(t *testing.T) {
	t.Helper()
	runner, _ := framework.NewProjectionRunner(framework.RunnerConfig{Concurrency: 4})
	if _, err := runner.RunPrefix(ctxFor(t), f.p, f.events, f.prefix); err != nil {
		t.Fatal(err)
	}
}

// answers are the group answers a closed month keeps.
func (f *closeFixture) answers(t *testing.T) (mabis.MonthTotals, []mabis.Series) {
	t.Helper()
	ctx := ctxFor(t)
	totals, err := f.reader.BalanceGroups(ctx, f.month)
	if err != nil {
		t.Fatal(err)
	}
	var series []mabis.Series
	for _, g := range totals.BalanceGroups {
		for _, res := range []mabis.Resolution{mabis.QuarterHourly, mabis.Hourly, mabis.Daily} {
			s, err := f.reader.Series(ctx, f.month, g.EIC, res)
			if err != nil {
				t.Fatal(err)
			}
			series = append(series, s)
		}
	}
	totals.Closed = nil
	return totals, series
}

// keys counts the read model's keys whose name contains part, and their
// bytes (MEMORY USAGE).
func (f *closeFixture) keys(t *testing.T, part string) (n int, bytes int64) {
	t.Helper()
	ctx := ctxFor(t)
	iter := f.client.Scan(ctx, 0, f.p.Key()+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if strings.Contains(iter.Val(), part) {
			n++
			b, _ := f.client.MemoryUsage(ctx, iter.Val(), 0).Result()
			bytes += b
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return n, bytes
}

func (f *closeFixture) someMaLo(t *testing.T) string {
	t.Helper()
	for id, err := range f.events.ListStreams(ctxFor(t), f.prefix) {
		if err != nil {
			t.Fatal(err)
		}
		if _, malo, _, err := mabis.ParseStreamID(id); err == nil {
			return malo
		}
	}
	t.Fatal("no stream")
	return ""
}

func at(s string) func() time.Time {
	return func() time.Time { t, _ := time.Parse(time.RFC3339, s); return t }
}

// TestCloseMonth closes a projected month: refused inside the correction
// window; then the per-MaLo detail goes, the group answers stay as they
// were, MaLo queries say the month is closed, a late correction is
// refused (not lost, not added), and closing again changes nothing.
func TestCloseMonth(t *testing.T) {
	ctx := ctxFor(t)
	f := newCloseFixture(t)
	malo := f.someMaLo(t)
	if _, err := f.reader.MaLo(ctx, f.month, malo); err != nil {
		t.Fatalf("MaLo before closing: %v", err)
	}
	totals, series := f.answers(t)
	detailKeys, detailBytes := f.keys(t, ":malo:")
	allKeys, allBytes := f.keys(t, "")
	t.Logf("before closing: %d keys, %d bytes; per-MaLo detail %d keys, %d bytes (%d B per MaLo-month)", allKeys, allBytes, detailKeys, detailBytes, detailBytes/30)

	// Inside the window (ends 1 April, 8 weeks): refused, nothing changed.
	_, err := f.reader.CloseMonth(ctx, f.month, mabis.CloseConfig{Now: at("2026-05-20T00:00:00Z")})
	if !errors.Is(err, mabis.ErrInCorrectionWindow) {
		t.Fatalf("CloseMonth inside the window = %v, want ErrInCorrectionWindow", err)
	}
	if n, _ := f.keys(t, ":malo:"); n != detailKeys {
		t.Fatalf("a refused close dropped keys: %d of %d left", n, detailKeys)
	}
	// A shorter window, configured: closes.
	c, err := f.reader.CloseMonth(ctx, f.month, mabis.CloseConfig{CorrectionWindow: 24 * time.Hour, Now: at("2026-05-20T00:00:00Z")})
	if err != nil {
		t.Fatal(err)
	}
	if c.State != "closed" || c.DroppedKeys != int64(detailKeys) || c.Month != "2026-03" || c.CorrectionWindow != "24h0m0s" {
		t.Errorf("closure %+v, want closed with %d keys dropped", c, detailKeys)
	}
	if n, _ := f.keys(t, ":malo:"); n != 0 {
		t.Errorf("%d per-MaLo keys left after closing", n)
	}
	_, after := f.keys(t, "")
	t.Logf("after closing: %d bytes (%.1fx less)", after, float64(allBytes)/float64(after))

	gotTotals, gotSeries := f.answers(t)
	if !reflect.DeepEqual(gotTotals, totals) || !reflect.DeepEqual(gotSeries, series) {
		t.Errorf("the group answers changed with the closing")
	}
	if tot, _ := f.reader.BalanceGroups(ctx, f.month); tot.Closed == nil || tot.Closed.State != "closed" {
		t.Errorf("the month's totals do not say it is closed: %+v", tot.Closed)
	}
	_, err = f.reader.MaLo(ctx, f.month, malo)
	closed, ok := errors.AsType[*mabis.MonthClosedError](err)
	if !ok || !errors.Is(err, mabis.ErrMonthClosed) || closed.Closure.State != "closed" {
		t.Errorf("MaLo of a closed month = %v, want a MonthClosedError", err)
	}

	// A late correction of the closed month: refused with CLOSED before
	// anything is written; the cursor stays, so the stream parks there.
	stream, _ := mabis.StreamID("netz-close", malo, f.month)
	cursor, _ := f.p.LastSequence(ctx, stream)
	v := day96(5)
	v.MaLo, v.Day = malo, "2026-03-10"
	late := event(t, stream, cursor+1, mabis.ValuesCorrected{DayValues: v, Reason: "late"})
	n, err := f.p.ApplyBatch(ctx, []framework.Event{late})
	we, ok := errors.AsType[*redischeckpoint.WriteError](err)
	if n != 0 || !ok || !errors.Is(err, redischeckpoint.ErrWriteRefused) || we.Code != "CLOSED" {
		t.Fatalf("late correction: %d applied, %v; want refused with CLOSED", n, err)
	}
	if now, _ := f.p.LastSequence(ctx, stream); now != cursor {
		t.Errorf("cursor moved from %d to %d", cursor, now)
	}
	if gotTotals, gotSeries = f.answers(t); !reflect.DeepEqual(gotTotals, totals) || !reflect.DeepEqual(gotSeries, series) {
		t.Errorf("a refused late correction changed the group answers")
	}

	// Closing twice: the same closure, nothing else.
	again, err := f.reader.CloseMonth(ctx, f.month, mabis.CloseConfig{CorrectionWindow: 24 * time.Hour, Now: at("2026-06-01T00:00:00Z")})
	if err != nil || again != c {
		t.Errorf("closing again = %+v, %v; want %+v", again, err, c)
	}
}

// TestCloseMonthResumesAnInterruptedClose leaves the state a close-month
// stopped between recording the closure and dropping the detail leaves
// ("closing", every per-MaLo key still there), as a crash there would:
// MaLo queries already say closed, events are refused, and the next
// CloseMonth drops the detail and records "closed".
func TestCloseMonthResumesAnInterruptedClose(t *testing.T) {
	ctx := ctxFor(t)
	f := newCloseFixture(t)
	totals, series := f.answers(t)
	marker := f.p.Key("netz-close", "2026-03", "closed")
	if err := f.client.HSet(ctx, marker, "state", "closing", "closed_at", "2026-06-01T00:00:00Z", "correction_window", "1344h0m0s").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reader.MaLo(ctx, f.month, f.someMaLo(t)); !errors.Is(err, mabis.ErrMonthClosed) {
		t.Errorf("MaLo while closing = %v, want ErrMonthClosed", err)
	}
	detail, _ := f.keys(t, ":malo:")
	c, err := f.reader.CloseMonth(ctx, f.month, mabis.CloseConfig{Now: at("2026-07-01T00:00:00Z")})
	if err != nil {
		t.Fatal(err)
	}
	if c.State != "closed" || c.DroppedKeys != int64(detail) || !c.ClosedAt.Equal(at("2026-06-01T00:00:00Z")()) {
		t.Errorf("resumed closure %+v, want closed at the first attempt's time with %d keys dropped", c, detail)
	}
	if gotTotals, gotSeries := f.answers(t); !reflect.DeepEqual(gotTotals, totals) || !reflect.DeepEqual(gotSeries, series) {
		t.Errorf("the group answers changed")
	}
}

// TestRebuildAfterCloseReopensTheMonth: a rebuild (here the reset and
// re-run of the same version, as a replay does) applies every event from
// the event store again, so the month is open again with its detail and
// the same answers.
func TestRebuildAfterCloseReopensTheMonth(t *testing.T) {
	ctx := ctxFor(t)
	f := newCloseFixture(t)
	totals, series := f.answers(t)
	if _, err := f.reader.CloseMonth(ctx, f.month, mabis.CloseConfig{Now: at("2027-01-01T00:00:00Z")}); err != nil {
		t.Fatal(err)
	}
	if err := f.p.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	f.project(t)
	if c, err := f.reader.Closure(ctx, f.month); err != nil || c != nil {
		t.Errorf("closure after the rebuild = %+v, %v; want open", c, err)
	}
	if _, err := f.reader.MaLo(ctx, f.month, f.someMaLo(t)); err != nil {
		t.Errorf("MaLo after the rebuild: %v", err)
	}
	if gotTotals, gotSeries := f.answers(t); !reflect.DeepEqual(gotTotals, totals) || !reflect.DeepEqual(gotSeries, series) {
		t.Errorf("the answers after the rebuild differ")
	}
}

// TestCheckLayout: an empty read model gets layout 2 recorded; one with a
// layout-1 series hash is refused with ErrOldLayout, and so are the reads.
func TestCheckLayout(t *testing.T) {
	ctx := ctxFor(t)
	p, _ := newProjection(t)
	if err := mabis.CheckLayout(ctx, p); err != nil {
		t.Fatal(err)
	}
	if v, _ := p.Client().Get(ctx, p.Key("layout")).Result(); v != "2" {
		t.Errorf("layout %q, want 2", v)
	}
	old, _ := newProjection(t)
	c := old.Client()
	c.SAdd(ctx, old.Key("netz-test", "2026-03", "balance-groups"), testEIC)
	c.HSet(ctx, old.Key("netz-test", "2026-03", "bk", testEIC, "wh"), "0", "12")
	if err := mabis.CheckLayout(ctx, old); !errors.Is(err, mabis.ErrOldLayout) {
		t.Errorf("CheckLayout of a layout-1 model = %v, want ErrOldLayout", err)
	}
	r, _ := mabis.NewReader(old, "netz-test")
	if _, err := r.Series(ctx, mustMonth(t, "2026-03"), testEIC, mabis.Daily); !errors.Is(err, mabis.ErrOldLayout) {
		t.Errorf("Series of a layout-1 model = %v, want ErrOldLayout", err)
	}
}

// The crash of a close-month: the test binary runs itself as a child with
// these variables set (TestMain runs closeMonthChild), closes the month of
// the parent's fixture in the same Redis, and SIGKILLs itself after the
// step named by closeKillStep.
const (
	closeChildAddr      = "MABIS_CLOSE_CHILD_REDIS"
	closeChildNamespace = "MABIS_CLOSE_CHILD_NAMESPACE"
	closeKillStep       = "MABIS_CLOSE_CHILD_KILL_AFTER"
)

// TestCloseMonthKilledHalfWay SIGKILLs a process running CloseMonth after
// it recorded the closure ("closing") and, in a second case, after it
// dropped the detail but before it recorded "closed". In both, MaLo queries
// already say the month is closed, a late event of the month is refused,
// and the next CloseMonth (another process) finishes the closure with the
// group answers unchanged.
func TestCloseMonthKilledHalfWay(t *testing.T) {
	for _, step := range []string{"closing", "dropped"} {
		t.Run("after "+step, func(t *testing.T) {
			ctx := ctxFor(t)
			f := newCloseFixture(t)
			env := testenv.Redis(t)
			if !env.Real {
				t.Skip("needs a Redis server a child process can reach (miniredis is in-process)")
			}
			totals, series := f.answers(t)
			detail, _ := f.keys(t, ":malo:")
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^$")
			cmd.Env = append(os.Environ(), closeChildAddr+"="+env.Addr, closeChildNamespace+"="+f.namespace, closeKillStep+"="+step)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("the child was not killed after %q: %v\n%s", step, err, out)
			}
			c, err := f.reader.Closure(ctx, f.month)
			if err != nil || c == nil || c.State != "closing" {
				t.Fatalf("closure after the kill = %+v, %v; want state closing", c, err)
			}
			left, _ := f.keys(t, ":malo:")
			if step == "closing" && left != detail || step == "dropped" && left != 0 {
				t.Fatalf("%d per-MaLo keys left after a kill after %q (of %d)", left, step, detail)
			}
			if _, err := f.reader.MaLo(ctx, f.month, f.someMaLo(t)); !errors.Is(err, mabis.ErrMonthClosed) {
				t.Errorf("MaLo after the kill = %v, want ErrMonthClosed", err)
			}
			c2, err := f.reader.CloseMonth(ctx, f.month, mabis.CloseConfig{Now: at("2026-07-01T00:00:00Z")})
			if err != nil {
				t.Fatal(err)
			}
			if c2.State != "closed" || !c2.ClosedAt.Equal(c.ClosedAt) {
				t.Errorf("resumed closure %+v, want closed at the killed run's time %v", c2, c.ClosedAt)
			}
			if left, _ := f.keys(t, ":malo:"); left != 0 {
				t.Errorf("%d per-MaLo keys left after the resumed closure", left)
			}
			if gotTotals, gotSeries := f.answers(t); !reflect.DeepEqual(gotTotals, totals) || !reflect.DeepEqual(gotSeries, series) {
				t.Errorf("the group answers changed")
			}
		})
	}
}

// closeMonthChild is the child of TestCloseMonthKilledHalfWay, run by
// TestMain when the child's variables are set: it closes the parent's
// month and is killed after the step named by closeKillStep. It returns
// only when it was not killed: an error.
func closeMonthChild() error {
	client := redis.NewClient(&redis.Options{Addr: os.Getenv(closeChildAddr)})
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: os.Getenv(closeChildNamespace)})
	if err != nil {
		return err
	}
	p, err := mabis.NewProjection(store, mabis.ProjectionName)
	if err != nil {
		return err
	}
	reader, err := mabis.NewReader(p, "netz-close")
	if err != nil {
		return err
	}
	month, err := mabis.ParseMonth("2026-03")
	if err != nil {
		return err
	}
	kill := os.Getenv(closeKillStep)
	mabis.SetCloseStep(func(step string) {
		if step == kill {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	})
	_, err = reader.CloseMonth(context.Background(), month, mabis.CloseConfig{Now: at("2026-07-01T00:00:00Z")})
	return fmt.Errorf("CloseMonth returned (%v) instead of being killed after %q", err, kill)
}
