package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/ops"
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
		Use:     "rebuild PROJECTION",
		Example: "  projectorctl rebuild billing --yes --wait   # build v(N+1) beside the live version, switch when caught up\n  projectorctl rebuild billing --status\n  projectorctl rebuild billing --abort",
		Short:   "Build a new version of the read model beside the live one and switch to it when it has caught up (blue/green)",
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
	plan, err := c.ops.PlanRebuild(ctx, c.name, ro.wait, ro.dryRun)
	if err != nil {
		return err
	}
	if b := plan.Building; b != nil {
		fmt.Fprintf(o.stdout, "a rebuild of %s to v%d is in progress since %s (by %s): following it\n", safeText(c.name), b.Version,
			b.StartedAt.Format(time.RFC3339), safeText(b.By))
		return c.followRebuild(ctx, *b, ro.waitTimeout)
	}
	keepText := "deleted " + ro.grace.String() + " after the switch (--keep keeps them)"
	if ro.keep {
		keepText = "kept until rebuild --drop " + strconv.FormatUint(plan.Versions.Live, 10)
	}
	live := plan.Live
	fmt.Fprintf(o.stdout, "Rebuild plan for projection %s (topic %s):\n", safeText(c.name), safeText(o.topic))
	fmt.Fprintf(o.stdout, "  live version: %s (group %s, %d replica(s) reporting): keeps serving and keeping up\n", safeText(live), safeText(plan.LiveGroup), plan.Replicas)
	fmt.Fprintf(o.stdout, "  new version:  %s@v%d (group %s): reads %d record(s) from the start of the topic into keys of its own\n",
		safeText(c.name), plan.Next, safeText(plan.NextGroup), plan.Records)
	fmt.Fprintf(o.stdout, "  switch:       when it has caught up and no stream is parked in it that is not parked in %s, a replica moves the live pointer in one write\n", safeText(live))
	fmt.Fprintf(o.stdout, "  then:         %s is closed; its keys and consumer group are %s\n", safeText(live), keepText)
	if plan.Truncated != "" {
		fmt.Fprintf(o.stdout, "  warning:      the topic no longer starts at offset 0 (%s): events before were deleted (retention or DeleteRecords); streams whose events are gone would be missing, and the switch waits, naming them, while any stream of %s is missing or behind in the new version\n",
			plan.Truncated, safeText(live))
	}
	if ro.dryRun {
		fmt.Fprintln(o.stdout, "dry run: nothing changed")
		return nil
	}
	if !ro.yes {
		if err := confirm(o, fmt.Sprintf("Build %s@v%d beside %s?", safeText(c.name), plan.Next, safeText(live))); err != nil {
			return err
		}
	}
	r, err := c.ops.StartRebuild(ctx, ops.RebuildRequest{Projection: c.name, By: o.by, Reason: ro.reason, Grace: ro.grace, Keep: ro.keep})
	if err != nil {
		return err
	}
	name := framework.VersionedName(c.name, r.Version)
	span.SetAttributes(attribute.Int64("projector.rebuild.version", int64(r.Version)))
	fmt.Fprintf(o.stdout, "rebuild of %s started: %s (group %s)\n", safeText(c.name), safeText(name), safeText(c.ops.VersionGroup(c.name, r.Version)))
	if plan.Replicas == 0 {
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
	var progress *rebuildProgress
	sw, err := c.ops.FollowRebuild(ctx, c.name, r, timeout, func(e ops.RebuildEvent) {
		switch e.Step {
		case ops.RebuildProgress:
			if progress == nil {
				progress = newProgress(o, e.Name, e.Total) // the progress shows the version being built
				return
			}
			progress.set(e.Done)
		case ops.RebuildEnded:
			if progress != nil {
				progress.finish()
			}
		case ops.RebuildBlocked:
			fmt.Fprintf(o.stderr, "caught up, not switching: %s\n", safeText(e.Blocked))
		case ops.RebuildNoReplica:
			fmt.Fprintf(o.stderr, "warning: no replica reports for %s after a minute: do the workers run every version (kafkarunner.VersionedRunner)?\n", safeText(e.Name))
		case ops.RebuildRetrying:
			fmt.Fprintf(o.stderr, "warning: %s; retrying\n", safeText(e.Err.Error()))
		}
	})
	if err != nil {
		return err
	}
	vs := sw.Versions
	fmt.Fprintf(o.stdout, "switched: %s is live since %s (from %s, by %s); lag now %d record(s)\n", safeText(sw.Name),
		vs.SwitchedAt.Format(time.RFC3339), safeText(framework.VersionedName(c.name, vs.SwitchedFrom)), safeText(vs.SwitchedBy), sw.Lag)
	if rt := sw.Replaced; rt != nil {
		if rt.Keep {
			fmt.Fprintf(o.stdout, "%s is kept (closed): delete it with projectorctl rebuild %s --drop %d\n",
				safeText(framework.VersionedName(c.name, rt.Version)), safeText(c.name), rt.Version)
		} else {
			fmt.Fprintf(o.stdout, "%s is closed and will be deleted at %s\n", safeText(framework.VersionedName(c.name, rt.Version)), rt.RetireAt.Format(time.RFC3339))
		}
	}
	return nil
}

func (c *conn) rebuildStatus(ctx context.Context) error {
	o := c.o
	out, err := c.ops.RebuildStatus(ctx, c.name)
	if err != nil {
		return err
	}
	if o.output == "json" {
		return o.printJSON(out)
	}
	vs := out.Versions
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
	r, vs, err := c.ops.AbortRebuild(ctx, c.name, c.o.by)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.o.stdout, "rebuild to %s aborted: the replicas stop it and delete its keys and group; %s stays live\n",
		safeText(framework.VersionedName(c.name, r.Version)), safeText(framework.VersionedName(c.name, vs.Live)))
	return nil
}

func (c *conn) dropVersion(ctx context.Context, version uint64) error {
	if err := c.ops.DropVersion(ctx, c.name, version); err != nil {
		return err
	}
	fmt.Fprintf(c.o.stdout, "%s will be deleted by the replicas now (keys and consumer group %s)\n",
		safeText(framework.VersionedName(c.name, version)), safeText(c.ops.VersionGroup(c.name, version)))
	return nil
}
