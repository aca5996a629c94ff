package mabis

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/redischeckpoint"
)

// Reader queries the billing read model of one tenant, in one version of
// the read model. It is safe for concurrent use.
type Reader struct {
	p      *redischeckpoint.AtomicProjection
	client redis.UniversalClient
	key    func(parts ...string) string
	tenant string
}

// NewReader returns a reader of the read model p writes (p's version), for
// tenant. Queries that must see the live version call [Reader.Live] first.
func NewReader(p *redischeckpoint.AtomicProjection, tenant string) (*Reader, error) {
	if err := framework.ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	return &Reader{p: p, client: p.Client(), key: p.Key, tenant: tenant}, nil
}

// Live returns a reader of the live version of the read model (see
// redischeckpoint.Store.Live): one query reads one version, also while a
// rebuild switches the live pointer.
func (r *Reader) Live(ctx context.Context) (*Reader, error) {
	live, err := r.p.Live(ctx)
	if err != nil {
		return nil, err
	}
	return r.at(live), nil
}

// Version returns a reader of the read model's version name ("billing@v3").
func (r *Reader) Version(name string) (*Reader, error) {
	p, err := r.p.Version(name)
	if err != nil {
		return nil, err
	}
	return r.at(p), nil
}

func (r *Reader) at(p *redischeckpoint.AtomicProjection) *Reader {
	if p == r.p {
		return r
	}
	return &Reader{p: p, client: p.Client(), key: p.Key, tenant: r.tenant}
}

// ReadModel names the version the reader reads: "billing" or "billing@v3".
func (r *Reader) ReadModel() string { return r.p.Name() }

// Projection returns the projection the reader reads.
func (r *Reader) Projection() *redischeckpoint.AtomicProjection { return r.p }

// Tenant returns the tenant the reader reads.
func (r *Reader) Tenant() string { return r.tenant }

// BalanceGroupTotals are a balance group's totals for a month.
type BalanceGroupTotals struct {
	EIC string `json:"eic"`
	// EnergyWh is the sum of every quarter hour, in Wh.
	EnergyWh int64 `json:"energy_wh"`
	// SubstituteValues counts the substitute values in the sums.
	SubstituteValues int64 `json:"substitute_values"`
	// MaLoValues counts the quarter-hour values of MaLos in the sums.
	MaLoValues int64 `json:"malo_values"`
	// QuarterHours is the number of quarter hours of the month;
	// QuarterHoursWithValues those at least one MaLo contributed to.
	QuarterHours           int `json:"quarter_hours"`
	QuarterHoursWithValues int `json:"quarter_hours_with_values"`
	// PeakMaLos is the most MaLos that contributed to one quarter hour.
	PeakMaLos int64 `json:"peak_malos"`
	// AssignedMaLos counts the MaLos assigned to the group on at least
	// one day of the month; Suppliers are their suppliers.
	AssignedMaLos int64    `json:"assigned_malos"`
	Suppliers     []string `json:"suppliers"`
	// ClearingOpened and ClearingResolved count clearing cases about the
	// group opened and resolved in the month.
	ClearingOpened   int64 `json:"clearing_opened"`
	ClearingResolved int64 `json:"clearing_resolved"`
}

// MonthTotals are the totals of every balance group of a month.
type MonthTotals struct {
	// ReadModel names the version of the read model read: "billing@v2".
	ReadModel     string               `json:"read_model"`
	Tenant        string               `json:"tenant"`
	Month         string               `json:"month"`
	BalanceGroups []BalanceGroupTotals `json:"balance_groups"`
	// EnergyWh and SubstituteValues sum over the groups.
	EnergyWh         int64 `json:"energy_wh"`
	SubstituteValues int64 `json:"substitute_values"`
	// Clearing cases of the month: opened, resolved and still open.
	ClearingOpened   int64 `json:"clearing_opened"`
	ClearingResolved int64 `json:"clearing_resolved"`
	ClearingOpen     int64 `json:"clearing_open"`
	// Closed is the month's closure when CloseMonth closed it: the
	// totals and series remain, the MaLos' detail is gone.
	Closed *Closure `json:"closed,omitempty"`
}

// series is a balance group's month as stored, one entry per quarter hour.
type series struct {
	wh, malos, substitutes []int64
}

// BalanceGroups returns the totals of every balance group of month m, in
// EIC order. A month without data has no groups, which is not an error.
func (r *Reader) BalanceGroups(ctx context.Context, m Month) (MonthTotals, error) {
	out := MonthTotals{ReadModel: r.ReadModel(), Tenant: r.tenant, Month: m.String(), BalanceGroups: []BalanceGroupTotals{}}
	eics, err := r.client.SMembers(ctx, r.key(balanceGroupsKey(r.tenant, m)...)).Result()
	if err != nil {
		return out, fmt.Errorf("mabis: balance groups of %s: %w", m, err)
	}
	slices.Sort(eics)
	clearing, err := r.client.HGetAll(ctx, r.key(clearingKey(r.tenant, m)...)).Result()
	if err != nil {
		return out, fmt.Errorf("mabis: clearing cases of %s: %w", m, err)
	}
	open, err := r.client.SCard(ctx, r.key(clearingOpenKey(r.tenant, m)...)).Result()
	if err != nil {
		return out, fmt.Errorf("mabis: open clearing cases of %s: %w", m, err)
	}
	out.ClearingOpened, out.ClearingResolved, out.ClearingOpen = atoi(clearing["opened"]), atoi(clearing["resolved"]), open
	if out.Closed, err = r.closure(ctx, m); err != nil {
		return out, err
	}
	for _, eic := range eics {
		s, err := r.series(ctx, m, eic)
		if err != nil {
			return out, err
		}
		pipe := r.client.Pipeline()
		assigned := pipe.SCard(ctx, r.key(bkKey(r.tenant, m, eic, kindAssigned)...))
		suppliers := pipe.SMembers(ctx, r.key(bkKey(r.tenant, m, eic, kindSuppliers)...))
		if _, err := pipe.Exec(ctx); err != nil {
			return out, fmt.Errorf("mabis: balance group %s in %s: %w", eic, m, err)
		}
		t := BalanceGroupTotals{
			EIC:              eic,
			QuarterHours:     m.Slots(),
			AssignedMaLos:    assigned.Val(),
			Suppliers:        suppliers.Val(),
			ClearingOpened:   atoi(clearing["opened:"+eic]),
			ClearingResolved: atoi(clearing["resolved:"+eic]),
		}
		slices.Sort(t.Suppliers)
		for i := range s.wh {
			t.EnergyWh += s.wh[i]
			t.SubstituteValues += s.substitutes[i]
			t.MaLoValues += s.malos[i]
			t.PeakMaLos = max(t.PeakMaLos, s.malos[i])
			if s.malos[i] > 0 {
				t.QuarterHoursWithValues++
			}
		}
		out.EnergyWh += t.EnergyWh
		out.SubstituteValues += t.SubstituteValues
		out.BalanceGroups = append(out.BalanceGroups, t)
	}
	return out, nil
}

// series reads a balance group's month. A group the month does not know is
// ErrUnknownBalanceGroup; a read model of layout 1 is ErrOldLayout.
func (r *Reader) series(ctx context.Context, m Month, eic string) (series, error) {
	pipe := r.client.Pipeline()
	known := pipe.SIsMember(ctx, r.key(balanceGroupsKey(r.tenant, m)...), eic)
	wh := pipe.Get(ctx, r.key(bkKey(r.tenant, m, eic, kindWh)...))
	malos := pipe.HGetAll(ctx, r.key(bkKey(r.tenant, m, eic, kindMaLos)...))
	subst := pipe.Get(ctx, r.key(bkKey(r.tenant, m, eic, kindSubstitutes)...))
	old := pipe.Exists(ctx, r.key(bkKey(r.tenant, m, eic, oldKindWh)...))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return series{}, fmt.Errorf("mabis: series of %s in %s: %w", eic, m, err)
	}
	if old.Val() > 0 {
		return series{}, fmt.Errorf("%w: %s of %s in %s", ErrOldLayout, eic, r.ReadModel(), m)
	}
	if !known.Val() {
		return series{}, fmt.Errorf("%w: %s has nothing for %s", ErrUnknownBalanceGroup, m, eic)
	}
	n := m.Slots()
	s := series{wh: make([]int64, n), malos: make([]int64, n), substitutes: make([]int64, n)}
	corrupt := func(kind, field, value string) error {
		return fmt.Errorf("mabis: %s of %s in %s: corrupt field %q = %q", kind, eic, m, field, value)
	}
	for _, f := range []struct {
		kind   string
		packed string
		into   []int64
	}{{kindWh, wh.Val(), s.wh}, {kindSubstitutes, subst.Val(), s.substitutes}} {
		if len(f.packed)%8 != 0 || len(f.packed) > 8*n {
			return series{}, fmt.Errorf("mabis: %s of %s in %s: corrupt packed series of %d bytes", f.kind, eic, m, len(f.packed))
		}
		for i := range len(f.packed) / 8 {
			f.into[i] = int64(binary.BigEndian.Uint64([]byte(f.packed[8*i : 8*i+8])))
		}
	}
	// MaLos are counted per day: every quarter hour of the day has them.
	for field, value := range malos.Val() {
		d, err1 := ParseDay(field)
		v, err2 := strconv.ParseInt(value, 10, 64)
		if err1 != nil || err2 != nil || !m.Contains(d) {
			return series{}, corrupt(kindMaLos, field, value)
		}
		first := m.FirstSlot(d)
		for q := range d.Slots() {
			s.malos[first+q] = v
		}
	}
	return s, nil
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// Resolution is the period of a series' points.
type Resolution string

// Resolutions of a series.
const (
	QuarterHourly Resolution = "quarter-hour"
	Hourly        Resolution = "hour"
	Daily         Resolution = "day"
)

// ParseResolution parses "quarter-hour", "hour" or "day".
func ParseResolution(s string) (Resolution, error) {
	switch r := Resolution(s); r {
	case QuarterHourly, Hourly, Daily:
		return r, nil
	}
	return "", fmt.Errorf("mabis: resolution %q: want %s, %s or %s", s, QuarterHourly, Hourly, Daily)
}

// Point is one period of a series. Start and End are German local time
// (with their UTC offset, so the two 02:00 hours of the autumn clock change
// differ).
type Point struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// EnergyWh is the sum of the period, in Wh.
	EnergyWh int64 `json:"energy_wh"`
	// MaLos is the number of MaLos with a value in the quarter hour; for
	// an hour or a day, the most of its quarter hours.
	MaLos int64 `json:"malos"`
	// SubstituteValues counts the substitute values of the period.
	SubstituteValues int64 `json:"substitute_values"`
}

// Series is a balance group's sum time series for a month.
type Series struct {
	// ReadModel names the version of the read model read: "billing@v2".
	ReadModel        string     `json:"read_model"`
	Tenant           string     `json:"tenant"`
	Month            string     `json:"month"`
	BalanceGroup     string     `json:"balance_group"`
	Resolution       Resolution `json:"resolution"`
	EnergyWh         int64      `json:"energy_wh"`
	SubstituteValues int64      `json:"substitute_values"`
	Points           []Point    `json:"points"`
}

// Series returns the sum time series of balance group eic in month m at
// resolution res: one point per quarter hour, per local hour (23 or 25 on
// the days of the clock changes) or per day. A group with nothing in the
// month is ErrUnknownBalanceGroup.
func (r *Reader) Series(ctx context.Context, m Month, eic string, res Resolution) (Series, error) {
	if err := ValidateEIC(eic); err != nil {
		return Series{}, err
	}
	if _, err := ParseResolution(string(res)); err != nil {
		return Series{}, err
	}
	s, err := r.series(ctx, m, eic)
	if err != nil {
		return Series{}, err
	}
	out := Series{ReadModel: r.ReadModel(), Tenant: r.tenant, Month: m.String(), BalanceGroup: eic, Resolution: res}
	for i := range s.wh {
		out.EnergyWh += s.wh[i]
		out.SubstituteValues += s.substitutes[i]
	}
	out.Points = RollUp(m, s.wh, s.malos, s.substitutes, res)
	return out, nil
}

// RollUp groups a month's quarter-hour series (one entry per quarter hour
// of m) into points at resolution res.
func RollUp(m Month, wh, malos, substitutes []int64, res Resolution) []Point {
	var bounds []int // first slot of each point, and the end
	switch res {
	case Daily:
		for _, d := range m.Days() {
			bounds = append(bounds, m.FirstSlot(d))
		}
	default:
		step := 1
		if res == Hourly {
			step = 4 // German offsets are whole hours: 4 quarter hours are one local hour
		}
		for i := 0; i < m.Slots(); i += step {
			bounds = append(bounds, i)
		}
	}
	bounds = append(bounds, m.Slots())
	loc := Berlin()
	points := make([]Point, 0, len(bounds)-1)
	for b := 0; b+1 < len(bounds); b++ {
		from, to := bounds[b], bounds[b+1]
		p := Point{Start: m.SlotStart(from).In(loc), End: m.SlotStart(to).In(loc)}
		for i := from; i < to; i++ {
			p.EnergyWh += wh[i]
			p.SubstituteValues += substitutes[i]
			p.MaLos = max(p.MaLos, malos[i])
		}
		points = append(points, p)
	}
	return points
}

// FormatWh formats an energy in Wh as kWh with three decimals, for people
// ("12345678" -> "12345.678 kWh"), without floating point.
func FormatWh(wh int64) string {
	sign := ""
	if wh < 0 {
		sign, wh = "-", -wh
	}
	return fmt.Sprintf("%s%d.%03d kWh", sign, wh/1000, wh%1000)
}
