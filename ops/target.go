package ops

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ReplayTarget is where a replay moves the consumer group's offsets: to
// the start of the topic (the zero value; the read model is dropped and
// rebuilt), to the first offsets at or after a time, or to given offsets
// (both keep the read model and re-deliver).
type ReplayTarget struct {
	at      time.Time
	offsets map[int32]int64
	kind    targetKind
}

type targetKind uint8

const (
	targetStart targetKind = iota
	targetTime
	targetOffsets
)

// FromStart is a replay to the start of the topic: the read model is
// dropped and rebuilt from every event.
func FromStart() ReplayTarget { return ReplayTarget{} }

// FromTime is a replay to the first offset of each partition at or after
// t. It keeps the read model and its cursors: what each stream applied is
// skipped.
func FromTime(t time.Time) ReplayTarget { return ReplayTarget{kind: targetTime, at: t.UTC()} }

// FromOffsets is a replay to the given offset of each partition named
// (partitions not named keep their offsets). It keeps the read model and
// its cursors.
func FromOffsets(offsets map[int32]int64) ReplayTarget {
	return ReplayTarget{kind: targetOffsets, offsets: maps.Clone(offsets)}
}

// IsStart reports whether t is the start of the topic.
func (t ReplayTarget) IsStart() bool { return t.kind == targetStart }

// KeepsModel reports whether a replay to t keeps the read model (a time or
// offsets: a model rebuilt from the middle of the topic would lack every
// stream that started earlier).
func (t ReplayTarget) KeepsModel() bool { return t.kind != targetStart }

// Time returns the time of a target made by [FromTime].
func (t ReplayTarget) Time() (time.Time, bool) { return t.at, t.kind == targetTime }

// Offsets returns (a copy of) the offsets of a target made by
// [FromOffsets].
func (t ReplayTarget) Offsets() (map[int32]int64, bool) {
	return maps.Clone(t.offsets), t.kind == targetOffsets
}

// String returns the form stored in controlplane.Replay.To, which
// [ParseReplayTarget] reads: "start", "time:<RFC 3339 with nanoseconds,
// UTC>" or "offsets:<partition>=<offset>,..." by partition.
func (t ReplayTarget) String() string {
	switch t.kind {
	case targetTime:
		return "time:" + t.at.UTC().Format(time.RFC3339Nano)
	case targetOffsets:
		parts := make([]string, 0, len(t.offsets))
		for _, p := range slices.Sorted(maps.Keys(t.offsets)) {
			parts = append(parts, fmt.Sprintf("%d=%d", p, t.offsets[p]))
		}
		return "offsets:" + strings.Join(parts, ",")
	}
	return "start"
}

// validate refuses offsets that cannot be a target.
func (t ReplayTarget) validate() error {
	if t.kind != targetOffsets {
		return nil
	}
	if len(t.offsets) == 0 {
		return invalid("a replay to offsets needs at least one partition's offset")
	}
	for p, o := range t.offsets {
		if p < 0 || o < 0 {
			return invalid("replay target: partition %d offset %d: both must be 0 or more", p, o)
		}
	}
	return nil
}

// ParseReplayTarget reads a replay target in the form [ReplayTarget.String]
// writes (the one stored in controlplane.Replay.To by every version of
// projectorctl): "start", "time:" followed by an RFC 3339 time (with or
// without fractions of a second), or "offsets:" followed by
// "partition=offset" pairs separated by commas. Errors match
// [ErrInvalid].
func ParseReplayTarget(s string) (ReplayTarget, error) {
	switch {
	case s == "start":
		return FromStart(), nil
	case strings.HasPrefix(s, "time:"):
		t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(s, "time:"))
		if err != nil {
			return ReplayTarget{}, invalid("replay target %q: %v", s, err)
		}
		return FromTime(t), nil
	case strings.HasPrefix(s, "offsets:"):
		offsets := map[int32]int64{}
		for pair := range strings.SplitSeq(strings.TrimPrefix(s, "offsets:"), ",") {
			ps, offs, ok := strings.Cut(pair, "=")
			p, err1 := strconv.ParseInt(strings.TrimSpace(ps), 10, 32)
			off, err2 := strconv.ParseInt(strings.TrimSpace(offs), 10, 64)
			if !ok || err1 != nil || err2 != nil {
				return ReplayTarget{}, invalid("replay target %q: %q is not \"partition=offset\"", s, pair)
			}
			if _, dup := offsets[int32(p)]; dup {
				return ReplayTarget{}, invalid("replay target %q: partition %d given twice", s, p)
			}
			offsets[int32(p)] = off
		}
		t := FromOffsets(offsets)
		if err := t.validate(); err != nil {
			return ReplayTarget{}, err
		}
		return t, nil
	}
	return ReplayTarget{}, invalid("unknown replay target %q (want start, time:<RFC 3339> or offsets:<partition>=<offset>,...)", s)
}
