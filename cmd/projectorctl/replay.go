package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/term"

	"github.com/projector-dev/projector/ops"
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
		Use:     "replay PROJECTION",
		Example: "  projectorctl replay billing --yes --wait                     # rebuild in place from the start\n  projectorctl replay billing --to-time 2026-11-01T00:00:00Z --yes   # keep the model, re-read from that time\n  projectorctl replay billing --resume                          # finish an interrupted replay\n  projectorctl replay billing --abort",
		Short:   "Rebuild the read model: pause the replicas and raise the epoch, reset the group's offsets, resume; one replica resets the model",
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
	req := ops.ReplayRequest{Projection: c.ref, By: o.by, Reason: ro.reason, AllowTruncated: ro.allowTruncated, DryRun: ro.dryRun,
		EmptyTimeout: ro.emptyTimeout, Wait: ro.wait, WaitTimeout: ro.waitTimeout, OnEvent: c.replayPrinter()}
	switch {
	case ro.abort:
		a, err := c.ops.AbortReplay(ctx, c.ref, o.by)
		if err != nil {
			return err
		}
		fmt.Fprintf(o.stdout, "replay %s aborted in phase %s; replicas resumed\n", safeText(a.Replay.ID), safeText(a.Phase))
		switch {
		case a.EpochRaised:
			// The old epoch's cursors are gone: the replicas drop the read
			// model (the reset is requested) and rebuild from the committed
			// offsets, which are not reset everywhere: a partition whose
			// committed offset is above its start stops as state-lost.
			fmt.Fprintf(o.stdout, "warning: the epoch was raised to %d before the abort: the replicas drop the read model, and partitions whose offsets were not reset to their start stop as state-lost (see status): run a new replay to rebuild a consistent read model\n", a.Epoch)
		case a.OffsetsPartlyReset:
			fmt.Fprintln(o.stdout, "warning: offsets may have been reset in part: run a new replay to rebuild a consistent read model")
		}
		return nil
	case ro.resume:
		_, err := c.ops.ResumeReplay(ctx, req)
		return err
	}
	if req.Target, err = ro.target(); err != nil {
		return err
	}
	plan, err := c.ops.PlanReplay(ctx, req)
	if err != nil {
		return err
	}
	st, to := plan.Status, plan.Target.String()
	fmt.Fprintf(o.stdout, "Replay plan for projection %s (group %s, topic %s):\n", safeText(c.name), safeText(c.group), safeText(o.topic))
	if plan.KeepModel {
		fmt.Fprintf(o.stdout, "  1. ask the %d member(s) to finish their batch, commit and leave the group (wait up to %s)\n", len(st.Members), ro.emptyTimeout)
		fmt.Fprintf(o.stdout, "  2. reset the group's offsets to %s\n", safeText(to))
		// A model rebuilt from the middle of the topic would lack every
		// stream that started earlier: a replay to a time or offsets
		// keeps the model and only re-delivers.
		fmt.Fprintf(o.stdout, "  3. keep epoch %d, the read model and its cursors: the replay keeps the read model (a model rebuilt from a time would lack the streams that started earlier)\n", plan.Epoch)
		fmt.Fprintf(o.stdout, "  4. the replicas rejoin and re-read from there; what each stream applied is skipped by its cursor (current lag %d records)\n", st.TotalLag)
		fmt.Fprintln(o.stdout, "  (refused once the group is empty if it would move an offset forward, past events never processed)")
	} else {
		fmt.Fprintf(o.stdout, "  1. in one step: pause the %d member(s), raise the epoch from %d to %d and request the reset of the read model: cursors, fences and parks of epoch %d stop counting, and every write is refused from then on until the reset is done\n",
			len(st.Members), plan.Epoch, plan.Epoch+1, plan.Epoch)
		fmt.Fprintf(o.stdout, "  2. wait until the members left the group (up to %s), then reset the group's offsets to %s\n", ro.emptyTimeout, safeText(to))
		fmt.Fprintln(o.stdout, "  3. resume: one replica drops the read model (each of its deletes checks its claim on the reset)")
		fmt.Fprintf(o.stdout, "  4. the replicas rejoin and rebuild (current lag %d records)\n", st.TotalLag)
		if len(st.Replicas) == 0 {
			fmt.Fprintln(o.stdout, "  note: no replica is reporting now; the read model is dropped by the first one to start")
		}
	}
	if err := plan.Check(); err != nil {
		return err
	}
	if ro.dryRun {
		fmt.Fprintln(o.stdout, "  offsets (dry run):")
		moves, err := c.ops.OffsetMoves(ctx, plan)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(o.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "  TOPIC\tPARTITION\tCURRENT-OFFSET\tNEW-OFFSET")
		for _, m := range moves {
			cur := "-"
			if m.Current >= 0 {
				cur = strconv.FormatInt(m.Current, 10)
			}
			fmt.Fprintf(w, "  %s\t%d\t%s\t%d\n", safeText(m.Topic), m.Partition, cur, m.New)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(o.stdout, "dry run: nothing changed")
		return nil
	}
	if !ro.yes {
		question := fmt.Sprintf("Drop and rebuild the read model of %s?", safeText(c.name))
		if plan.KeepModel {
			question = fmt.Sprintf("Move the offsets of %s back to %s?", safeText(c.name), safeText(to))
		}
		if err := confirm(o, question); err != nil {
			return err
		}
	}
	// Planned again after the confirmation: a rebuild or another replay
	// may have started meanwhile.
	_, err = c.ops.Replay(ctx, req)
	return err
}

// target describes where offsets go.
func (ro *replayOptions) target() (ops.ReplayTarget, error) {
	switch {
	case ro.toTime != "":
		t, err := time.Parse(time.RFC3339, ro.toTime)
		if err != nil {
			return ops.ReplayTarget{}, usage("--to-time %q: %v", ro.toTime, err)
		}
		return ops.FromTime(t), nil
	case ro.toOffsets != "":
		offsets, err := readOffsetsFile(ro.toOffsets)
		if err != nil {
			return ops.ReplayTarget{}, err
		}
		return ops.FromOffsets(offsets), nil
	}
	return ops.FromStart(), nil
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

// replayPrinter prints a replay's steps as they happen, and its progress
// (with --wait) on stderr.
func (c *conn) replayPrinter() func(ops.ReplayEvent) {
	o := c.o
	var progress *rebuildProgress
	return func(e ops.ReplayEvent) {
		switch e.Step {
		case ops.ReplayStarted:
			fmt.Fprintf(o.stdout, "replay %s started\n", safeText(e.Replay.ID))
		case ops.ReplayResuming:
			fmt.Fprintf(o.stdout, "resuming replay %s from phase %q\n", safeText(e.Replay.ID), e.Replay.Phase)
		case ops.ReplayEpochWasRaised:
			fmt.Fprintf(o.stdout, "replicas paused; epoch %d was raised before the interruption: not raised again\n", e.Epoch)
		case ops.ReplayEpochRaised:
			fmt.Fprintf(o.stdout, "replicas paused, epoch raised from %d to %d and the reset of the read model requested, in one step: every write is refused until the reset\n", e.From, e.Epoch)
			if len(e.Cleared) > 0 {
				fmt.Fprintf(o.stdout, "cleared %d parked stream(s) of epoch %d (recorded as resolved by the replay; rebuilt from their first event):\n", len(e.Cleared), e.From)
				for _, p := range e.Cleared {
					fmt.Fprintf(o.stdout, "  %s (parked at sequence %d: %s)\n", safeText(p.StreamID), p.Sequence, safeText(p.Reason))
				}
			}
		case ops.ReplayWaitingEmpty:
			fmt.Fprintf(o.stdout, "waiting for the group %s to empty...\n", safeText(e.Group))
		case ops.ReplayOffsetsReset:
			if e.Replay.KeepModel {
				fmt.Fprintf(o.stdout, "offsets reset to %s; epoch %d, the read model and its cursors kept\n", safeText(e.Replay.To), e.Epoch)
			} else {
				fmt.Fprintf(o.stdout, "offsets reset to %s; epoch %d\n", safeText(e.Replay.To), e.Epoch)
			}
		case ops.ReplayResumed:
			fmt.Fprintln(o.stdout, "replicas resumed: one drops the read model, all rebuild")
		case ops.ReplayStaysPaused:
			fmt.Fprintln(o.stdout, "the projection was paused before the replay and stays paused: resume it to rebuild")
		case ops.ReplayProgress:
			if progress == nil {
				progress = newProgress(o, c.name, e.Total)
				return
			}
			progress.set(e.Done)
		case ops.ReplayCaughtUp:
			if progress == nil {
				progress = newProgress(o, c.name, e.Total)
			}
			progress.set(e.Done)
			progress.finish()
			if len(e.Parked) == 0 {
				fmt.Fprintf(o.stdout, "rebuild of %s caught up with the topic as it was at the resume (epoch %d); live lag now %d records\n", safeText(c.name), e.Epoch, e.Lag)
			}
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
	o                  *options
	name               string
	bar                *progressbar.ProgressBar
	total, last        int64
	start, lastPrinted time.Time
}

func newProgress(o *options, name string, total int64) *rebuildProgress {
	p := &rebuildProgress{o: o, name: name, total: total, start: time.Now(), lastPrinted: time.Now()}
	if f, ok := o.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(o.stderr), progressbar.OptionSetDescription("rebuilding "+safeText(name)),
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
		fmt.Fprintln(p.o.stderr)
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
	fmt.Fprintf(p.o.stderr, "rebuilding %s: %.1f%% (%d/%d events), %.0f events/s, ETA %s\n", safeText(p.name), pct, p.last, p.total, rate, eta)
}
