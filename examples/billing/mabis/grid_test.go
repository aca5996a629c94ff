package mabis_test

import (
	"testing"
	"time"

	"github.com/projector-dev/projector/examples/billing/mabis"
)

func TestDaySlots(t *testing.T) {
	for _, tc := range []struct {
		day          string
		slots, hours int
	}{
		{"2026-03-28", 96, 24},
		{"2026-03-29", 92, 23},  // clocks go forward at 02:00 CET
		{"2026-10-25", 100, 25}, // clocks go back at 03:00 CEST
		{"2026-10-26", 96, 24},
		{"2025-03-30", 92, 23},
		{"2025-10-26", 100, 25},
		{"2024-02-29", 96, 24},
	} {
		d, err := mabis.ParseDay(tc.day)
		if err != nil {
			t.Fatal(err)
		}
		if d.Slots() != tc.slots || d.Hours() != tc.hours {
			t.Errorf("%s: %d quarter hours, %d hours; want %d, %d", tc.day, d.Slots(), d.Hours(), tc.slots, tc.hours)
		}
	}
}

func TestSlotInstants(t *testing.T) {
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		day   string
		slot  int
		start time.Time
	}{
		{"2026-03-29", 0, utc("2026-03-28T23:00:00Z")},
		{"2026-03-29", 7, utc("2026-03-29T00:45:00Z")}, // 01:45 CET
		{"2026-03-29", 8, utc("2026-03-29T01:00:00Z")}, // 03:00 CEST: 02:00-03:00 does not exist
		{"2026-03-29", 91, utc("2026-03-29T21:45:00Z")},
		{"2026-10-25", 8, utc("2026-10-25T00:00:00Z")},  // 02:00 CEST
		{"2026-10-25", 12, utc("2026-10-25T01:00:00Z")}, // 02:00 CET, the second 02:00
		{"2026-10-25", 99, utc("2026-10-25T22:45:00Z")},
		{"2026-07-01", 0, utc("2026-06-30T22:00:00Z")},
	} {
		d, _ := mabis.ParseDay(tc.day)
		if got := d.SlotStart(tc.slot); !got.Equal(tc.start) {
			t.Errorf("%s slot %d starts %v, want %v", tc.day, tc.slot, got, tc.start)
		}
		if got, ok := d.SlotIndex(tc.start.Add(14 * time.Minute)); !ok || got != tc.slot {
			t.Errorf("%s: SlotIndex(%v) = %d, %v; want %d", tc.day, tc.start, got, ok, tc.slot)
		}
	}
	d, _ := mabis.ParseDay("2026-03-29")
	if _, ok := d.SlotIndex(utc("2026-03-29T22:00:00Z")); ok {
		t.Error("SlotIndex of the next day's midnight is in the day")
	}
}

func TestMonthSlots(t *testing.T) {
	for _, tc := range []struct {
		month string
		slots int
	}{
		{"2026-03", 31*96 - 4},
		{"2026-10", 31*96 + 4},
		{"2026-02", 28 * 96},
		{"2028-02", 29 * 96},
		{"2026-06", 30 * 96},
	} {
		m, err := mabis.ParseMonth(tc.month)
		if err != nil {
			t.Fatal(err)
		}
		if m.Slots() != tc.slots {
			t.Errorf("%s: %d quarter hours, want %d", tc.month, m.Slots(), tc.slots)
		}
		// The days' slots add up to the month's, and the month's index of
		// every day's first slot is that day's start.
		sum := 0
		for _, d := range m.Days() {
			if got := m.FirstSlot(d); got != sum || !m.SlotStart(got).Equal(d.Start()) {
				t.Errorf("%s: FirstSlot(%s) = %d, want %d", tc.month, d, got, sum)
			}
			sum += d.Slots()
		}
		if sum != tc.slots {
			t.Errorf("%s: days have %d quarter hours, month %d", tc.month, sum, tc.slots)
		}
	}
}

func TestParseMonthAndDay(t *testing.T) {
	for _, s := range []string{"2026-13", "2026-3", "26-03", "2026-03-01", "1999-12", "march", ""} {
		if _, err := mabis.ParseMonth(s); err == nil {
			t.Errorf("ParseMonth(%q) accepted", s)
		}
	}
	for _, s := range []string{"2026-02-30", "2026-3-1", "2026-03", ""} {
		if _, err := mabis.ParseDay(s); err == nil {
			t.Errorf("ParseDay(%q) accepted", s)
		}
	}
}

func TestRollUpOnClockChangeDays(t *testing.T) {
	for _, tc := range []struct {
		month         string
		hours, dayIdx int // hour points; the clock change day
		dayHours      int
	}{
		{"2026-03", 31*24 - 1, 28, 23},
		{"2026-10", 31*24 + 1, 24, 25},
	} {
		m, _ := mabis.ParseMonth(tc.month)
		n := m.Slots()
		wh, malos, subst := make([]int64, n), make([]int64, n), make([]int64, n)
		for i := range wh {
			wh[i], malos[i] = int64(i%7+1), int64(i%5)
		}
		hours := mabis.RollUp(m, wh, malos, subst, mabis.Hourly)
		days := mabis.RollUp(m, wh, malos, subst, mabis.Daily)
		if len(hours) != tc.hours || len(days) != m.DayCount() {
			t.Fatalf("%s: %d hours, %d days; want %d, %d", tc.month, len(hours), len(days), tc.hours, m.DayCount())
		}
		if got := days[tc.dayIdx].End.Sub(days[tc.dayIdx].Start); got != time.Duration(tc.dayHours)*time.Hour {
			t.Errorf("%s: clock change day lasts %v", tc.month, got)
		}
		var sum, hsum, dsum int64
		for _, v := range wh {
			sum += v
		}
		for _, p := range hours {
			hsum += p.EnergyWh
			if p.End.Sub(p.Start) != time.Hour {
				t.Errorf("%s: hour point %v lasts %v", tc.month, p.Start, p.End.Sub(p.Start))
			}
		}
		for _, p := range days {
			dsum += p.EnergyWh
			if p.MaLos != 4 {
				t.Errorf("%s: day %v has %d MaLos at most, want 4", tc.month, p.Start, p.MaLos)
			}
		}
		if hsum != sum || dsum != sum {
			t.Errorf("%s: hours sum to %d, days to %d, quarter hours to %d", tc.month, hsum, dsum, sum)
		}
	}
}
