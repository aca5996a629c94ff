package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
)

func newParkedCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{Use: "parked", Short: "List, retry or skip parked streams"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list PROJECTION",
		Short: "List the parked streams: where each stopped and why",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.connect(cmd.Context(), args[0], false)
			if err != nil {
				return err
			}
			defer c.close()
			parked, err := c.store.Parked(cmd.Context(), c.name)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return o.printJSON(parked)
			}
			w := tabwriter.NewWriter(o.stdout, 0, 4, 2, ' ', 0)
			defer w.Flush()
			printParked(w, parked)
			return nil
		},
	})
	for _, action := range []string{framework.ResolveRetry, framework.ResolveSkip} {
		var reason string
		short := "Apply the event the stream stopped at again"
		if action == framework.ResolveSkip {
			short = "Never apply the event the stream stopped at (a gap: accept the missing events); recorded with who, when and why"
		}
		sub := &cobra.Command{
			Use:   action + " PROJECTION STREAM",
			Short: short,
			Args:  exactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := o.connect(cmd.Context(), args[0], false)
				if err != nil {
					return err
				}
				defer c.close()
				err = kafkastore.ResolveParked(cmd.Context(), c.store, c.store, c.name, framework.Resolution{
					StreamID: args[1], Action: action, By: o.by, Reason: reason,
				})
				if errors.Is(err, kafkastore.ErrNotParked) {
					return &exitError{code: exitNotFound, err: err}
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(o.stdout, "%s: %s of %s recorded (by %s); the replica owning it resumes it shortly\n", args[1], action, c.name, o.by)
				return nil
			},
		}
		sub.Flags().StringVar(&reason, "reason", "", "why (required for skip)")
		cmd.AddCommand(sub)
	}
	return cmd
}

func printParked(w io.Writer, parked []framework.ParkedStream) {
	fmt.Fprintln(w, "STREAM\tSEQUENCE\tREASON\tPARKED AT\tPOSITION\tERROR")
	for _, p := range parked {
		pos := "-"
		if p.Position != nil {
			pos = p.Position.String()
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", p.StreamID, p.Sequence, p.Reason, p.ParkedAt.Format(time.RFC3339), pos, p.Error)
	}
}
