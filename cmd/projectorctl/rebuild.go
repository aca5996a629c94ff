package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/redischeckpoint"
)

type rebuildOptions struct {
	wait        bool
	waitTimeout time.Duration
	grace       time.Duration
	keep        bool
	reason      string
	yes         bool
	dryRun      bool
	status      bool
	abort       bool
	drop        uint64
}

func newRebuildCommand(o *options) *cobra.Command {
	ro := &rebuildOptions{}
	cmd := &cobra.Command{
		Use:   "rebuild PROJECTION",
		Short: "Build a new version of the read model beside the live one and switch to it when it has caught up (blue/green)",
		Long: `Rebuild builds version N+1 of a projection's read model beside the live version N, which keeps serving
and keeping up with new events the whole time. The replicas (workers running every version of the
projection) start a consumer group of its own for N+1, named PROJECTION@vN+1, which reads the topic from
the start into keys of its own. When N+1 has caught up with the topic and no stream is parked in it that
is not parked in N, a replica moves the live pointer to N+1 in one Redis write: readers read N+1 from
their next query on. N is closed (nothing writes to it any more) and its keys and consumer group are
deleted after --grace (kept with --keep).

--wait follows the rebuild with progress and ETA until the switch, and fails naming the parked streams if
the rebuild caught up but cannot switch; given while a rebuild is in progress, it follows that one. --status shows the versions; --abort drops the rebuild (N is
untouched); --drop VERSION deletes a kept or retiring version now.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dropping := cmd.Flags().Changed("drop")
			if ro.grace <= 0 {
				return usage("--grace %s: the replaced version must outlive the queries that resolved it just before the switch; give a positive duration (default 10m)", ro.grace)
			}
			n := 0
			for _, b := range []bool{ro.status, ro.abort, dropping} {
				if b {
					n++
				}
			}
			if n > 1 {
				return usage("give one of --status, --abort and --drop")
			}
			if _, v := framework.SplitVersionedName(args[0]); v > 0 {
				return usage("rebuild takes the projection's name, not a version (%s)", safeText(args[0]))
			}
			c, err := o.connectBare(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer c.close()
			switch {
			case ro.status:
				return c.rebuildStatus(cmd.Context())
			case ro.abort:
				return c.abortRebuild(cmd.Context())
			case dropping:
				return c.dropVersion(cmd.Context(), ro.drop)
			}
			return c.rebuild(cmd.Context(), ro)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&ro.wait, "wait", false, "follow the rebuild until the live pointer switched to the new version")
	f.DurationVar(&ro.waitTimeout, "wait-timeout", time.Hour, "how long --wait follows the rebuild")
	f.DurationVar(&ro.grace, "grace", 10*time.Minute, "how long the replaced version is kept after the switch (queries that started on it finish)")
	f.BoolVar(&ro.keep, "keep", false, "keep the replaced version until deleted with --drop")
	f.StringVar(&ro.reason, "reason", "", "why, recorded with the rebuild")
	f.BoolVarP(&ro.yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVar(&ro.dryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&ro.status, "status", false, "show the live version, a rebuild in progress and the retiring versions")
	f.BoolVar(&ro.abort, "abort", false, "give up the rebuild in progress: its version is dropped, the live one is untouched")
	f.Uint64Var(&ro.drop, "drop", 0, "delete this retired version now (also one kept with --keep)")
	return cmd
}

// connectBare connects for a command about the projection as a whole (its
// versions), not about one version.
func (o *options) connectBare(ctx context.Context, name string) (*conn, error) {
	c, err := o.connect(ctx, name, true)
	if err != nil {
		return nil, err
	}
	c.name, c.group = name, c.baseGroup
	return c, nil
}

func (c *conn) rebuild(ctx context.Context, ro *rebuildOptions) (err error) {
	o := c.o
	ctx, span := tracer(ctx).Start(ctx, "projectorctl rebuild "+c.name, trace.WithAttributes(
		attribute.String("projector.projection", c.name),
		attribute.String("messaging.destination.name", o.topic),
		attribute.Bool("projector.rebuild.dry_run", ro.dryRun),
	))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	vs, err := c.store.Versions(ctx, c.name)
	if err != nil {
		return err
	}
	if b := vs.Building; b != nil && ro.wait && !ro.dryRun {
		fmt.Fprintf(o.stdout, "a rebuild of %s to v%d is in progress since %s (by %s): following it\n", safeText(c.name), b.Version,
			b.StartedAt.Format(time.RFC3339), safeText(b.By))
		return c.followRebuild(ctx, *b, ro.waitTimeout)
	}
	if b := vs.Building; b != nil {
		return refused("a rebuild of %s to v%d is in progress since %s (by %s): follow it with rebuild --status, or give it up with --abort",
			c.name, b.Version, b.StartedAt.Format(time.RFC3339), b.By)
	}
	live := framework.VersionedName(c.name, vs.Live)
	if ctl, err := c.store.Control(ctx, live); err != nil {
		return err
	} else if r := ctl.Replay; r != nil && replayInProgress(r.Phase) && !ro.dryRun {
		return refused("replay %s of %s is in progress (phase %s, by %s): finish it (replay %s --resume) or give it up (--abort) before a rebuild",
			r.ID, live, r.Phase, r.By, c.name)
	}
	liveGroup := framework.VersionGroup(c.group, vs.Live)
	next := vs.Last + 1
	ends, err := c.admin.ListEndOffsets(ctx, o.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", o.topic, err)
	}
	starts, err := c.admin.ListStartOffsets(ctx, o.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("start offsets of %s: %w", o.topic, err)
	}
	var records int64
	for _, e := range ends.Offsets().Sorted() {
		s, _ := starts.Lookup(o.topic, e.Partition)
		records += e.At - s.Offset
	}
	truncated := truncatedPartitions(starts)
	replicas, err := c.store.Replicas(ctx, live, 30*time.Second)
	if err != nil {
		return err
	}
	keepText := "deleted " + ro.grace.String() + " after the switch (--keep keeps them)"
	if ro.keep {
		keepText = "kept until rebuild --drop " + strconv.FormatUint(vs.Live, 10)
	}
	fmt.Fprintf(o.stdout, "Rebuild plan for projection %s (topic %s):\n", safeText(c.name), safeText(o.topic))
	fmt.Fprintf(o.stdout, "  live version: %s (group %s, %d replica(s) reporting): keeps serving and keeping up\n", safeText(live), safeText(liveGroup), len(replicas))
	fmt.Fprintf(o.stdout, "  new version:  %s@v%d (group %s): reads %d record(s) from the start of the topic into keys of its own\n",
		safeText(c.name), next, safeText(framework.VersionGroup(c.group, next)), records)
	fmt.Fprintf(o.stdout, "  switch:       when it has caught up and no stream is parked in it that is not parked in %s, a replica moves the live pointer in one write\n", safeText(live))
	fmt.Fprintf(o.stdout, "  then:         %s is closed; its keys and consumer group are %s\n", safeText(live), keepText)
	if truncated != "" {
		fmt.Fprintf(o.stdout, "  warning:      the topic no longer starts at offset 0 (%s): events before were deleted (retention or DeleteRecords); streams whose events are gone would be missing, and the switch waits, naming them, while any stream of %s is missing or behind in the new version\n",
			truncated, safeText(live))
	}
	if ro.dryRun {
		fmt.Fprintln(o.stdout, "dry run: nothing changed")
		return nil
	}
	if !ro.yes {
		if err := confirm(o, fmt.Sprintf("Build %s@v%d beside %s?", safeText(c.name), next, safeText(live))); err != nil {
			return err
		}
	}
	r, err := c.store.StartRebuild(ctx, c.name, controlplane.Rebuild{By: o.by, Reason: ro.reason, Grace: ro.grace, Keep: ro.keep})
	if errors.Is(err, redischeckpoint.ErrRebuildInProgress) || errors.Is(err, redischeckpoint.ErrReplayInProgress) {
		return refused("%v", err)
	}
	if err != nil {
		return err
	}
	name := framework.VersionedName(c.name, r.Version)
	span.SetAttributes(attribute.Int64("projector.rebuild.version", int64(r.Version)))
	fmt.Fprintf(o.stdout, "rebuild of %s started: %s (group %s)\n", safeText(c.name), safeText(name), safeText(framework.VersionGroup(c.group, r.Version)))
	if len(replicas) == 0 {
		fmt.Fprintln(o.stdout, "note: no replica of the live version is reporting; the rebuild starts when replicas run")
	}
	if !ro.wait {
		fmt.Fprintf(o.stdout, "follow it with: projectorctl rebuild %s --status\n", safeText(c.name))
		return nil
	}
	return c.followRebuild(ctx, r, ro.waitTimeout)
}

// followRebuild shows the rebuild's progress until the live pointer
// switched to it; it fails when the rebuild ended otherwise, or did not
// switch in time (naming what blocks it).
func (c *conn) followRebuild(ctx context.Context, r controlplane.Rebuild, timeout time.Duration) error {
	o := c.o
	deadline := time.Now().Add(timeout)
	group := framework.VersionGroup(c.group, r.Version)
	name := framework.VersionedName(c.name, r.Version)
	total, _, err := c.groupBehind(ctx, group)
	if err != nil {
		return err
	}
	named := *c
	named.name = name // the progress shows the version being built
	progress := named.newProgress(total)
	lastBlocked := ""
	seenReplica, warned := false, false
	for {
		vs, err := c.store.Versions(ctx, c.name)
		var behind int64
		if err == nil {
			behind, _, err = c.groupBehind(ctx, group)
		}
		if err != nil {
			// A busy Redis or broker: the rebuild goes on in the
			// replicas; look again until the deadline.
			if time.Now().After(deadline) {
				return fmt.Errorf("following the rebuild to %s: %w", name, err)
			}
			fmt.Fprintf(o.stderr, "warning: %s; retrying\n", safeText(err.Error()))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Second):
			}
			continue
		}
		progress.set(max(total-behind, 0))
		switch {
		case vs.Live == r.Version:
			progress.finish()
			fmt.Fprintf(o.stdout, "switched: %s is live since %s (from %s, by %s); lag now %d record(s)\n", safeText(name),
				vs.SwitchedAt.Format(time.RFC3339), safeText(framework.VersionedName(c.name, vs.SwitchedFrom)), safeText(vs.SwitchedBy), behind)
			for _, rt := range vs.Retiring {
				if rt.Version == vs.SwitchedFrom {
					if rt.Keep {
						fmt.Fprintf(o.stdout, "%s is kept (closed): delete it with projectorctl rebuild %s --drop %d\n",
							safeText(framework.VersionedName(c.name, rt.Version)), safeText(c.name), rt.Version)
					} else {
						fmt.Fprintf(o.stdout, "%s is closed and will be deleted at %s\n", safeText(framework.VersionedName(c.name, rt.Version)), rt.RetireAt.Format(time.RFC3339))
					}
				}
			}
			return nil
		case vs.Building == nil || vs.Building.Version != r.Version:
			progress.finish()
			outcome := "ended"
			for _, h := range vs.History {
				if h.Version == r.Version {
					outcome = h.Outcome
				}
			}
			return fmt.Errorf("the rebuild to %s %s without switching; %s stays live", name, outcome, framework.VersionedName(c.name, vs.Live))
		}
		if b := vs.Building.Blocked; b != "" && b != lastBlocked {
			lastBlocked = b
			fmt.Fprintf(o.stderr, "caught up, not switching: %s\n", safeText(b))
		}
		if !seenReplica && !warned {
			if reps, err := c.store.Replicas(ctx, name, 30*time.Second); err == nil && len(reps) > 0 {
				seenReplica = true
			} else if time.Since(r.StartedAt) > time.Minute {
				warned = true
				fmt.Fprintf(o.stderr, "warning: no replica reports for %s after a minute: do the workers run every version (kafkastore.VersionedRunner)?\n", safeText(name))
			}
		}
		if time.Now().After(deadline) {
			progress.finish()
			if lastBlocked != "" {
				return fmt.Errorf("the rebuild to %s caught up but did not switch within %s: %s", name, timeout, lastBlocked)
			}
			return fmt.Errorf("the rebuild to %s did not catch up within %s (%d record(s) behind); it goes on: follow it with rebuild --status, or --abort", name, timeout, behind)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// groupBehind returns how many records group is behind the end of the
// topic, in all and per partition.
func (c *conn) groupBehind(ctx context.Context, group string) (int64, map[int32]int64, error) {
	topic := c.o.topic
	ends, err := c.admin.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	starts, err := c.admin.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	committed, err := c.admin.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = nil, nil // not created yet: nothing committed
	}
	if err != nil {
		return 0, nil, fmt.Errorf("committed offsets of %s: %w", group, err)
	}
	var total int64
	per := map[int32]int64{}
	for _, e := range ends.Offsets().Sorted() {
		s, _ := starts.Lookup(topic, e.Partition)
		at := s.Offset
		if got, ok := committed.Lookup(topic, e.Partition); ok && got.At > at {
			at = got.At
		}
		per[e.Partition] = max(e.At-at, 0)
		total += per[e.Partition]
	}
	return total, per, nil
}

func (c *conn) rebuildStatus(ctx context.Context) error {
	o := c.o
	vs, err := c.store.Versions(ctx, c.name)
	if err != nil {
		return err
	}
	type building struct {
		controlplane.Rebuild
		Name   string `json:"name"`
		Group  string `json:"group"`
		Behind int64  `json:"behind"`
	}
	out := struct {
		Projection string `json:"projection"`
		Live       string `json:"live"`
		LiveGroup  string `json:"live_group"`
		controlplane.Versions
		Rebuilding *building `json:"rebuilding,omitempty"`
	}{Projection: c.name, Live: framework.VersionedName(c.name, vs.Live), LiveGroup: framework.VersionGroup(c.group, vs.Live), Versions: vs}
	if b := vs.Building; b != nil {
		group := framework.VersionGroup(c.group, b.Version)
		behind, _, err := c.groupBehind(ctx, group)
		if err != nil {
			return err
		}
		out.Rebuilding = &building{Rebuild: *b, Name: framework.VersionedName(c.name, b.Version), Group: group, Behind: behind}
	}
	if o.output == "json" {
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(o.stdout, "projection %s: live version %s (group %s)\n", safeText(c.name), safeText(out.Live), safeText(out.LiveGroup))
	if !vs.SwitchedAt.IsZero() {
		fmt.Fprintf(o.stdout, "  switched at %s from %s by %s\n", vs.SwitchedAt.Format(time.RFC3339),
			safeText(framework.VersionedName(c.name, vs.SwitchedFrom)), safeText(vs.SwitchedBy))
	}
	if b := out.Rebuilding; b != nil {
		fmt.Fprintf(o.stdout, "  rebuilding %s (group %s) since %s by %s: %d record(s) behind the topic\n", safeText(b.Name), safeText(b.Group),
			b.StartedAt.Format(time.RFC3339), safeText(b.By), b.Behind)
		if b.Blocked != "" {
			fmt.Fprintf(o.stdout, "  caught up, not switching: %s\n", safeText(b.Blocked))
		}
	} else {
		fmt.Fprintln(o.stdout, "  no rebuild in progress")
	}
	for _, r := range vs.Retiring {
		when := "deleted at " + r.RetireAt.Format(time.RFC3339)
		if r.Keep {
			when = "kept (rebuild --drop " + strconv.FormatUint(r.Version, 10) + " deletes it)"
		}
		fmt.Fprintf(o.stdout, "  retiring %s (%s): %s\n", safeText(framework.VersionedName(c.name, r.Version)), safeText(r.Why), when)
	}
	for _, h := range vs.History {
		fmt.Fprintf(o.stdout, "  v%d: %s at %s (started %s by %s)\n", h.Version, safeText(h.Outcome), h.EndedAt.Format(time.RFC3339),
			h.StartedAt.Format(time.RFC3339), safeText(h.By))
	}
	return nil
}

func (c *conn) abortRebuild(ctx context.Context) error {
	r, err := c.store.AbortRebuild(ctx, c.name, c.o.by)
	if errors.Is(err, redischeckpoint.ErrNoRebuild) {
		if vs, verr := c.store.Versions(ctx, c.name); verr == nil && len(vs.History) > 0 && time.Since(vs.History[0].EndedAt) < time.Hour {
			h := vs.History[0]
			return refused("no rebuild of %s to abort: the last one, to v%d, ended at %s (%s); %s is live", c.name, h.Version,
				h.EndedAt.Format(time.RFC3339), h.Outcome, framework.VersionedName(c.name, vs.Live))
		}
		return refused("no rebuild of %s to abort", c.name)
	}
	if err != nil {
		return err
	}
	vs, err := c.store.Versions(ctx, c.name)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.o.stdout, "rebuild to %s aborted: the replicas stop it and delete its keys and group; %s stays live\n",
		safeText(framework.VersionedName(c.name, r.Version)), safeText(framework.VersionedName(c.name, vs.Live)))
	return nil
}

func (c *conn) dropVersion(ctx context.Context, version uint64) error {
	if err := c.store.RetireNow(ctx, c.name, version); err != nil {
		return refused("%v", err)
	}
	fmt.Fprintf(c.o.stdout, "%s will be deleted by the replicas now (keys and consumer group %s)\n",
		safeText(framework.VersionedName(c.name, version)), safeText(framework.VersionGroup(c.group, version)))
	return nil
}

// truncatedPartitions names the partitions whose first offset is above 0
// ("partition 2 starts at 120"): their earlier events were deleted.
func truncatedPartitions(starts kadm.ListedOffsets) string {
	var out []string
	starts.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			out = append(out, fmt.Sprintf("partition %d starts at %d", o.Partition, o.Offset))
		}
	})
	slices.Sort(out)
	return strings.Join(out, ", ")
}
