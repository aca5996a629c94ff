package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newPauseCommand(o *options, pause bool) *cobra.Command {
	var reason string
	var wait bool
	var timeout time.Duration
	use, short := "resume PROJECTION", "Let the replicas rejoin the group and consume"
	if pause {
		use, short = "pause PROJECTION", "Have the replicas finish their batch, commit and leave the group until resumed (survives restarts)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.connect(cmd.Context(), args[0], wait)
			if err != nil {
				return err
			}
			defer c.close()
			ctx := cmd.Context()
			if err := c.writable(); err != nil {
				return err
			}
			if ctl, err := c.store.Control(ctx, c.name); err == nil && ctl.Replay != nil && replayInProgress(ctl.Replay.Phase) && !pause {
				return refused("replay %s of %s is in phase %s: finish it with replay --resume or --abort", ctl.Replay.ID, c.name, ctl.Replay.Phase)
			}
			if err := c.store.SetPaused(ctx, c.name, pause, o.by, reason); err != nil {
				return err
			}
			state := "resumed"
			if pause {
				state = "paused"
			}
			fmt.Fprintf(o.stdout, "%s %s\n", safeText(c.name), state)
			if !wait {
				return nil
			}
			if pause {
				return c.waitEmpty(ctx, timeout)
			}
			return c.waitMembers(ctx, timeout)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the pause")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the group is empty (pause) or has members (resume)")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long --wait waits")
	return cmd
}

func (c *conn) waitMembers(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		described, err := c.admin.DescribeGroups(ctx, c.group)
		if err != nil {
			return err
		}
		if len(described[c.group].Members) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return refused("no replica joined group %s within %s", c.group, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
