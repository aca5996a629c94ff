package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/term"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

type replayOptions struct {
	toTime    string
	toOffsets string
	dryRun    bool
	// allowTruncated lets a replay to the start run on a topic that no
	// longer starts at offset 0.
	allowTruncated bool
	yes            bool
	wait           bool
	resume         bool
	abort          bool
	reason         string
	emptyTimeout   time.Duration
	waitTimeout    time.Duration
}

func newReplayCommand(o *options) *cobra.Command {
	ro := &replayOptions{}
	cmd := &cobra.Command{
		Use:   "replay PROJECTION",
		Short: "Rebuild the read model: pause the replicas and raise the epoch, reset the group's offsets, resume; one replica resets the model",
		Long: `Replay rebuilds a projection's read model from its events while its replicas keep running.

To the start (the default), in this order: one Redis script pauses the replicas, raises the projection's
epoch (cursors, fences and parks of the old epoch stop counting) and requests the reset of the read model,
so that from then on every write is refused until the reset is done; the replicas leave the consumer
group (what they applied but had not committed is read again); once the group is empty (within
--empty-timeout, else the command stops and the replicas stay paused: --resume or --abort), its offsets
are reset to the start offsets listed before the first step; the replicas resume, exactly one drops the
read model (each of its deletes checks its claim on the reset), and they rebuild.

To the first offsets at or after --to-time, or to the offsets in --to-offsets (lines
"partition=offset"), the replicas pause and leave, the offsets move back, and the epoch, the read model
and its cursors are kept: the replicas re-read from there and skip what each stream applied.

--wait follows the rebuild until the lag is zero.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ro.toTime != "" && ro.toOffsets != "" {
				return usage("give --to-time or --to-offsets, not both")
			}
			if ro.resume && ro.abort {
				return usage("give --resume or --abort, not both")
			}
			c, err := o.connect(cmd.Context(), args[0], true)
			if err != nil {
				return err
			}
			defer c.close()
			return c.replay(cmd.Context(), ro)
		},
	}
	f := cmd.Flags()
	f.StringVar(&ro.toTime, "to-time", "", "replay from the first events at or after this time (RFC 3339)")
	f.StringVar(&ro.toOffsets, "to-offsets", "", "replay from the offsets in this file: one \"partition=offset\" per line")
	f.BoolVar(&ro.dryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&ro.allowTruncated, "allow-truncated", false, "replay to the start of a topic whose earlier events were deleted (the model loses the streams whose events are gone)")
	f.BoolVarP(&ro.yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVar(&ro.wait, "wait", false, "follow the rebuild with a progress bar until the lag is zero")
	f.BoolVar(&ro.resume, "resume", false, "continue an interrupted replay from its recorded phase")
	f.BoolVar(&ro.abort, "abort", false, "give up an interrupted replay and resume the replicas")
	f.StringVar(&ro.reason, "reason", "", "why, recorded with the replay")
	f.DurationVar(&ro.emptyTimeout, "empty-timeout", 2*time.Minute, "how long to wait for the replicas to leave the group")
	f.DurationVar(&ro.waitTimeout, "wait-timeout", time.Hour, "how long --wait follows the rebuild")
	return cmd
}

func newReplayID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func (c *conn) replay(ctx context.Context, ro *replayOptions) (err error) {
	o := c.o
	ctx, span := tracer(ctx).Start(ctx, "projectorctl replay "+c.name, trace.WithAttributes(
		attribute.String("projector.projection", c.name),
		attribute.String("messaging.consumer.group.name", c.group),
		attribute.String("messaging.destination.name", o.topic),
		attribute.Bool("projector.replay.dry_run", ro.dryRun),
		attribute.Bool("projector.replay.resume", ro.resume),
		attribute.Bool("projector.replay.abort", ro.abort),
	))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	if err := c.writable(); err != nil {
		return err
	}
	ctl, err := c.store.Control(ctx, c.name)
	if err != nil {
		return err
	}
	current := ctl.Replay
	inProgress := current != nil && (current.Phase == controlplane.ReplayPausing || current.Phase == controlplane.ReplayResetting)
	switch {
	case ro.abort:
		return c.abortReplay(ctx, current)
	case ro.resume:
		if !inProgress {
			return refused("no interrupted replay of %s to resume", c.name)
		}
		fmt.Fprintf(o.stdout, "resuming replay %s from phase %q\n", safeText(current.ID), current.Phase)
		return c.runReplay(ctx, current, ro)
	case inProgress:
		return refused("replay %s of %s is in progress since %s (phase %s, by %s): continue it with --resume or give it up with --abort",
			current.ID, c.name, current.StartedAt.Format(time.RFC3339), current.Phase, current.By)
	}

	// A rebuild beside the live version switches the live pointer when it
	// has caught up: a replay in place of either version meanwhile would
	// race it.
	base, _ := framework.SplitVersionedName(c.name)
	if vs, err := c.store.Versions(ctx, base); err != nil {
		return err
	} else if b := vs.Building; b != nil && !ro.dryRun {
		return refused("a rebuild of %s to v%d is in progress since %s (by %s): wait for it (rebuild %s --status) or abort it (rebuild %s --abort) before a replay",
			base, b.Version, b.StartedAt.Format(time.RFC3339), b.By, base, base)
	}

	to, err := ro.target()
	if err != nil {
		return err
	}
	epoch, err := c.store.Epoch(ctx, c.name)
	if err != nil {
		return err
	}
	st, err := c.status(ctx)
	if err != nil {
		return err
	}
	keep := to != "start"
	if !keep && !ro.allowTruncated {
		starts, err := c.admin.ListStartOffsets(ctx, o.topic)
		if err == nil {
			err = starts.Error()
		}
		if err != nil {
			return fmt.Errorf("start offsets of %s: %w", o.topic, err)
		}
		if t := truncatedPartitions(starts); t != "" {
			return refused("the topic %s no longer starts at offset 0 (%s): its earlier events were deleted (retention or DeleteRecords), and a replay to the start would drop the read model and rebuild it without the streams whose events are gone. "+
				"Use projectorctl rebuild (it keeps the live version and does not switch while streams are missing), or pass --allow-truncated to accept the loss", o.topic, t)
		}
	}
	fmt.Fprintf(o.stdout, "Replay plan for projection %s (group %s, topic %s):\n", safeText(c.name), safeText(c.group), safeText(o.topic))
	if keep {
		fmt.Fprintf(o.stdout, "  1. ask the %d member(s) to finish their batch, commit and leave the group (wait up to %s)\n", len(st.Members), ro.emptyTimeout)
		fmt.Fprintf(o.stdout, "  2. reset the group's offsets to %s\n", safeText(to))
		// A model rebuilt from the middle of the topic would lack every
		// stream that started earlier: a replay to a time or offsets
		// keeps the model and only re-delivers.
		fmt.Fprintf(o.stdout, "  3. keep epoch %d, the read model and its cursors: the replay keeps the read model (a model rebuilt from a time would lack the streams that started earlier)\n", epoch)
		fmt.Fprintf(o.stdout, "  4. the replicas rejoin and re-read from there; what each stream applied is skipped by its cursor (current lag %d records)\n", st.TotalLag)
		fmt.Fprintln(o.stdout, "  (refused once the group is empty if it would move an offset forward, past events never processed)")
	} else {
		fmt.Fprintf(o.stdout, "  1. in one step: pause the %d member(s), raise the epoch from %d to %d and request the reset of the read model: cursors, fences and parks of epoch %d stop counting, and every write is refused from then on until the reset is done\n",
			len(st.Members), epoch, epoch+1, epoch)
		fmt.Fprintf(o.stdout, "  2. wait until the members left the group (up to %s), then reset the group's offsets to %s\n", ro.emptyTimeout, safeText(to))
		fmt.Fprintln(o.stdout, "  3. resume: one replica drops the read model (each of its deletes checks its claim on the reset)")
		fmt.Fprintf(o.stdout, "  4. the replicas rejoin and rebuild (current lag %d records)\n", st.TotalLag)
		resettable := false
		for _, r := range st.Replicas {
			resettable = resettable || r.Resettable
		}
		if len(st.Replicas) == 0 {
			fmt.Fprintln(o.stdout, "  note: no replica is reporting now; the read model is dropped by the first one to start")
		} else if !resettable {
			return refused("no running replica of %s can reset its read model (the projection does not implement framework.Resetter)", c.name)
		}
	}
	if ro.dryRun {
		fmt.Fprintln(o.stdout, "  offsets (dry run):")
		if err := c.printOffsetPlan(ctx, to); err != nil {
			return err
		}
		fmt.Fprintln(o.stdout, "dry run: nothing changed")
		return nil
	}
	if !ro.yes {
		question := fmt.Sprintf("Drop and rebuild the read model of %s?", safeText(c.name))
		if keep {
			question = fmt.Sprintf("Move the offsets of %s back to %s?", safeText(c.name), safeText(to))
		}
		if err := confirm(o, question); err != nil {
			return err
		}
	}
	// Again after the confirmation: a rebuild may have started meanwhile
	// (one starting from now on sees this replay's record and refuses).
	if vs, err := c.store.Versions(ctx, base); err != nil {
		return err
	} else if b := vs.Building; b != nil {
		return refused("a rebuild of %s to v%d started meanwhile (by %s): the replay is not started", base, b.Version, b.By)
	}
	rec := &controlplane.Replay{ID: newReplayID(), By: o.by, Reason: ro.reason, To: to, Phase: controlplane.ReplayPausing,
		WasPaused: ctl.Paused, Epoch: epoch, KeepModel: keep, StartedAt: time.Now().UTC()}
	if err := c.store.SetReplay(ctx, c.name, rec); err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "replay %s started\n", safeText(rec.ID))
	return c.runReplay(ctx, rec, ro)
}

// target describes where offsets go.
func (ro *replayOptions) target() (string, error) {
	switch {
	case ro.toTime != "":
		t, err := time.Parse(time.RFC3339, ro.toTime)
		if err != nil {
			return "", usage("--to-time %q: %v", ro.toTime, err)
		}
		return "time:" + t.UTC().Format(time.RFC3339Nano), nil
	case ro.toOffsets != "":
		offsets, err := readOffsetsFile(ro.toOffsets)
		if err != nil {
			return "", err
		}
		var parts []string
		for _, p := range slices.Sorted(mapsKeys(offsets)) {
			parts = append(parts, fmt.Sprintf("%d=%d", p, offsets[p]))
		}
		return "offsets:" + strings.Join(parts, ","), nil
	}
	return "start", nil
}

func mapsKeys(m map[int32]int64) func(func(int32) bool) {
	return func(yield func(int32) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func readOffsetsFile(path string) (map[int32]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usage("--to-offsets: %v", err)
	}
	defer f.Close()
	out := map[int32]int64{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		ps, offs, ok := strings.Cut(text, "=")
		p, err1 := strconv.ParseInt(strings.TrimSpace(ps), 10, 32)
		off, err2 := strconv.ParseInt(strings.TrimSpace(offs), 10, 64)
		if !ok || err1 != nil || err2 != nil || p < 0 || off < 0 {
			return nil, usage("--to-offsets %s line %d: %q is not \"partition=offset\"", path, line, text)
		}
		out[int32(p)] = off
	}
	if len(out) == 0 {
		return nil, usage("--to-offsets %s holds no offsets", path)
	}
	return out, sc.Err()
}

func confirm(o *options, question string) error {
	fmt.Fprintf(o.stdout, "%s Type yes to continue: ", question)
	line, err := bufio.NewReader(o.stdin).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(o.stdout)
		return refused("no confirmation (no input); pass --yes to run without asking")
	}
	if strings.TrimSpace(line) != "yes" {
		return refused("not confirmed")
	}
	return nil
}

// runReplay carries a replay on from its recorded phase; each phase is an
// event on the replay's span.
func (c *conn) runReplay(ctx context.Context, rec *controlplane.Replay, ro *replayOptions) error {
	o := c.o
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.String("projector.replay.id", rec.ID), attribute.String("projector.replay.to", rec.To))
	defer func() { span.AddEvent("replay " + rec.Phase) }()
	if rec.Phase == controlplane.ReplayPausing {
		if rec.KeepModel {
			if err := c.store.SetPaused(ctx, c.name, true, o.by, "replay "+rec.ID); err != nil {
				return err
			}
		} else if err := c.beginReplay(ctx, rec); err != nil {
			return err
		}
		fmt.Fprintf(o.stdout, "waiting for the group %s to empty...\n", safeText(c.group))
		if err := c.waitEmpty(ctx, ro.emptyTimeout); err != nil {
			if !rec.KeepModel {
				// The epoch was raised: the old model's cursors are gone,
				// and only the rest of the replay makes it whole again.
				// The replicas stay paused (writing nothing: every write
				// is refused until the reset).
				rec.Error = err.Error()
				_ = c.store.SetReplay(context.WithoutCancel(ctx), c.name, rec)
				return fmt.Errorf("%w; the replay raised the epoch already, so it cannot be given back: the replicas stay paused and nothing is written until it completes: stop the members that do not leave (replicas of an older version ignore the pause) and run replay --resume, or give it up with replay --abort", err)
			}
			rec.Phase, rec.Error = controlplane.ReplayFailed, err.Error()
			if !rec.WasPaused {
				_ = c.store.SetPaused(context.WithoutCancel(ctx), c.name, false, o.by, "")
			}
			_ = c.store.SetReplay(context.WithoutCancel(ctx), c.name, rec)
			return err
		}
		span.AddEvent("group empty")
		rec.Phase, rec.Error = controlplane.ReplayResetting, ""
		if err := c.store.SetReplay(ctx, c.name, rec); err != nil {
			return err
		}
	}
	if rec.Phase == controlplane.ReplayResetting {
		if rec.KeepModel {
			// The group is empty: its committed offsets are final.
			if err := c.refuseForward(ctx, rec.To); err != nil {
				rec.Phase, rec.Error = controlplane.ReplayFailed, err.Error()
				if !rec.WasPaused {
					_ = c.store.SetPaused(context.WithoutCancel(ctx), c.name, false, o.by, "")
				}
				_ = c.store.SetReplay(context.WithoutCancel(ctx), c.name, rec)
				return err
			}
			if _, err := c.resetOffsets(ctx, rec.To); err != nil {
				return fmt.Errorf("%w (the replicas stay paused: run replay --resume to retry, or --abort)", err)
			}
			epoch, err := c.store.Epoch(ctx, c.name)
			if err != nil {
				return err
			}
			rec.Phase = controlplane.ReplayRebuild
			if err := c.store.SetReplay(ctx, c.name, rec); err != nil {
				return err
			}
			fmt.Fprintf(o.stdout, "offsets reset to %s; epoch %d, the read model and its cursors kept\n", safeText(rec.To), epoch)
		} else if err := c.resetToStart(ctx, rec); err != nil {
			return err
		}
	}
	if !rec.WasPaused {
		if err := c.store.SetPaused(ctx, c.name, false, o.by, ""); err != nil {
			return err
		}
		fmt.Fprintln(o.stdout, "replicas resumed: one drops the read model, all rebuild")
	} else {
		fmt.Fprintln(o.stdout, "the projection was paused before the replay and stays paused: resume it to rebuild")
	}
	if ro.wait && !rec.WasPaused {
		if err := c.follow(ctx, rec, ro.waitTimeout); err != nil {
			return err
		}
	}
	rec.Phase = controlplane.ReplayDone
	return c.store.SetReplay(context.WithoutCancel(ctx), c.name, rec)
}

func (c *conn) abortReplay(ctx context.Context, rec *controlplane.Replay) error {
	if rec == nil || (rec.Phase != controlplane.ReplayPausing && rec.Phase != controlplane.ReplayResetting && rec.Phase != controlplane.ReplayRebuild) {
		return refused("no replay of %s to abort", c.name)
	}
	// A replay to the start that raised the epoch cannot be undone (its
	// first step dropped the old epoch's cursors); the abort says so.
	epoch, err := c.store.Epoch(ctx, c.name)
	if err != nil {
		return err
	}
	raised := epoch > rec.Epoch
	was := rec.Phase
	rec.Phase, rec.Error = controlplane.ReplayAborted, "aborted by "+c.o.by+" in phase "+was
	if err := c.store.SetReplay(ctx, c.name, rec); err != nil {
		return err
	}
	if !rec.WasPaused {
		if err := c.store.SetPaused(ctx, c.name, false, c.o.by, ""); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.o.stdout, "replay %s aborted in phase %s; replicas resumed\n", safeText(rec.ID), safeText(was))
	switch {
	case was == controlplane.ReplayRebuild:
	case raised && !rec.KeepModel:
		// The old epoch's cursors are gone: the replicas drop the read
		// model (the reset is requested) and rebuild from the committed
		// offsets, which are not reset everywhere: a partition whose
		// committed offset is above its start stops as state-lost.
		fmt.Fprintf(c.o.stdout, "warning: the epoch was raised to %d before the abort: the replicas drop the read model, and partitions whose offsets were not reset to their start stop as state-lost (see status): run a new replay to rebuild a consistent read model\n", epoch)
	case was == controlplane.ReplayResetting:
		fmt.Fprintln(c.o.stdout, "warning: offsets may have been reset in part: run a new replay to rebuild a consistent read model")
	}
	return nil
}

// waitEmpty waits until the group has no members, or times out naming the
// members still present.
func (c *conn) waitEmpty(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		described, err := c.admin.DescribeGroups(ctx, c.group)
		if err != nil {
			return fmt.Errorf("describe group %s: %w", c.group, err)
		}
		g := described[c.group]
		if len(g.Members) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var names []string
			for _, m := range g.Members {
				names = append(names, fmt.Sprintf("%s (%s, %s)", m.ClientID, m.ClientHost, m.MemberID))
			}
			return refused("group %s did not empty within %s; members still present: %s", c.group, timeout, strings.Join(names, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// resetOffsets commits the target offsets for the (empty) group and returns
// them by partition.
func (c *conn) resetOffsets(ctx context.Context, to string) (map[int32]int64, error) {
	offsets, err := c.targetOffsets(ctx, to)
	if err != nil {
		return nil, err
	}
	if err := c.commitOffsets(ctx, offsets); err != nil {
		return nil, err
	}
	start := map[int32]int64{}
	offsets.Each(func(o kadm.Offset) { start[o.Partition] = o.At })
	return start, nil
}

// commitOffsets commits offsets for the (empty) group.
func (c *conn) commitOffsets(ctx context.Context, offsets kadm.Offsets) error {
	resp, err := c.admin.CommitOffsets(ctx, c.group, offsets)
	if err != nil {
		return fmt.Errorf("reset offsets of %s: %w", c.group, err)
	}
	if err := resp.Error(); err != nil {
		return fmt.Errorf("reset offsets of %s (the group must be empty): %w", c.group, err)
	}
	return nil
}

// printOffsetPlan shows, per partition, the group's committed offset and
// the one the replay would set, as kafka-consumer-groups --dry-run does.
func (c *conn) printOffsetPlan(ctx context.Context, to string) error {
	target, err := c.targetOffsets(ctx, to)
	if err != nil {
		return err
	}
	committed, err := c.committedOffsets(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(c.o.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  TOPIC\tPARTITION\tCURRENT-OFFSET\tNEW-OFFSET")
	for _, o := range target.Sorted() {
		cur := "-"
		if got, ok := committed.Lookup(o.Topic, o.Partition); ok && got.At >= 0 {
			cur = strconv.FormatInt(got.At, 10)
		}
		fmt.Fprintf(w, "  %s\t%d\t%s\t%d\n", safeText(o.Topic), o.Partition, cur, o.At)
	}
	return w.Flush()
}

// targetOffsets computes where the replay puts each partition.
func (c *conn) targetOffsets(ctx context.Context, to string) (kadm.Offsets, error) {
	topic := c.o.topic
	offsets := kadm.Offsets{}
	switch {
	case to == "start":
		listed, err := c.admin.ListStartOffsets(ctx, topic)
		if err != nil {
			return nil, fmt.Errorf("start offsets of %s: %w", topic, err)
		}
		offsets = listed.Offsets()
	case strings.HasPrefix(to, "time:"):
		t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(to, "time:"))
		if err != nil {
			return nil, err
		}
		listed, err := c.admin.ListOffsetsAfterMilli(ctx, t.UnixMilli(), topic)
		if err != nil {
			return nil, fmt.Errorf("offsets of %s at %s: %w", topic, t, err)
		}
		offsets = listed.Offsets()
	case strings.HasPrefix(to, "offsets:"):
		for _, pair := range strings.Split(strings.TrimPrefix(to, "offsets:"), ",") {
			ps, offs, _ := strings.Cut(pair, "=")
			p, _ := strconv.ParseInt(ps, 10, 32)
			off, _ := strconv.ParseInt(offs, 10, 64)
			offsets.Add(kadm.Offset{Topic: topic, Partition: int32(p), At: off, LeaderEpoch: -1})
		}
	default:
		return nil, fmt.Errorf("unknown replay target %q", to)
	}
	return offsets, nil
}

// follow shows the rebuild until the read model was reset, the replicas
// rejoined, and the committed offsets reached the end of the topic as it
// was when the replicas resumed (events that keep arriving are live lag,
// not rebuild).
func (c *conn) follow(ctx context.Context, rec *controlplane.Replay, timeout time.Duration) error {
	o := c.o
	deadline := time.Now().Add(timeout)
	target, err := c.admin.ListEndOffsets(ctx, o.topic)
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", o.topic, err)
	}
	start, err := c.status(ctx)
	if err != nil {
		return err
	}
	var total int64
	from := map[int32]int64{}
	for _, p := range start.Partitions {
		end, _ := target.Lookup(o.topic, p.Partition)
		from[p.Partition] = max(p.Committed, 0)
		total += max(end.Offset-from[p.Partition], 0)
	}
	progress := c.newProgress(total)
	for {
		st, err := c.status(ctx)
		if err != nil {
			return err
		}
		var done, behind int64
		for _, p := range st.Partitions {
			end, _ := target.Lookup(o.topic, p.Partition)
			at := max(p.Committed, from[p.Partition])
			done += min(at, end.Offset) - from[p.Partition]
			behind += max(end.Offset-at, 0)
		}
		progress.set(done)
		reset := rec.KeepModel || st.Control.ResetDone >= rec.Epoch
		if reset && len(st.Members) > 0 && behind == 0 {
			progress.finish()
			// Every park of the old epoch was cleared: a stream parked
			// now stopped in the rebuild, and the model lacks its events.
			if len(st.Parked) > 0 {
				ids := make([]string, 0, len(st.Parked))
				for _, p := range st.Parked {
					ids = append(ids, fmt.Sprintf("%s at sequence %d (%s)", p.StreamID, p.Sequence, p.Reason))
				}
				return fmt.Errorf("the rebuild of %s caught up with the topic, but %d stream(s) parked during it and are incomplete in the read model: %s (see parked list)",
					c.name, len(st.Parked), strings.Join(ids, "; "))
			}
			fmt.Fprintf(o.stdout, "rebuild of %s caught up with the topic as it was at the resume (epoch %d); live lag now %d records\n", safeText(c.name), rec.Epoch, st.TotalLag)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the rebuild of %s did not catch up within %s (%d records behind, read model reset: %v)", c.name, timeout, behind, reset)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// progressLineEvery is how often a rebuild's progress is written as a line
// when stderr is not a terminal. A variable for tests.
var progressLineEvery = 10 * time.Second

// rebuildProgress shows a rebuild's progress: a bar redrawn in place on a
// terminal; elsewhere (a Job's log, a file) one line per interval with
// percent, rate and ETA.
type rebuildProgress struct {
	c                  *conn
	bar                *progressbar.ProgressBar
	total, last        int64
	start, lastPrinted time.Time
}

func (c *conn) newProgress(total int64) *rebuildProgress {
	p := &rebuildProgress{c: c, total: total, start: time.Now(), lastPrinted: time.Now()}
	if f, ok := c.o.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(c.o.stderr), progressbar.OptionSetDescription("rebuilding "+safeText(c.name)),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
			progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond))
	}
	return p
}

func (p *rebuildProgress) set(done int64) {
	p.last = done
	if p.bar != nil {
		_ = p.bar.Set64(done)
		return
	}
	if time.Since(p.lastPrinted) >= progressLineEvery {
		p.line()
	}
}

func (p *rebuildProgress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.c.o.stderr)
		return
	}
	p.line()
}

// line writes "rebuilding billing: 45.0% (28800/64003 events), 2219
// events/s, ETA 16s".
func (p *rebuildProgress) line() {
	p.lastPrinted = time.Now()
	elapsed := time.Since(p.start).Seconds()
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(p.last) / float64(p.total)
	}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.last) / elapsed
	}
	eta := "unknown"
	if rate > 0 {
		eta = (time.Duration(float64(p.total-p.last)/rate) * time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(p.c.o.stderr, "rebuilding %s: %.1f%% (%d/%d events), %.0f events/s, ETA %s\n", safeText(p.c.name), pct, p.last, p.total, rate, eta)
}

// beginReplay is the first step of a replay to the start: the start
// offsets are listed and recorded with the replay, then one script pauses
// the replicas, raises the epoch (clearing cursors, heads, progress and
// parks; the start offsets become the new epoch's progress) and requests
// the reset of the read model. From then on every write is refused until
// the reset is done: a replica flushing on its way out, or joining late
// with what it read before, stores and commits nothing. A resumed replay
// calls it again: the epoch is raised only while it is still the one the
// replay started from (rec.Epoch), and the recorded start offsets are
// reused.
func (c *conn) beginReplay(ctx context.Context, rec *controlplane.Replay) error {
	o := c.o
	if rec.Start == nil {
		start, err := c.startOffsets(ctx)
		if err != nil {
			return err
		}
		rec.Start = start
		if err := c.store.SetReplay(ctx, c.name, rec); err != nil {
			return err
		}
	}
	begun, err := c.store.BeginReplay(ctx, c.name, rec.Epoch, o.by, "replay "+rec.ID, rec.Start)
	if err != nil {
		return err
	}
	if !begun.Raised {
		fmt.Fprintf(o.stdout, "replicas paused; epoch %d was raised before the interruption: not raised again\n", begun.Epoch)
		return nil
	}
	trace.SpanFromContext(ctx).AddEvent("epoch raised", trace.WithAttributes(attribute.Int64("projector.epoch", int64(begun.Epoch))))
	fmt.Fprintf(o.stdout, "replicas paused, epoch raised from %d to %d and the reset of the read model requested, in one step: every write is refused until the reset\n", rec.Epoch, begun.Epoch)
	if len(begun.Cleared) > 0 {
		fmt.Fprintf(o.stdout, "cleared %d parked stream(s) of epoch %d (recorded as resolved by the replay; rebuilt from their first event):\n", len(begun.Cleared), rec.Epoch)
		for _, p := range begun.Cleared {
			fmt.Fprintf(o.stdout, "  %s (parked at sequence %d: %s)\n", safeText(p.StreamID), p.Sequence, safeText(p.Reason))
		}
	}
	return nil
}

// startOffsets lists where each partition of the topic starts.
func (c *conn) startOffsets(ctx context.Context) (map[int32]int64, error) {
	offsets, err := c.targetOffsets(ctx, "start")
	if err != nil {
		return nil, err
	}
	start := map[int32]int64{}
	offsets.Each(func(o kadm.Offset) { start[o.Partition] = o.At })
	return start, nil
}

// resetToStart is the rest of a replay to the start once the group is
// empty: the offsets go to the recorded start offsets, and the replay moves
// on to its rebuild. A replay interrupted before its first step (or one
// recorded by an older projectorctl, which raised the epoch only now) has
// it made first: the replicas are paused and out of the group already.
func (c *conn) resetToStart(ctx context.Context, rec *controlplane.Replay) error {
	o := c.o
	epoch, err := c.store.Epoch(ctx, c.name)
	if err != nil {
		return err
	}
	if epoch <= rec.Epoch || rec.Start == nil {
		if err := c.beginReplay(ctx, rec); err != nil {
			return err
		}
		if epoch, err = c.store.Epoch(ctx, c.name); err != nil {
			return err
		}
	}
	offsets := kadm.Offsets{}
	for p, at := range rec.Start {
		offsets.Add(kadm.Offset{Topic: o.topic, Partition: p, At: at, LeaderEpoch: -1})
	}
	if err := c.commitOffsets(ctx, offsets); err != nil {
		return fmt.Errorf("%w (the replicas stay paused: run replay --resume to retry, or --abort)", err)
	}
	// BeginReplay requested the reset; a replay recorded by an older
	// projectorctl may not have (raising it again changes nothing).
	if err := c.store.RequestReset(ctx, c.name, epoch); err != nil {
		return err
	}
	rec.Epoch, rec.Phase = epoch, controlplane.ReplayRebuild
	if err := c.store.SetReplay(ctx, c.name, rec); err != nil {
		return err
	}
	trace.SpanFromContext(ctx).AddEvent("offsets reset", trace.WithAttributes(attribute.Int64("projector.epoch", int64(epoch))))
	fmt.Fprintf(o.stdout, "offsets reset to %s; epoch %d\n", safeText(rec.To), epoch)
	return nil
}

// refuseForward refuses a replay that keeps the model but would move a
// partition's offset forward, past events the group has not processed:
// those events would never be applied.
func (c *conn) refuseForward(ctx context.Context, to string) error {
	target, err := c.targetOffsets(ctx, to)
	if err != nil {
		return err
	}
	committed, err := c.committedOffsets(ctx)
	if err != nil {
		return err
	}
	starts, err := c.admin.ListStartOffsets(ctx, c.o.topic)
	if err != nil {
		return fmt.Errorf("start offsets of %s: %w", c.o.topic, err)
	}
	var ahead []string
	for _, o := range target.Sorted() {
		cur := int64(0)
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok {
			cur = s.Offset
		}
		if got, ok := committed.Lookup(o.Topic, o.Partition); ok && got.At >= 0 {
			cur = got.At
		}
		if o.At > cur {
			ahead = append(ahead, fmt.Sprintf("partition %d: %d > %d", o.Partition, o.At, cur))
		}
	}
	if len(ahead) > 0 {
		return refused("replay of %s to %s would move offsets forward, past events the group has not processed (%s): they would never be applied; a replay to a time or offsets only re-delivers (replay to the start to rebuild)",
			c.name, to, strings.Join(ahead, "; "))
	}
	return nil
}

// committedOffsets fetches the group's committed offsets.
func (c *conn) committedOffsets(ctx context.Context) (kadm.OffsetResponses, error) {
	committed, err := c.admin.FetchOffsets(ctx, c.group)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of %s: %w", c.group, err)
	}
	return committed, nil
}
