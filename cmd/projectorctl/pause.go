package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newPauseCommand(o *options, pause bool) *cobra.Command {
	var reason string
	var wait bool
	var timeout time.Duration
	use, short := "resume PROJECTION", "Let the replicas rejoin the group and consume"
	example := "  projectorctl resume billing"
	if pause {
		use, short = "pause PROJECTION", "Have the replicas finish their batch, commit and leave the group until resumed (survives restarts)"
		example = "  projectorctl pause billing --reason 'Redis maintenance' --wait"
	}
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.connect(cmd.Context(), args[0], wait)
			if err != nil {
				return err
			}
			defer c.close()
			ctx := cmd.Context()
			set := c.ops.Resume
			if pause {
				set = c.ops.Pause
			}
			if _, err := set(ctx, c.ref, o.by, reason); err != nil {
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
				return c.ops.WaitEmpty(ctx, c.group, timeout)
			}
			return c.ops.WaitMembers(ctx, c.group, timeout)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the pause")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the group is empty (pause) or has members (resume)")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long --wait waits")
	return cmd
}
