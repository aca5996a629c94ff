package redischeckpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/projector-dev/projector/controlplane"
)

// AcquireFence hands out a new fencing token for (projection, partition),
// newer than every token handed out before for that pair, in the current
// epoch. From then on writes carrying an older token for the partition fail
// with [ErrFenced]. Carry the fence in the context of every write:
//
//	fence, err := store.AcquireFence(ctx, "billing", partition)
//	ctx = controlplane.WithFence(ctx, fence)
//
// The Store also starts tracking the partition's write serial for the new
// fence: a later write with it through this Store that finds fewer writes
// than it made fails with [ErrStateLost] (see [StateLostError]). Writes
// carrying one fence must not run concurrently. With Config.WaitReplicas
// set, the new token must reach that many replicas, else AcquireFence
// returns a [*NotReplicatedError].
func (s *Store) AcquireFence(ctx context.Context, projection string, partition int32) (controlplane.Fence, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return controlplane.Fence{}, err
	}
	raw, waitErr, err := s.evalAndWait(ctx, k, acquireScript, []any{"", "", "", "", strconv.FormatInt(int64(partition), 10), strconv.Itoa(LayoutVersion)}, partitionWrite("the fence", partition))
	res, err := stringSlice(raw, err)
	if err == nil && waitErr != nil {
		// The token is raised on the master, held by nobody: the old
		// holder is fenced either way, and a retry takes a newer one.
		return controlplane.Fence{}, waitErr
	}
	if hasReplyPrefix(err, "CLOSED ") {
		return controlplane.Fence{}, &VersionClosedError{Projection: projection, Partition: partition}
	}
	if hasReplyPrefix(err, "LAYOUT ") {
		found, _ := strconv.Atoi(strings.TrimPrefix(err.Error(), "LAYOUT "))
		return controlplane.Fence{}, &LayoutError{Projection: projection, Found: found}
	}
	if err != nil {
		return controlplane.Fence{}, fmt.Errorf("redischeckpoint: acquire fence %s partition %d: %w", projection, partition, err)
	}
	if len(res) != 3 {
		return controlplane.Fence{}, fmt.Errorf("redischeckpoint: acquire fence %s partition %d: unexpected reply %q", projection, partition, res)
	}
	epoch, err1 := strconv.ParseUint(res[0], 10, 64)
	token, err2 := strconv.ParseUint(res[1], 10, 64)
	serial, err3 := strconv.ParseUint(res[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return controlplane.Fence{}, fmt.Errorf("redischeckpoint: acquire fence %s partition %d: unexpected reply %q", projection, partition, res)
	}
	f := controlplane.Fence{Projection: projection, Partition: partition, Epoch: epoch, Token: token}
	s.startSession(f, serial)
	return f, nil
}

// CheckState checks, without writing, that the fence ctx carries is still
// current and that Redis still holds every write made with it through this
// Store: nil, a [*FencedError] or a [*StateLostError]. A partition worker
// that has nothing to write calls it now and then, so that a loss is
// noticed while the partition is idle.
func (s *Store) CheckState(ctx context.Context, projection string) error {
	k, err := s.keysFor(projection)
	if err != nil {
		return err
	}
	if _, ok := controlplane.FenceFrom(ctx); !ok {
		return fmt.Errorf("redischeckpoint: CheckState of %s needs a context with a fence", projection)
	}
	_, err = s.run(ctx, k, verifyScript, nil, nil)
	return err
}

// CheckFence reports whether f is still current: nil, or a [*FencedError].
func (s *Store) CheckFence(ctx context.Context, f controlplane.Fence) error {
	k, err := s.keysFor(f.Projection)
	if err != nil {
		return err
	}
	pipe := s.client.Pipeline()
	epochCmd := pipe.HGet(ctx, k.meta, "epoch")
	tokenCmd := pipe.HGet(ctx, k.fences, strconv.FormatInt(int64(f.Partition), 10))
	_, _ = pipe.Exec(ctx)
	epoch, err := uintOrZero(epochCmd.Result())
	if err != nil {
		return fmt.Errorf("redischeckpoint: %s epoch: %w", k.meta, err)
	}
	token, err := uintOrZero(tokenCmd.Result())
	if err != nil {
		return fmt.Errorf("redischeckpoint: %s partition %d: %w", k.fences, f.Partition, err)
	}
	if epoch != f.Epoch || token != f.Token {
		return &FencedError{Projection: f.Projection, Partition: f.Partition, Held: f, CurrentEpoch: epoch, CurrentToken: token}
	}
	return nil
}

// Epoch returns the projection's current epoch (0 before the first replay).
func (s *Store) Epoch(ctx context.Context, projection string) (uint64, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return 0, err
	}
	epoch, err := uintOrZero(s.client.HGet(ctx, k.meta, "epoch").Result())
	if err != nil {
		return 0, fmt.Errorf("redischeckpoint: %s epoch: %w", k.meta, err)
	}
	return epoch, nil
}

// BumpEpoch starts a new epoch of the projection, for a replay: in one
// script it raises the epoch and drops the cursors, heads, partition
// progress and parked streams (each cleared park goes to the audit of
// resolutions as a "replay": the stream is rebuilt from its first event). From then on, cursors and fences of the older epoch no longer
// count: writes carrying an older fence fail with [ErrFenced]. It returns the
// new epoch. The read model itself is dropped by the projection's
// [framework.Resetter]. See [Store.BumpEpochAt] for a replay that reset the
// consumer group's offsets.
func (s *Store) BumpEpoch(ctx context.Context, projection string) (uint64, error) {
	return s.BumpEpochAt(ctx, projection, nil)
}

// BumpEpochAt is [Store.BumpEpoch] for a replay that reset the consumer
// group's committed offsets to start: the new epoch's state covers each
// partition up to start[partition] (the events before it are, by the
// replay's choice, not part of the rebuilt model), so a runner that finds
// those offsets committed does not take them for lost state. A replay to
// the start calls [Store.BeginReplay] instead, which pauses and requests
// the reset in the same script, before the replicas leave.
func (s *Store) BumpEpochAt(ctx context.Context, projection string, start map[int32]int64) (uint64, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return 0, err
	}
	// The parks of the old epoch: the rebuild starts every stream from
	// its first event, so they are cleared and recorded.
	parked, err := s.Parked(ctx, projection)
	if err != nil {
		return 0, err
	}
	now := time.Now().UTC()
	args := []any{"", "", "", "", strconv.Itoa(resolutionsKept), strconv.Itoa(len(parked))}
	for _, p := range parked {
		raw, err := replayResolution(p, now)
		if err != nil {
			return 0, err
		}
		args = append(args, raw)
	}
	for p, off := range start {
		args = append(args, strconv.FormatInt(int64(p), 10), strconv.FormatInt(off, 10))
	}
	res, waitErr, err := s.evalAndWait(ctx, k, bumpScript, args, "the epoch")
	if err != nil {
		return 0, fmt.Errorf("redischeckpoint: bump epoch of %s: %w", projection, err)
	}
	if waitErr != nil {
		return 0, waitErr
	}
	return strconv.ParseUint(fmt.Sprint(res), 10, 64)
}

// replayResolution is the audit entry of a park a replay clears.
func replayResolution(p controlplane.ParkedStream, now time.Time) (string, error) {
	p.Resolving = nil
	raw, err := json.Marshal(controlplane.Resolution{StreamID: p.StreamID, Action: controlplane.ResolveReplay, By: "replay",
		Reason: "the replay dropped the read model: the stream is rebuilt from its first event", At: now, Done: now, Parked: p})
	if err != nil {
		return "", fmt.Errorf("redischeckpoint: encode the cleared park of %s: %w", p.StreamID, err)
	}
	return string(raw), nil
}

// BeginReplay is the first step of a replay to the start, in one script: it
// pauses the replicas (a pause already there is kept as it was; by and
// reason describe the new one), raises the epoch as [Store.BumpEpochAt] does
// (the old epoch's cursors, heads, progress and parks are dropped, each
// park recorded as resolved by the replay; the new epoch's progress is
// start, where the replay will reset each partition's offset) and requests
// the reset of the read model for the new epoch ([Store.RequestReset]).
//
// From then on every fenced write is refused, before any replica has left
// the group: a fence of the old epoch with [ErrFenced], one taken in the
// new epoch with [ErrResetPending] until a replica reset the read model
// ([Store.CompleteReset]). So a replica that joins late, or flushes on its
// way out, writes and commits nothing the reset would wipe.
//
// from is the epoch the replay started from: the epoch is raised only
// while it is still from, so a resumed replay that calls BeginReplay again
// raises it once (the second call only makes sure the replicas are
// paused).
func (s *Store) BeginReplay(ctx context.Context, projection string, from uint64, by, reason string, start map[int32]int64) (controlplane.ReplayBegun, error) {
	k, err := s.keysFor(projection)
	if err != nil {
		return controlplane.ReplayBegun{}, err
	}
	// The parks to clear are read first and passed with their records:
	// the script raises the epoch only while they are exactly those (a
	// running replica may park a stream meanwhile: then read again), so
	// that every cleared park is in the audit.
	for range 20 {
		raws, err := s.client.HGetAll(ctx, k.parked).Result()
		if err != nil {
			return controlplane.ReplayBegun{}, fmt.Errorf("redischeckpoint: parked streams of %s: %w", projection, err)
		}
		parked := make([]controlplane.ParkedStream, 0, len(raws))
		for id, raw := range raws {
			var p controlplane.ParkedStream
			if err := json.Unmarshal([]byte(raw), &p); err != nil {
				return controlplane.ReplayBegun{}, fmt.Errorf("redischeckpoint: key %s field %q: %w", k.parked, id, err)
			}
			p.StreamID = id
			parked = append(parked, p)
		}
		slices.SortFunc(parked, func(a, b controlplane.ParkedStream) int { return strings.Compare(a.StreamID, b.StreamID) })
		now := time.Now().UTC()
		args := []any{"", "", "", "", strconv.FormatUint(from, 10), by, reason, now.Format(time.RFC3339Nano),
			strconv.Itoa(resolutionsKept), strconv.Itoa(len(parked))}
		for _, p := range parked {
			args = append(args, p.StreamID, raws[p.StreamID])
		}
		for _, p := range parked {
			raw, err := replayResolution(p, now)
			if err != nil {
				return controlplane.ReplayBegun{}, err
			}
			args = append(args, raw)
		}
		for p, off := range start {
			args = append(args, strconv.FormatInt(int64(p), 10), strconv.FormatInt(off, 10))
		}
		reply, waitErr, err := s.evalAndWait(ctx, k, beginReplayScript, args, "the replay's new epoch")
		if err != nil {
			return controlplane.ReplayBegun{}, fmt.Errorf("redischeckpoint: begin the replay of %s: %w", projection, err)
		}
		if waitErr != nil {
			// Raised on the master only: a failover could undo it. The
			// replay fails here and is begun again (an EARLIER epoch).
			return controlplane.ReplayBegun{}, waitErr
		}
		var res []string
		if list, ok := reply.([]any); ok {
			for _, x := range list {
				res = append(res, fmt.Sprint(x))
			}
		}
		if len(res) != 2 {
			return controlplane.ReplayBegun{}, fmt.Errorf("redischeckpoint: begin the replay of %s: unexpected reply %q", projection, res)
		}
		epoch, err := strconv.ParseUint(res[1], 10, 64)
		if err != nil {
			return controlplane.ReplayBegun{}, fmt.Errorf("redischeckpoint: begin the replay of %s: unexpected reply %q", projection, res)
		}
		switch res[0] {
		case "RAISED":
			return controlplane.ReplayBegun{Epoch: epoch, Raised: true, Cleared: parked}, nil
		case "EARLIER":
			return controlplane.ReplayBegun{Epoch: epoch}, nil
		case "CHANGED":
			continue
		}
		return controlplane.ReplayBegun{}, fmt.Errorf("redischeckpoint: begin the replay of %s: unexpected reply %q", projection, res)
	}
	return controlplane.ReplayBegun{}, fmt.Errorf("redischeckpoint: begin the replay of %s: its parked streams kept changing; try again", projection)
}

// uintOrZero parses a Redis reply, treating a missing key or field as 0.
func uintOrZero(v string, err error) (uint64, error) {
	if isNil(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, perr := strconv.ParseUint(v, 10, 64)
	if perr != nil {
		return 0, fmt.Errorf("%q is not a non-negative integer", v)
	}
	return n, nil
}
