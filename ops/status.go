package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/projector-dev/projector/controlplane"
)

// Projection states in [Status].
const (
	StateRunning   = "running"
	StatePaused    = "paused"
	StateReplaying = "replaying"
	StateStopped   = "stopped" // no member in the consumer group
)

// Status is a projection's status: the one model behind projectorctl
// status (also as JSON), replays' plans and progress, and APIs.
type Status struct {
	Projection string `json:"projection"`
	Group      string `json:"group"`
	Topic      string `json:"topic"`
	// State is StateRunning, StatePaused, StateReplaying or StateStopped.
	State string `json:"state"`
	// GroupState is Kafka's state of the consumer group.
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
	// offsets rely on state the store lost, partitions a replica reports
	// as not working, duplicates whose event ID could not be verified.
	Problems []string `json:"problems,omitempty"`
	// Warnings are the replicas' warnings about their setup, such as a
	// Redis without persistence.
	Warnings  []string `json:"warnings,omitempty"`
	LastError string   `json:"last_error,omitempty"`
}

// Status gathers the status of projection (a name as [Client.Projection]
// takes it) from the control plane and Kafka.
func (c *Client) Status(ctx context.Context, projection string) (Status, error) {
	p, err := c.Projection(ctx, projection)
	if err != nil {
		return Status{}, err
	}
	return c.status(ctx, p)
}

func (c *Client) status(ctx context.Context, p Projection) (Status, error) {
	adm, err := c.kafka("status")
	if err != nil {
		return Status{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	a := c.cfg.Admin
	st := Status{Projection: p.Name, Group: p.Group, Topic: c.cfg.Topic}
	if st.Control, err = a.Control(ctx, p.Name); err != nil {
		return Status{}, err
	}
	if st.Epoch, err = a.Epoch(ctx, p.Name); err != nil {
		return Status{}, err
	}
	if st.Parked, err = a.Parked(ctx, p.Name); err != nil {
		return Status{}, err
	}
	if st.Replicas, err = a.Replicas(ctx, p.Name, c.cfg.ReplicaStaleAfter); err != nil {
		return Status{}, err
	}
	if st.Versions, err = a.Versions(ctx, p.Base); err != nil {
		return Status{}, err
	}
	lag, err := GroupLag(ctx, adm, c.cfg.Topic, p.Group)
	if err != nil {
		return Status{}, err
	}
	st.GroupState, st.Members, st.Partitions = lag.GroupState, lag.Members, lag.Partitions
	progress := make(map[int32]controlplane.PartitionProgress, len(st.Partitions))
	for _, pl := range st.Partitions {
		if progress[pl.Partition], err = a.Progress(ctx, p.Name, pl.Partition); err != nil {
			return Status{}, err
		}
	}
	st.assemble(progress)
	return st, nil
}

// assemble derives what status shows from what was gathered: the lag
// total, the store's progress per partition and lost state, the state,
// problems, warnings and the last error.
func (st *Status) assemble(progress map[int32]controlplane.PartitionProgress) {
	st.TotalLag = 0
	for i := range st.Partitions {
		pl := &st.Partitions[i]
		if pl.Lag > 0 {
			st.TotalLag += pl.Lag
		}
		pr := progress[pl.Partition]
		pl.Progress = -1
		if pr.Recorded {
			pl.Progress = pr.Next
		}
		if pl.Committed >= 0 && !pr.Untracked && (!pr.Recorded || pr.Next < pl.Committed) {
			pl.StateLost = true
			covered := "nothing"
			if pr.Recorded {
				covered = fmt.Sprintf("offsets below %d", pr.Next)
			}
			st.Problems = append(st.Problems, fmt.Sprintf("partition %d: the group committed offset %d but Redis holds the read model of %s (epoch %d): state lost; replay the projection",
				pl.Partition, pl.Committed, covered, st.Epoch))
		}
	}
	switch {
	case st.Control.Replay != nil && ReplayInProgress(st.Control.Replay.Phase):
		st.State = StateReplaying
	case st.Control.Paused:
		st.State = StatePaused
	case len(st.Members) == 0:
		st.State = StateStopped
	default:
		st.State = StateRunning
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
}

// Resettable reports whether a replica reporting now can reset the read
// model (its projection implements framework.Resetter).
func (st Status) Resettable() bool {
	for _, r := range st.Replicas {
		if r.Resettable {
			return true
		}
	}
	return false
}
