package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/ops"
)

func newParkedCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{Use: "parked", Short: "List, retry or skip parked streams"}
	cmd.AddCommand(&cobra.Command{
		Use:     "list PROJECTION",
		Example: "  projectorctl parked list billing\n  projectorctl parked list billing -o json",
		Short:   "List the parked streams: where each stopped and why",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.connect(cmd.Context(), args[0], false)
			if err != nil {
				return err
			}
			defer c.close()
			parked, err := c.ops.Parked(cmd.Context(), c.ref)
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
	for _, action := range []string{controlplane.ResolveRetry, controlplane.ResolveSkip} {
		var reason string
		var force, drop bool
		short := "Apply the event the stream stopped at again, then the events held behind it"
		if action == controlplane.ResolveSkip {
			short = "Never apply the event the stream stopped at (a gap: accept the missing events), then apply the events held behind it; recorded with who, when and why"
		}
		sub := &cobra.Command{
			Use: action + " PROJECTION STREAM",
			Example: map[string]string{
				controlplane.ResolveRetry: "  projectorctl parked retry billing process/acme/51238696781 --reason 'fixed in 1.4.2'",
				controlplane.ResolveSkip:  "  projectorctl parked skip billing process/acme/51238696781 --reason 'event 7 was never written (incident 42)'\n  projectorctl parked skip billing process/acme/51238696781 --drop --reason 'bogus sequence from the legacy importer'",
			}[action],
			Short: short,
			Args:  exactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				if action == controlplane.ResolveSkip && strings.TrimSpace(reason) == "" {
					return usage("parked skip needs --reason: it is recorded with the skip")
				}
				// A skip is checked against the stream's records in Kafka.
				c, err := o.connect(cmd.Context(), args[0], action == controlplane.ResolveSkip && !force && !drop)
				if err != nil {
					return err
				}
				defer c.close()
				p, err := c.ops.Resolve(cmd.Context(), ops.ResolveRequest{
					Projection: c.ref, StreamID: args[1], Action: action, By: o.by, Reason: reason, Force: force, Drop: drop,
				})
				if err != nil {
					return err
				}
				fmt.Fprintf(o.stdout, "%s: %s of %s recorded (by %s); the replica owning its partition applies the held events, then unparks it (parked list shows it until then)\n", safeText(args[1]), action, safeText(c.name), safeText(o.by))
				if p.Reason == controlplane.ParkMalformed && p.Position != nil {
					fmt.Fprintf(o.stdout, "the parked record (partition %d, offset %d) does not decode into an event: it is passed over, never applied (its copy is in the dead-letter topic)\n", p.Position.Partition, p.Position.Offset)
				}
				return nil
			},
		}
		sub.Flags().StringVar(&reason, "reason", "", "why (required for skip)")
		if action == controlplane.ResolveSkip {
			sub.Flags().BoolVar(&force, "force", false, "skip a gap even to a sequence beyond what the stream shows in Kafka")
			sub.Flags().BoolVar(&drop, "drop", false, "for a gap: pass over the parked record (a bogus sequence) and keep the cursor, instead of accepting the missing events")
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

func printParked(w io.Writer, parked []controlplane.ParkedStream) {
	fmt.Fprintln(w, "STREAM\tSEQUENCE\tREASON\tPARKED AT\tPOSITION\tRESOLUTION\tERROR")
	for _, p := range parked {
		pos := "-"
		if p.Position != nil {
			pos = p.Position.String()
		}
		res := "-"
		if r := p.Resolving; r != nil {
			// Recorded, not carried out yet: the owner of the partition
			// does it (shortly, or when it next owns the partition).
			res = fmt.Sprintf("%s requested by %s at %s", r.Action, safeText(r.By), r.At.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", safeText(p.StreamID), p.Sequence, safeText(p.Reason), p.ParkedAt.Format(time.RFC3339), pos, res, safeText(p.Error))
	}
}
