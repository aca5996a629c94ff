package redischeckpoint_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/projector-dev/projector/redischeckpoint"
)

// The key layout carries a version: the first fence records it in the
// projection's meta hash; a Store refuses, with an error naming both
// versions, a projection whose keys a newer Projector wrote.
func TestKeysOfANewerLayoutAreRefused(t *testing.T) {
	s, env, ns := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	meta := ns + ":{billing}:meta"
	if _, err := s.AcquireFence(ctx, "billing", 0); err != nil {
		t.Fatal(err)
	}
	if got, err := env.Client.HGet(ctx, meta, "layout").Result(); err != nil || got != "1" {
		t.Fatalf("layout recorded %q, %v; want 1", got, err)
	}
	if _, err := s.AcquireFence(ctx, "billing", 1); err != nil {
		t.Fatalf("keys of this layout: %v", err)
	}

	if err := env.Client.HSet(ctx, meta, "layout", "2").Err(); err != nil {
		t.Fatal(err)
	}
	tokens, _ := env.Client.HGetAll(ctx, ns+":{billing}:fences").Result()
	_, err := s.AcquireFence(ctx, "billing", 0)
	le, ok := errors.AsType[*redischeckpoint.LayoutError](err)
	if !ok || !errors.Is(err, redischeckpoint.ErrNewerLayout) || le.Found != 2 || le.Projection != "billing" ||
		!strings.Contains(err.Error(), "layout version 2, newer than this version of Projector knows (1)") {
		t.Fatalf("keys of layout 2: %v", err)
	}
	if after, _ := env.Client.HGetAll(ctx, ns+":{billing}:fences").Result(); len(after) != len(tokens) || after["0"] != tokens["0"] {
		t.Errorf("the refused fence wrote a token: %v, before %v", after, tokens)
	}
}
