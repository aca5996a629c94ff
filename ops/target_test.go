package ops_test

import (
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/projector-dev/projector/ops"
)

// TestReplayTargetRoundTrip: every target writes the form stored in
// controlplane.Replay.To by every version of projectorctl, and
// ParseReplayTarget reads it back.
func TestReplayTargetRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.FixedZone("CET", 3600))
	for _, c := range []struct {
		target ops.ReplayTarget
		want   string
		keep   bool
	}{
		{ops.FromStart(), "start", false},
		{ops.ReplayTarget{}, "start", false},
		{ops.FromTime(at), "time:2026-02-28T23:00:00Z", true},
		{ops.FromTime(at.Add(1500 * time.Millisecond)), "time:2026-02-28T23:00:01.5Z", true},
		{ops.FromOffsets(map[int32]int64{3: 30, 0: 7, 12: 0}), "offsets:0=7,3=30,12=0", true},
	} {
		if got := c.target.String(); got != c.want {
			t.Errorf("String = %q, want %q", got, c.want)
		}
		if c.target.KeepsModel() != c.keep || c.target.IsStart() == c.keep {
			t.Errorf("%s: KeepsModel %v IsStart %v", c.want, c.target.KeepsModel(), c.target.IsStart())
		}
		back, err := ops.ParseReplayTarget(c.want)
		if err != nil {
			t.Fatalf("ParseReplayTarget(%q): %v", c.want, err)
		}
		if back.String() != c.want {
			t.Errorf("ParseReplayTarget(%q).String() = %q", c.want, back.String())
		}
	}
	got, _ := ops.ParseReplayTarget("time:2026-02-28T23:00:00Z")
	if tm, ok := got.Time(); !ok || !tm.Equal(at) {
		t.Errorf("Time() = %v, %v", tm, ok)
	}
	got, _ = ops.ParseReplayTarget("offsets:0=7,3=30")
	if offs, ok := got.Offsets(); !ok || !maps.Equal(offs, map[int32]int64{0: 7, 3: 30}) {
		t.Errorf("Offsets() = %v, %v", offs, ok)
	}
	// A time without fractions in another zone (as --to-time takes it).
	got, err := ops.ParseReplayTarget("time:2026-03-01T00:00:00+01:00")
	if err != nil || got.String() != "time:2026-02-28T23:00:00Z" {
		t.Errorf("a time with an offset: %v, %v", got, err)
	}
}

// TestFromOffsetsCopies: the target does not share the caller's map.
func TestFromOffsetsCopies(t *testing.T) {
	m := map[int32]int64{0: 1}
	target := ops.FromOffsets(m)
	m[0] = 99
	if target.String() != "offsets:0=1" {
		t.Errorf("String = %q after changing the caller's map", target.String())
	}
}

func TestParseReplayTargetRefuses(t *testing.T) {
	for _, s := range []string{
		"", "begin", "Start", "time:", "time:yesterday", "time:2026-03-01",
		"offsets:", "offsets:1", "offsets:a=1", "offsets:1=b", "offsets:1=-1", "offsets:-1=0",
		"offsets:1=2,1=3", "offsets:1=2,", "offsets:99999999999=1",
	} {
		got, err := ops.ParseReplayTarget(s)
		if err == nil {
			t.Errorf("ParseReplayTarget(%q) = %v, want an error", s, got)
			continue
		}
		if !errors.Is(err, ops.ErrInvalid) {
			t.Errorf("ParseReplayTarget(%q): %v does not match ErrInvalid", s, err)
		}
	}
}
