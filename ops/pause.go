package ops

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Pause has the replicas of projection finish their batch, store their
// cursors, commit and leave the consumer group, until resumed; it survives
// replica restarts. by and reason are recorded. A retired version is
// refused.
func (c *Client) Pause(ctx context.Context, projection, by, reason string) (Projection, error) {
	return c.setPaused(ctx, projection, true, by, reason)
}

// Resume lets the replicas of projection rejoin the group and consume. It
// is refused while a replay is in progress (finish it with
// [Client.ResumeReplay] or [Client.AbortReplay]).
func (c *Client) Resume(ctx context.Context, projection, by, reason string) (Projection, error) {
	return c.setPaused(ctx, projection, false, by, reason)
}

func (c *Client) setPaused(ctx context.Context, projection string, pause bool, by, reason string) (Projection, error) {
	p, err := c.Projection(ctx, projection)
	if err != nil {
		return p, err
	}
	if err := p.Writable(); err != nil {
		return p, err
	}
	if ctl, err := c.cfg.Admin.Control(ctx, p.Name); err == nil && ctl.Replay != nil && ReplayInProgress(ctl.Replay.Phase) && !pause {
		return p, refused("replay %s of %s is in phase %s: finish it with replay --resume or --abort", ctl.Replay.ID, p.Name, ctl.Replay.Phase)
	}
	return p, c.cfg.Admin.SetPaused(ctx, p.Name, pause, by, reason)
}

// WaitEmpty waits until group has no members, or is refused after timeout
// naming the members still present.
func (c *Client) WaitEmpty(ctx context.Context, group string, timeout time.Duration) error {
	adm, err := c.kafka("waiting for the group")
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		described, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return fmt.Errorf("describe group %s: %w", group, err)
		}
		g := described[group]
		if len(g.Members) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var names []string
			for _, m := range g.Members {
				names = append(names, fmt.Sprintf("%s (%s, %s)", m.ClientID, m.ClientHost, m.MemberID))
			}
			return refused("group %s did not empty within %s; members still present: %s", group, timeout, strings.Join(names, "; "))
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// WaitMembers waits until group has a member, or is refused after
// timeout.
func (c *Client) WaitMembers(ctx context.Context, group string, timeout time.Duration) error {
	adm, err := c.kafka("waiting for the group")
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		described, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return err
		}
		if len(described[group].Members) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return refused("no replica joined group %s within %s", group, timeout)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}
