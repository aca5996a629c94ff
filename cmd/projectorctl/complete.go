package main

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/projector-dev/projector/redischeckpoint"
	"github.com/projector-dev/projector/worker"
)

// completeProjection completes a PROJECTION argument with the names of the
// projections that have state in Redis (their checkpoints), as kubectl
// completes resource names. Nothing when Redis is not configured or does
// not answer within two seconds.
func completeProjection(o *options) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		_ = o.withStore(cmd.Context(), func(ctx context.Context, s *redischeckpoint.Store) error {
			names, err := s.Names(ctx)
			for _, n := range names {
				if strings.HasPrefix(n, toComplete) {
					out = append(out, n)
				}
			}
			return err
		})
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeParked completes "PROJECTION STREAM": the projection, then the
// streams parked in it.
func completeParked(o *options) cobra.CompletionFunc {
	projections := completeProjection(o)
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return projections(cmd, args, toComplete)
		}
		if len(args) > 1 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		_ = o.withStore(cmd.Context(), func(ctx context.Context, s *redischeckpoint.Store) error {
			live, err := s.Live(ctx, args[0])
			if err != nil {
				return err
			}
			parked, err := s.Parked(ctx, live)
			for _, p := range parked {
				if strings.HasPrefix(p.StreamID, toComplete) {
					out = append(out, cobra.CompletionWithDesc(p.StreamID, p.Reason+" at sequence "+strconv.FormatUint(p.Sequence, 10)))
				}
			}
			return err
		})
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// withStore runs fn with a Store on the configured Redis, bounded to two
// seconds: completion must never hang a shell.
func (o *options) withStore(ctx context.Context, fn func(context.Context, *redischeckpoint.Store) error) error {
	if err := o.load(); err != nil || !o.cfg.HasRedis() {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rc, err := redischeckpoint.NewClient(worker.RedisClientConfig(o.cfg))
	if err != nil {
		return err
	}
	defer rc.Close()
	s, err := redischeckpoint.New(redischeckpoint.Config{Client: rc, Namespace: o.namespace})
	if err != nil {
		return err
	}
	return fn(ctx, s)
}
