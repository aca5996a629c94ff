package mabis

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/redischeckpoint"
)

// DefaultCorrectionWindow is how long after a month ends CloseMonth
// refuses to close it by default: eight weeks, the time MaBiS leaves for
// corrections before the correction settlement (Korrektur-BKA).
const DefaultCorrectionWindow = 8 * 7 * 24 * time.Hour

// Closure describes a closed month: the per-MaLo detail was dropped, the
// balance-group series remain.
type Closure struct {
	Month string `json:"month"`
	// State is "closing" while CloseMonth drops the detail (a crash leaves
	// it there; CloseMonth again resumes) and "closed" after.
	State    string    `json:"state"`
	ClosedAt time.Time `json:"closed_at"`
	// CorrectionWindow is the window the month was closed after.
	CorrectionWindow string `json:"correction_window"`
	// DroppedKeys counts the per-MaLo keys dropped (by the run that
	// finished the closing).
	DroppedKeys int64 `json:"dropped_keys"`
}

// MonthClosedError is ErrMonthClosed with the month's closure.
type MonthClosedError struct{ Closure Closure }

func (e *MonthClosedError) Error() string {
	return fmt.Sprintf("mabis: month %s is closed (%s at %s, after its correction window of %s): its per-MaLo detail was dropped; the balance-group series remain",
		e.Closure.Month, e.Closure.State, e.Closure.ClosedAt.Format(time.RFC3339), e.Closure.CorrectionWindow)
}

func (e *MonthClosedError) Unwrap() error { return ErrMonthClosed }

// CloseConfig configures CloseMonth. Zero fields mean their default.
type CloseConfig struct {
	// CorrectionWindow is how long after the month's end it stays open.
	// Default DefaultCorrectionWindow.
	CorrectionWindow time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// CloseMonth closes month m of the reader's tenant in the reader's
// version of the read model: it drops every MaLo's detail of the month
// (assignment timeline and packed day values: the memory that grows with
// the MaLos) and keeps the balance-group series, totals, sets and
// clearing counts. A month still inside its correction window (its end
// plus cfg.CorrectionWindow is after now) is refused with
// ErrInCorrectionWindow.
//
// It first records the closure ("closing"), then drops the detail, then
// records "closed". Once the closure is recorded, the projection refuses
// every event of the month (code CLOSED: the stream parks, nothing is
// written, see Apply), so a late correction can neither vanish nor be
// added to the sums without the old values it replaces. Closing a closed
// month is a no-op that returns its closure; a run that crashed half way
// leaves "closing" and the next CloseMonth resumes it (the drop is
// idempotent). Rebuilding or replaying the read model applies the month's
// events again from Kafka: the month is open again in the new version and
// is closed with CloseMonth once more.
func (r *Reader) CloseMonth(ctx context.Context, m Month, cfg CloseConfig) (Closure, error) {
	if cfg.CorrectionWindow == 0 {
		cfg.CorrectionWindow = DefaultCorrectionWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CorrectionWindow < 0 {
		return Closure{}, fmt.Errorf("mabis: close %s: negative correction window %v", m, cfg.CorrectionWindow)
	}
	now := cfg.Now().UTC()
	if open := m.End().Add(cfg.CorrectionWindow); now.Before(open) {
		return Closure{}, fmt.Errorf("%w: %s ends %s, its correction window of %v lasts until %s",
			ErrInCorrectionWindow, m, m.End().Format(time.RFC3339), cfg.CorrectionWindow, open.Format(time.RFC3339))
	}
	marker := r.key(closedKey(r.tenant, m)...)
	c, err := r.closure(ctx, m)
	switch {
	case err != nil:
		return Closure{}, err
	case c != nil && c.State == "closed":
		return *c, nil
	case c == nil:
		// Recorded before anything is dropped: from here on the
		// projection refuses the month's events.
		err := r.client.HSet(ctx, marker, "state", "closing", "closed_at", now.Format(time.RFC3339Nano), "correction_window", cfg.CorrectionWindow.String()).Err()
		if err != nil {
			return Closure{}, fmt.Errorf("mabis: close %s: %w", m, err)
		}
	}
	closeStep("closing")
	dropped, err := r.dropDetail(ctx, m)
	closeStep("dropped")
	if err != nil {
		return Closure{}, fmt.Errorf("mabis: close %s: dropping the per-MaLo detail (run close-month again to resume): %w", m, err)
	}
	if err := r.client.HSet(ctx, marker, "state", "closed", "dropped_keys", dropped).Err(); err != nil {
		return Closure{}, fmt.Errorf("mabis: close %s: %w", m, err)
	}
	c, err = r.closure(ctx, m)
	if err != nil {
		return Closure{}, err
	}
	return *c, nil
}

// closeStep is called by CloseMonth after each of its steps ("closing":
// the closure recorded; "dropped": the detail dropped, "closed" not yet
// recorded). Tests set it to kill the process there.
var closeStep = func(string) {}

// dropDetail unlinks every key of the month's MaLos.
func (r *Reader) dropDetail(ctx context.Context, m Month) (int64, error) {
	pattern := globEscape(r.key(maloKey(r.tenant, m, "")...)) + "*"
	drop := func(ctx context.Context, c redis.Cmdable) (int64, error) {
		var n int64
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			k, err := c.Unlink(ctx, batch...).Result()
			n += k
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			if batch = append(batch, iter.Val()); len(batch) == 500 {
				if err := flush(); err != nil {
					return n, err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return n, err
		}
		return n, flush()
	}
	if cluster, ok := r.client.(*redis.ClusterClient); ok {
		var total atomic.Int64 // ForEachMaster runs the masters concurrently
		err := cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			n, err := drop(ctx, c)
			total.Add(n)
			return err
		})
		return total.Load(), err
	}
	return drop(ctx, r.client)
}

// closure returns the month's closure, or nil when it is open.
func (r *Reader) closure(ctx context.Context, m Month) (*Closure, error) {
	h, err := r.client.HGetAll(ctx, r.key(closedKey(r.tenant, m)...)).Result()
	if err != nil {
		return nil, fmt.Errorf("mabis: closure of %s: %w", m, err)
	}
	if len(h) == 0 {
		return nil, nil
	}
	at, _ := time.Parse(time.RFC3339Nano, h["closed_at"])
	return &Closure{Month: m.String(), State: h["state"], ClosedAt: at, CorrectionWindow: h["correction_window"], DroppedKeys: atoi(h["dropped_keys"])}, nil
}

// Closure returns the closure of month m, or nil while it is open.
func (r *Reader) Closure(ctx context.Context, m Month) (*Closure, error) { return r.closure(ctx, m) }

// MaLoDay is one day of a MaLo's values.
type MaLoDay struct {
	Day string `json:"day"`
	// EnergyWh sums the day's quarter hours; Wh are the quarter hours'
	// values and Substitute their substitute flags, by quarter hour of
	// the day (92, 96 or 100).
	EnergyWh         int64   `json:"energy_wh"`
	SubstituteValues int     `json:"substitute_values"`
	Wh               []int64 `json:"wh"`
	Substitute       []bool  `json:"substitute"`
}

// MaLoMonth is a MaLo's detail for a month.
type MaLoMonth struct {
	ReadModel string `json:"read_model"`
	Tenant    string `json:"tenant"`
	Month     string `json:"month"`
	MaLo      string `json:"malo"`
	// Assignments maps a valid-from day to "{supplier} {eic}" or "ended".
	Assignments map[string]string `json:"assignments"`
	Days        []MaLoDay         `json:"days"`
}

// MaLo returns the detail of MaLo malo in month m: its assignments and
// its day values. A closed month is a *MonthClosedError (ErrMonthClosed);
// a MaLo the month does not know is ErrUnknownMaLo.
func (r *Reader) MaLo(ctx context.Context, m Month, malo string) (MaLoMonth, error) {
	if err := ValidateMaLoID(malo); err != nil {
		return MaLoMonth{}, err
	}
	pipe := r.client.Pipeline()
	closed := pipe.HGetAll(ctx, r.key(closedKey(r.tenant, m)...))
	assignments := pipe.HGetAll(ctx, r.key(maloKey(r.tenant, m, malo)...))
	days := pipe.Get(ctx, r.key(maloDaysKey(r.tenant, m, malo)...))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return MaLoMonth{}, fmt.Errorf("mabis: MaLo %s in %s: %w", malo, m, err)
	}
	if h := closed.Val(); len(h) > 0 {
		at, _ := time.Parse(time.RFC3339Nano, h["closed_at"])
		return MaLoMonth{}, &MonthClosedError{Closure{Month: m.String(), State: h["state"], ClosedAt: at, CorrectionWindow: h["correction_window"], DroppedKeys: atoi(h["dropped_keys"])}}
	}
	out := MaLoMonth{ReadModel: r.ReadModel(), Tenant: r.tenant, Month: m.String(), MaLo: malo, Assignments: assignments.Val(), Days: []MaLoDay{}}
	packed := days.Val()
	if len(out.Assignments) == 0 && packed == "" {
		return MaLoMonth{}, fmt.Errorf("%w: %s has nothing for %s", ErrUnknownMaLo, m, malo)
	}
	decoded, err := decodePackedDays(m, packed)
	if err != nil {
		return MaLoMonth{}, fmt.Errorf("mabis: MaLo %s in %s: %w", malo, m, err)
	}
	out.Days = decoded
	return out, nil
}

// decodePackedDays decodes a MaLo's packed month (see
// redischeckpoint.Writes.ReplacePacked): a width byte, a presence byte
// per day, then per day 13 bytes of flags and 100 values of the width.
func decodePackedDays(m Month, packed string) ([]MaLoDay, error) {
	days := []MaLoDay{}
	if packed == "" {
		return days, nil
	}
	const header, flagBytes, slots = 1 + redischeckpoint.MaxPackedSegments, (redischeckpoint.MaxPackedSlots + 7) / 8, redischeckpoint.MaxPackedSlots
	w := int(packed[0])
	if w < 1 || w > 6 || len(packed) < header+m.DayCount()*(flagBytes+slots*w) {
		return nil, fmt.Errorf("corrupt packed days: width %d, %d bytes", w, len(packed))
	}
	for i, d := range m.Days() {
		if packed[1+i] != 1 {
			continue
		}
		at := header + i*(flagBytes+slots*w)
		day := MaLoDay{Day: d.String(), Wh: make([]int64, d.Slots()), Substitute: make([]bool, d.Slots())}
		for q := range d.Slots() {
			day.Substitute[q] = packed[at+q/8]&(1<<(7-q%8)) != 0
			var buf [8]byte
			v := packed[at+flagBytes+q*w : at+flagBytes+(q+1)*w]
			fill := byte(0)
			if v[0]&0x80 != 0 {
				fill = 0xff
			}
			for j := range 8 - w {
				buf[j] = fill
			}
			copy(buf[8-w:], v)
			day.Wh[q] = int64(binary.BigEndian.Uint64(buf[:]))
			day.EnergyWh += day.Wh[q]
			if day.Substitute[q] {
				day.SubstituteValues++
			}
		}
		days = append(days, day)
	}
	return days, nil
}

// globEscape escapes the characters SCAN MATCH treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// LayoutVersion is the version of the billing read model's key layout:
// 2, packed strings (a MaLo-month's days in one string, a group's series
// as int64 slots). Layout 1 kept hashes of quarter-hour fields; this
// version refuses to read or write it (ErrOldLayout): rebuild the
// projection to migrate.
const LayoutVersion = 2

// CheckLayout makes sure the read model p writes is of LayoutVersion: it
// records the layout in the key "layout" of the read model when the model
// has none of layout 1's keys, and returns ErrOldLayout when it has.
// The worker calls it before it starts the projection; a layout-1 read
// model stops the worker with that error instead of mixing layouts.
func CheckLayout(ctx context.Context, p *redischeckpoint.AtomicProjection) error {
	client, key := p.Client(), p.Key("layout")
	v, err := client.Get(ctx, key).Result()
	switch {
	case err == nil && v == strconv.Itoa(LayoutVersion):
		return nil
	case err == nil:
		return fmt.Errorf("mabis: read model %s has layout %q; this version reads layout %d", p.Name(), v, LayoutVersion)
	case !errors.Is(err, redis.Nil):
		return fmt.Errorf("mabis: layout of %s: %w", p.Name(), err)
	}
	// Layout 1 had no marker: look for its series hashes ("...:bk:{eic}:wh").
	pattern := globEscape(p.Key()) + "*:bk:*:" + oldKindWh
	var found atomic.Bool // ForEachMaster runs the masters concurrently
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		if iter.Next(ctx) {
			found.Store(true)
		}
		return iter.Err()
	}
	if cluster, ok := client.(*redis.ClusterClient); ok {
		err = cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, client)
	}
	if err != nil {
		return fmt.Errorf("mabis: layout of %s: %w", p.Name(), err)
	}
	if found.Load() {
		return fmt.Errorf("%w (read model %s)", ErrOldLayout, p.Name())
	}
	return client.SetNX(ctx, key, strconv.Itoa(LayoutVersion), 0).Err()
}
