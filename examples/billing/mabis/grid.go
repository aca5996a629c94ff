package mabis

import (
	"fmt"
	"sync"
	"time"
	// The grid must not depend on the host's zoneinfo files: a container
	// without them would settle in UTC.
	_ "time/tzdata"
)

// QuarterHour is the length of one settlement period.
const QuarterHour = 15 * time.Minute

// Berlin returns the time zone of the settlement grid, Europe/Berlin.
var Berlin = sync.OnceValue(func() *time.Location {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		panic("mabis: time/tzdata has no Europe/Berlin: " + err.Error())
	}
	return loc
})

// minYear and maxYear bound the dates this package accepts, so that a typo
// such as "20026-03" is an error instead of a grid far in the future.
const minYear, maxYear = 2000, 2199

// Day is a calendar day in German local time, the unit of a metering
// delivery. The zero value is not a valid day.
type Day struct {
	Year  int
	Month time.Month
	Day   int
}

// ParseDay parses "YYYY-MM-DD".
func ParseDay(s string) (Day, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return Day{}, fmt.Errorf("%w: day %q: want YYYY-MM-DD", ErrInvalidDate, s)
	}
	if t.Year() < minYear || t.Year() > maxYear {
		return Day{}, fmt.Errorf("%w: day %q: year outside %d-%d", ErrInvalidDate, s, minYear, maxYear)
	}
	return Day{t.Year(), t.Month(), t.Day()}, nil
}

// DayOf returns the German local day of the instant t.
func DayOf(t time.Time) Day {
	y, m, d := t.In(Berlin()).Date()
	return Day{y, m, d}
}

// String formats the day as "YYYY-MM-DD".
func (d Day) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, int(d.Month), d.Day) }

// Start returns the instant the day begins: midnight in Berlin.
func (d Day) Start() time.Time { return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, Berlin()) }

// End returns the instant the day ends: the next day's Start.
func (d Day) End() time.Time { return time.Date(d.Year, d.Month, d.Day+1, 0, 0, 0, 0, Berlin()) }

// Next returns the following day.
func (d Day) Next() Day { return DayOf(d.End()) }

// AddDays returns the day n days later (earlier for negative n).
func (d Day) AddDays(n int) Day {
	t := time.Date(d.Year, d.Month, d.Day+n, 12, 0, 0, 0, time.UTC)
	return Day{t.Year(), t.Month(), t.Day()}
}

// Before reports whether d is earlier than other.
func (d Day) Before(other Day) bool { return d.String() < other.String() }

// BillingMonth returns the month the day belongs to.
func (d Day) BillingMonth() Month { return Month{d.Year, d.Month} }

// Slots returns the number of quarter hours of the day: 96, or 92 on the
// day clocks go forward (last Sunday of March) and 100 on the day they go
// back (last Sunday of October).
func (d Day) Slots() int { return int(d.End().Sub(d.Start()) / QuarterHour) }

// Hours returns the number of local hours of the day: 24, 23 or 25.
func (d Day) Hours() int { return d.Slots() / 4 }

// SlotStart returns the instant quarter hour i of the day begins, in UTC.
// Slot 0 begins at local midnight. German offsets are whole hours, so four
// consecutive slots from a multiple of four are one local hour.
func (d Day) SlotStart(i int) time.Time { return d.Start().Add(time.Duration(i) * QuarterHour).UTC() }

// SlotIndex returns the quarter hour of the day that contains t, and false
// when t is outside the day.
func (d Day) SlotIndex(t time.Time) (int, bool) {
	if t.Before(d.Start()) || !t.Before(d.End()) {
		return 0, false
	}
	return int(t.Sub(d.Start()) / QuarterHour), true
}

// Month is a billing month. The zero value is not a valid month.
type Month struct {
	Year  int
	Month time.Month
}

// ParseMonth parses "YYYY-MM".
func ParseMonth(s string) (Month, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil || len(s) != 7 {
		return Month{}, fmt.Errorf("%w: month %q: want YYYY-MM", ErrInvalidDate, s)
	}
	if t.Year() < minYear || t.Year() > maxYear {
		return Month{}, fmt.Errorf("%w: month %q: year outside %d-%d", ErrInvalidDate, s, minYear, maxYear)
	}
	return Month{t.Year(), t.Month()}, nil
}

// String formats the month as "YYYY-MM".
func (m Month) String() string { return fmt.Sprintf("%04d-%02d", m.Year, int(m.Month)) }

// FirstDay returns the month's first day.
func (m Month) FirstDay() Day { return Day{m.Year, m.Month, 1} }

// LastDay returns the month's last day.
func (m Month) LastDay() Day { return m.FirstDay().AddDays(m.DayCount() - 1) }

// DayCount returns the number of days of the month.
func (m Month) DayCount() int { return time.Date(m.Year, m.Month+1, 0, 12, 0, 0, 0, time.UTC).Day() }

// Days returns the month's days in order.
func (m Month) Days() []Day {
	days := make([]Day, m.DayCount())
	for i := range days {
		days[i] = Day{m.Year, m.Month, i + 1}
	}
	return days
}

// Contains reports whether d lies in the month.
func (m Month) Contains(d Day) bool { return d.Year == m.Year && d.Month == m.Month }

// Start returns the instant the month begins: midnight of its first day in
// Berlin.
func (m Month) Start() time.Time { return m.FirstDay().Start() }

// End returns the instant the month ends: the next month's Start.
func (m Month) End() time.Time { return time.Date(m.Year, m.Month+1, 1, 0, 0, 0, 0, Berlin()) }

// Slots returns the number of quarter hours of the month.
func (m Month) Slots() int { return int(m.End().Sub(m.Start()) / QuarterHour) }

// FirstSlot returns the month's index of the first quarter hour of d, which
// must lie in the month.
func (m Month) FirstSlot(d Day) int { return int(d.Start().Sub(m.Start()) / QuarterHour) }

// SlotStart returns the instant quarter hour i of the month begins, in UTC.
func (m Month) SlotStart(i int) time.Time { return m.Start().Add(time.Duration(i) * QuarterHour).UTC() }

// SlotIndex returns the quarter hour of the month that contains t, and
// false when t is outside the month.
func (m Month) SlotIndex(t time.Time) (int, bool) {
	if t.Before(m.Start()) || !t.Before(m.End()) {
		return 0, false
	}
	return int(t.Sub(m.Start()) / QuarterHour), true
}
