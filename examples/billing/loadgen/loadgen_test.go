package loadgen_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
)

func march(t testing.TB) mabis.Month {
	t.Helper()
	m, err := mabis.ParseMonth("2026-03")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDeterministic: the same seed gives the same streams and totals,
// whatever the concurrency of the appends; another seed another month.
func TestDeterministic(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cfg := loadgen.Config{Tenant: "netz-a", Month: march(t), MaLos: 60, Seed: 42}
	streams, want, err := loadgen.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, concurrency := range []int{1, 7} {
		store := memstore.NewEventStore()
		cfg.Concurrency = concurrency
		got, stats, err := loadgen.Generate(ctx, store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if stats.Streams != len(streams) {
			t.Errorf("concurrency %d: %d streams, want %d", concurrency, stats.Streams, len(streams))
		}
		for _, eic := range want.EICs() {
			if !slices.Equal(got.Groups[eic].Wh, want.Groups[eic].Wh) {
				t.Errorf("concurrency %d: %s differs", concurrency, eic)
			}
		}
		for _, s := range streams[:5] {
			i := 0
			for e, err := range store.ReadStream(ctx, s.ID, 0) {
				if err != nil {
					t.Fatal(err)
				}
				if e.Type != s.Events[i].Type || string(e.Data) != string(s.Events[i].Data) {
					t.Fatalf("%s event %d differs from Build's", s.ID, i+1)
				}
				i++
			}
			if i != len(s.Events) {
				t.Errorf("%s has %d events, want %d", s.ID, i, len(s.Events))
			}
		}
	}
	cfg.Seed = 43
	_, other, err := loadgen.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if eic := want.EICs()[0]; other.Groups[eic] != nil && slices.Equal(other.Groups[eic].Wh, want.Groups[eic].Wh) {
		t.Error("seeds 42 and 43 generate the same month")
	}
}

// TestStreamsFollowTheRule checks the generated streams against the rule
// the projection relies on: every day's values name the balance group
// assigned on that day by the assignment events recorded before them, and
// a correction that moves a day names the group the day was in.
func TestStreamsFollowTheRule(t *testing.T) {
	m := march(t)
	streams, x, err := loadgen.Build(loadgen.Config{Month: m, MaLos: 300, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	if x.RetroactiveChanges == 0 || x.SupplierChanges == 0 || x.SupplyEnds == 0 || x.Corrections == 0 {
		t.Fatalf("the month lacks a case: %+v", x)
	}
	for _, s := range streams {
		type entry struct {
			from  mabis.Day
			eic   string
			ended bool
		}
		var timeline []entry
		at := func(d mabis.Day) string {
			eic := ""
			for _, e := range timeline {
				if !d.Before(e.from) {
					eic = e.eic
					if e.ended {
						eic = ""
					}
				}
			}
			return eic
		}
		settled := map[string]string{}
		for i, ed := range s.Events {
			e := framework.Event{StreamID: s.ID, Sequence: uint64(i + 1), Type: ed.Type, SchemaVersion: ed.SchemaVersion, Data: ed.Data}
			p, err := mabis.Decode(e, m)
			if err != nil {
				t.Fatalf("%s event %d: %v", s.ID, i+1, err)
			}
			switch p := p.(type) {
			case mabis.AssignmentBegun:
				timeline = append(timeline, entry{from: mustDay(t, p.ValidFrom), eic: p.BalanceGroup})
			case mabis.AssignmentChanged:
				timeline = append(timeline, entry{from: mustDay(t, p.ValidFrom), eic: p.BalanceGroup})
			case mabis.AssignmentEnded:
				timeline = append(timeline, entry{from: mustDay(t, p.ValidFrom), ended: true})
			case mabis.DayValuesReceived:
				if _, dup := settled[p.Day]; dup {
					t.Errorf("%s: %s received twice; a second delivery must be a correction", s.ID, p.Day)
				}
				if want := at(mustDay(t, p.Day)); p.BalanceGroup != want {
					t.Errorf("%s: values of %s in %q, assigned %q", s.ID, p.Day, p.BalanceGroup, want)
				}
				settled[p.Day] = p.BalanceGroup
			case mabis.ValuesCorrected:
				if p.MovedFrom != "" && settled[p.Day] != p.MovedFrom {
					t.Errorf("%s: %s moved from %s, but was in %s", s.ID, p.Day, p.MovedFrom, settled[p.Day])
				}
				if p.MovedFrom == "" && settled[p.Day] != p.BalanceGroup {
					t.Errorf("%s: correction of %s in %s without moving it from %s", s.ID, p.Day, p.BalanceGroup, settled[p.Day])
				}
				if want := at(mustDay(t, p.Day)); p.BalanceGroup != want {
					t.Errorf("%s: correction of %s in %q, assigned %q", s.ID, p.Day, p.BalanceGroup, want)
				}
				settled[p.Day] = p.BalanceGroup
			}
		}
	}
}

func TestGenerateTwiceConflicts(t *testing.T) {
	ctx := t.Context()
	store := memstore.NewEventStore()
	cfg := loadgen.Config{Month: march(t), MaLos: 3}
	if _, _, err := loadgen.Generate(ctx, store, cfg); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadgen.Generate(ctx, store, cfg); !errors.Is(err, framework.ErrVersionConflict) {
		t.Errorf("second Generate = %v, want a version conflict", err)
	}
}

func TestConfigValidate(t *testing.T) {
	err := loadgen.Config{Tenant: "a/b", MaLos: -1}.Validate()
	for _, want := range []string{"Tenant", "Month is required", "MaLos -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to mention %q", err, want)
		}
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
