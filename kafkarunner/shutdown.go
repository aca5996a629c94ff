package kafkarunner

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The graceful end of a membership, bounded by Config.ShutdownTimeout.
//
// What can hold it past the deadline, and what the runner does:
//   - A worker still applying or writing: stopPartitions cancels its writes
//     at the deadline (and leaves behind a projection that ignores that).
//   - A commit waiting for a rebalance in flight: franz-go holds commits
//     during a join and sync, and the broker holds a JoinGroup until every
//     member has rejoined. A member that crashed without leaving (a
//     SIGKILLed static member) is waited for until its session expires,
//     up to minutes. The commit is given up at the deadline: the cursors
//     are stored, so the next owner skips what it reads again.
//   - franz-go's own leave and Close: both wait for its group loop, which
//     is in that JoinGroup, sent on the client's context, which leaving
//     does not cancel. Past the deadline the runner cancels the client's
//     context (the JoinGroup ends, the loop exits) and sends the
//     LeaveGroup itself, through a client of its own, with leaveBudget.

// leaveBudget is how long leaving the group may take once the shutdown
// deadline has passed: one request to the group coordinator.
const leaveBudget = 3 * time.Second

// closeBudget bounds franz-go's Close (which takes up to 2 s by itself:
// it ends fetch sessions and pushes its last metrics), and then again
// after the client's context is cancelled; past that the client is left
// behind rather than Run.
const closeBudget = 5 * time.Second

// atLeast returns ctx if at least d is left before its deadline, else a
// context with d from now: the last request of a shutdown (leaving the
// group) gets a moment even when the workers used up the deadline.
func atLeast(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
		return context.WithTimeout(context.WithoutCancel(ctx), d)
	}
	return context.WithCancel(ctx)
}

// shutdown stops every worker (committing unless the runner crashed or its
// instance ID was fenced), leaves the group and closes cl.
func (r *Runner) shutdown(ctx context.Context, cl *kgo.Client, cancelClient context.CancelFunc) {
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
	defer cancel()
	if by, ok := shutdownCtx.Deadline(); ok {
		r.shutdownBy.Store(by.UnixNano())
	}
	fenced := r.instanceFenced() != nil
	commit := !r.crashed.Load() && !fenced
	r.stopPartitions(shutdownCtx, r.partitionIDs(), commit)
	if commit {
		member, _ := cl.GroupMetadata()
		err := cl.LeaveGroupContext(shutdownCtx)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			// The workers used up the deadline, or a rebalance in flight
			// holds franz-go's group loop.
			r.cfg.Logger.WarnContext(ctx, "the shutdown timeout passed before the replica left the group (slow workers, or a rebalance waiting for a member to rejoin); leaving it directly",
				"group", r.cfg.Group, "shutdown_timeout", r.cfg.ShutdownTimeout)
			cancelClient()
			if id, _ := cl.GroupMetadata(); id != "" {
				member = id
			}
			r.leaveWithOwnClient(ctx, member)
		case err != nil:
			r.cfg.Logger.WarnContext(ctx, "leaving the group", "group", r.cfg.Group, "err", err)
			fallthrough
		default:
			if r.cfg.InstanceID != "" {
				leaveCtx, cancelLeave := atLeast(shutdownCtx, leaveBudget)
				r.leaveGroup(leaveCtx, cl, member, true)
				cancelLeave()
			}
		}
	}
	if shutdownCtx.Err() != nil {
		cancelClient()
	}
	r.stopPartitions(shutdownCtx, r.partitionIDs(), commit) // any assigned while leaving
	r.serveRepositions()                                    // release waiters
	r.closeClient(ctx, cl, cancelClient)
}

// closeClient closes cl; if that takes longer than closeBudget (franz-go
// waits for its group loop), it cancels the client's context, and leaves
// the client behind if even that does not end it.
func (r *Runner) closeClient(ctx context.Context, cl *kgo.Client, cancelClient context.CancelFunc) {
	closed := make(chan struct{})
	go func() { cl.Close(); close(closed) }()
	t := time.NewTimer(closeBudget)
	defer t.Stop()
	select {
	case <-closed:
		return
	case <-t.C:
	}
	cancelClient()
	t.Reset(closeBudget)
	select {
	case <-closed:
	case <-t.C:
		r.cfg.Logger.ErrorContext(ctx, "the Kafka client did not close; leaving it behind", "group", r.cfg.Group)
	}
}

// leaveWithOwnClient sends the LeaveGroup for member through a new client
// (the runner's has its context cancelled), within leaveBudget.
func (r *Runner) leaveWithOwnClient(ctx context.Context, member string) {
	if member == "" {
		return
	}
	leaveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaveBudget)
	defer cancel()
	opts := append([]kgo.Opt{kgo.SeedBrokers(r.cfg.Seeds...), kgo.ClientID(clientID(r.cfg.ReplicaID))}, r.cfg.ClientOpts...)
	opts = append(opts, kgo.WithContext(leaveCtx))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		r.cfg.Logger.WarnContext(ctx, "leaving the group: client", "group", r.cfg.Group, "err", err)
		return
	}
	defer cl.Close()
	r.leaveGroup(leaveCtx, cl, member, r.cfg.InstanceID != "")
}

// leaveGroup removes member from the group with a request of its own.
//
// For a static member (static) this is what a graceful shutdown needs
// beyond franz-go's LeaveGroup, which keeps a static member in the group
// (classic: no request; KIP-848: a temporary leave) so that a restart with
// the same ID regains its partitions; but a replica that stops gracefully
// is usually not coming back under that ID (a rollout or a scale-down
// gives pods new names), and its partitions would sit idle until its
// session expired. A crash (SIGKILL, OOM) sends nothing, so a restarted
// pod still regains its partitions without a rebalance.
func (r *Runner) leaveGroup(ctx context.Context, cl *kgo.Client, member string, static bool) {
	if member == "" {
		return
	}
	var instanceID *string
	if static {
		id := r.cfg.InstanceID
		instanceID = &id
	}
	var err error
	if r.cfg.ServerSideBalancer {
		req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		req.Group, req.MemberID, req.InstanceID, req.MemberEpoch = r.cfg.Group, member, instanceID, -1
		var resp *kmsg.ConsumerGroupHeartbeatResponse
		if resp, err = req.RequestWith(ctx, cl); err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
	} else {
		reason := "replica shutting down"
		req := kmsg.NewPtrLeaveGroupRequest()
		req.Group = r.cfg.Group
		req.MemberID = member // LeaveGroup v0-2 (before Kafka 2.4)
		m := kmsg.NewLeaveGroupRequestMember()
		m.MemberID, m.InstanceID, m.Reason = member, instanceID, &reason
		req.Members = append(req.Members, m)
		var resp *kmsg.LeaveGroupResponse
		if resp, err = req.RequestWith(ctx, cl); err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
			for _, m := range resp.Members {
				err = errors.Join(err, kerr.ErrorForCode(m.ErrorCode))
			}
		}
	}
	// Already gone (the session expired, a new incarnation took the ID):
	// the goal of leaving holds.
	if errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.FencedInstanceID) {
		r.cfg.Logger.Info("leaving the group: already gone", "group", r.cfg.Group, "instance_id", r.cfg.InstanceID, "member_id", member, "err", err)
	} else if err != nil {
		r.cfg.Logger.Warn("leaving the group; this replica's partitions move when its session expires",
			"group", r.cfg.Group, "instance_id", r.cfg.InstanceID, "member_id", member, "err", err)
	}
}
