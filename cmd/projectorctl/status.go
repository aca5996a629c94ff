package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/ops"
)

// Status is what `status` reports, also as JSON: package ops's one
// status model.
type Status = ops.Status

// Member is one member of the consumer group.
type Member = ops.Member

// PartitionLag is one partition's progress.
type PartitionLag = ops.PartitionLag

func newStatusCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "status PROJECTION",
		Example: "  projectorctl status billing\n  projectorctl status billing@v2 -o json   # a version being built beside the live one",
		Short:   "Members, partitions, committed and end offsets, lag, epoch, state, parked streams, last error",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.connect(cmd.Context(), args[0], true)
			if err != nil {
				return err
			}
			defer c.close()
			st, err := c.ops.Status(cmd.Context(), c.ref)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return o.printJSON(st)
			}
			printStatus(o, &st)
			return nil
		},
	}
}

func printStatus(o *options, st *Status) {
	w := tabwriter.NewWriter(o.stdout, 0, 4, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintf(w, "projection\t%s\n", safeText(st.Projection))
	fmt.Fprintf(w, "group\t%s (%s)\n", safeText(st.Group), safeText(st.GroupState))
	fmt.Fprintf(w, "topic\t%s\n", safeText(st.Topic))
	fmt.Fprintf(w, "state\t%s\n", st.State)
	fmt.Fprintf(w, "epoch\t%d\n", st.Epoch)
	base, _ := framework.SplitVersionedName(st.Projection)
	fmt.Fprintf(w, "live version\t%s\n", safeText(framework.VersionedName(base, st.Versions.Live)))
	if b := st.Versions.Building; b != nil {
		fmt.Fprintf(w, "rebuilding\t%s since %s by %s (projectorctl rebuild %s --status)\n", safeText(framework.VersionedName(base, b.Version)),
			b.StartedAt.Format(time.RFC3339), safeText(b.By), safeText(base))
	}
	if st.Control.Paused {
		fmt.Fprintf(w, "paused\tby %s at %s: %s\n", safeText(st.Control.PausedBy), st.Control.PausedAt.Format(time.RFC3339), safeText(st.Control.PauseReason))
	}
	if r := st.Control.Replay; r != nil {
		fmt.Fprintf(w, "replay\t%s: %s, to %s, by %s, started %s\n", safeText(r.ID), safeText(r.Phase), safeText(r.To), safeText(r.By), r.StartedAt.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "lag\t%d records\n", st.TotalLag)
	fmt.Fprintf(w, "parked\t%d streams\n", len(st.Parked))
	if st.LastError != "" {
		fmt.Fprintf(w, "last error\t%s\n", safeText(st.LastError))
	}
	for _, p := range st.Problems {
		fmt.Fprintf(w, "problem\t%s\n", safeText(p))
	}
	for _, warning := range st.Warnings {
		fmt.Fprintf(w, "warning\t%s\n", safeText(warning))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "MEMBER\tHOST\tPARTITIONS")
	for _, m := range st.Members {
		fmt.Fprintf(w, "%s\t%s\t%v\n", safeText(m.ClientID), safeText(m.Host), m.Partitions)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "PARTITION\tCOMMITTED\tEND\tLAG\tREDIS PROGRESS\tMEMBER")
	dash := func(n int64) string {
		if n < 0 {
			return "-"
		}
		return fmt.Sprint(n)
	}
	for _, p := range st.Partitions {
		progress := dash(p.Progress)
		if p.StateLost {
			progress += " (STATE LOST)"
		}
		fmt.Fprintf(w, "%d\t%s\t%d\t%d\t%s\t%s\n", p.Partition, dash(p.Committed), p.End, p.Lag, progress, safeText(p.Member))
	}
	if len(st.Replicas) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "REPLICA\tSTATE\tPARTITIONS\tAPPLIED\tSKIPPED\tUNVERIFIED\tPARKED\tLAST ERROR")
		for _, r := range st.Replicas {
			lastErr := r.LastError
			if lastErr != "" && !r.LastErrorAt.IsZero() {
				lastErr = r.LastErrorAt.Format(time.RFC3339) + " " + lastErr
			}
			fmt.Fprintf(w, "%s\t%s\t%v\t%d\t%d\t%d\t%d\t%s\n", safeText(r.ID), safeText(r.State), r.Partitions, r.Applied, r.Skipped, r.Unverified, r.Parked, safeText(lastErr))
		}
	}
	if len(st.Parked) > 0 {
		fmt.Fprintln(w)
		printParked(w, st.Parked)
	}
}
