package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

// Status is what `status` reports, also as JSON.
type Status struct {
	Projection string                      `json:"projection"`
	Group      string                      `json:"group"`
	Topic      string                      `json:"topic"`
	State      string                      `json:"state"` // running, paused, replaying, stopped
	GroupState string                      `json:"group_state"`
	Epoch      uint64                      `json:"epoch"`
	Members    []Member                    `json:"members"`
	Partitions []PartitionLag              `json:"partitions"`
	TotalLag   int64                       `json:"total_lag"`
	Replicas   []controlplane.ReplicaInfo  `json:"replicas"`
	Control    controlplane.Control        `json:"control"`
	Parked     []controlplane.ParkedStream `json:"parked"`
	// Versions is the registry of the projection's read-model versions:
	// the live one, a rebuild in progress, retiring ones.
	Versions controlplane.Versions `json:"versions"`
	// Problems lists what needs an operator: partitions whose committed
	// offsets rely on state Redis lost, partitions a replica reports as
	// not working, duplicates whose event ID could not be verified.
	Problems []string `json:"problems,omitempty"`
	// Warnings are the replicas' warnings about their setup, such as a
	// Redis without persistence.
	Warnings  []string `json:"warnings,omitempty"`
	LastError string   `json:"last_error,omitempty"`
}

// Member is one member of the consumer group.
type Member struct {
	ID         string  `json:"id"`
	ClientID   string  `json:"client_id"`
	Host       string  `json:"host"`
	Partitions []int32 `json:"partitions"`
}

// PartitionLag is one partition's progress.
type PartitionLag struct {
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"` // -1: nothing committed
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
	Member    string `json:"member,omitempty"`
	// Progress is the next offset the read model in Redis covers (-1:
	// none recorded); a committed offset above it means Redis lost state
	// the offset relies on.
	Progress  int64 `json:"progress"`
	StateLost bool  `json:"state_lost,omitempty"`
}

func newStatusCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "status PROJECTION",
		Short: "Members, partitions, committed and end offsets, lag, epoch, state, parked streams, last error",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.connect(cmd.Context(), args[0], true)
			if err != nil {
				return err
			}
			defer c.close()
			st, err := c.status(cmd.Context())
			if err != nil {
				return err
			}
			if o.output == "json" {
				return o.printJSON(st)
			}
			printStatus(o, st)
			return nil
		},
	}
}

// status gathers the projection's status from Kafka and Redis.
func (c *conn) status(ctx context.Context) (*Status, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.timeout)
	defer cancel()
	st := &Status{Projection: c.name, Group: c.group, Topic: c.o.topic, Members: []Member{}, Partitions: []PartitionLag{}}
	var err error
	if st.Control, err = c.store.Control(ctx, c.name); err != nil {
		return nil, err
	}
	if st.Epoch, err = c.store.Epoch(ctx, c.name); err != nil {
		return nil, err
	}
	if st.Parked, err = c.store.Parked(ctx, c.name); err != nil {
		return nil, err
	}
	if st.Replicas, err = c.store.Replicas(ctx, c.name, 30*time.Second); err != nil {
		return nil, err
	}
	base, _ := framework.SplitVersionedName(c.name)
	if st.Versions, err = c.store.Versions(ctx, base); err != nil {
		return nil, err
	}
	described, err := c.admin.DescribeGroups(ctx, c.group)
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", c.group, err)
	}
	owner := map[int32]string{}
	if g, ok := described[c.group]; ok {
		st.GroupState = g.State
		for _, m := range g.Members {
			mem := Member{ID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost}
			if a, ok := m.Assigned.AsConsumer(); ok {
				for _, t := range a.Topics {
					if t.Topic == c.o.topic {
						mem.Partitions = append(mem.Partitions, t.Partitions...)
					}
				}
			}
			slices.Sort(mem.Partitions)
			for _, p := range mem.Partitions {
				owner[p] = m.ClientID
			}
			st.Members = append(st.Members, mem)
		}
	}
	committed, err := c.admin.FetchOffsets(ctx, c.group)
	if err != nil {
		return nil, fmt.Errorf("committed offsets of %s: %w", c.group, err)
	}
	ends, err := c.admin.ListEndOffsets(ctx, c.o.topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", c.o.topic, err)
	}
	starts, err := c.admin.ListStartOffsets(ctx, c.o.topic)
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", c.o.topic, err)
	}
	ends.Each(func(e kadm.ListedOffset) {
		pl := PartitionLag{Partition: e.Partition, Committed: -1, End: e.Offset, Member: owner[e.Partition]}
		from := int64(0)
		if s, ok := starts.Lookup(c.o.topic, e.Partition); ok {
			from = s.Offset
		}
		if o, ok := committed.Lookup(c.o.topic, e.Partition); ok && o.Err == nil && o.At >= 0 {
			pl.Committed = o.At
			from = o.At
		}
		pl.Lag = max(e.Offset-from, 0)
		st.TotalLag += pl.Lag
		st.Partitions = append(st.Partitions, pl)
	})
	sort.Slice(st.Partitions, func(i, j int) bool { return st.Partitions[i].Partition < st.Partitions[j].Partition })
	for i := range st.Partitions {
		pl := &st.Partitions[i]
		progress, err := c.store.Progress(ctx, c.name, pl.Partition)
		if err != nil {
			return nil, err
		}
		pl.Progress = -1
		if progress.Recorded {
			pl.Progress = progress.Next
		}
		if pl.Committed >= 0 && !progress.Untracked && (!progress.Recorded || progress.Next < pl.Committed) {
			pl.StateLost = true
			covered := "nothing"
			if progress.Recorded {
				covered = fmt.Sprintf("offsets below %d", progress.Next)
			}
			st.Problems = append(st.Problems, fmt.Sprintf("partition %d: the group committed offset %d but Redis holds the read model of %s (epoch %d): state lost; replay the projection",
				pl.Partition, pl.Committed, covered, st.Epoch))
		}
	}
	switch {
	case st.Control.Replay != nil && replayInProgress(st.Control.Replay.Phase):
		st.State = "replaying"
	case st.Control.Paused:
		st.State = "paused"
	case len(st.Members) == 0:
		st.State = "stopped"
	default:
		st.State = "running"
	}
	warned := map[string]bool{}
	for _, r := range st.Replicas {
		if r.LastError != "" {
			st.LastError = r.ID + ": " + r.LastError
		}
		for _, p := range r.Problems {
			st.Problems = append(st.Problems, fmt.Sprintf("replica %s partition %d %s since %s: %s", r.ID, p.Partition, p.State, p.Since.Format(time.RFC3339), p.Error))
		}
		if r.Unverified > 0 {
			st.Problems = append(st.Problems, fmt.Sprintf("replica %s skipped %d duplicates whose event ID it could not verify (see docs/runner.md)", r.ID, r.Unverified))
		}
		for _, w := range r.Warnings {
			if !warned[w] {
				warned[w] = true
				st.Warnings = append(st.Warnings, w)
			}
		}
	}
	if st.Control.Replay != nil && st.Control.Replay.Error != "" {
		st.LastError = "replay " + st.Control.Replay.ID + ": " + st.Control.Replay.Error
	}
	return st, nil
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

func replayInProgress(phase string) bool {
	return phase == controlplane.ReplayPausing || phase == controlplane.ReplayResetting || phase == controlplane.ReplayRebuild
}
