package memcontrol_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/controlplane/controltest"
	"github.com/projector-dev/projector/controlplane/memcontrol"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/checkpointtest"
)

func TestControlPlaneConformance(t *testing.T) {
	controltest.Run(t, func(t *testing.T) controltest.Store { return memcontrol.NewStore() })
}

func TestCheckpointConformance(t *testing.T) {
	checkpointtest.Run(t, func(t *testing.T) framework.ProjectionCheckpointStore {
		return nameMapper{memcontrol.NewStore()}
	})
}

// nameMapper maps the checkpoint suite's free-form names (which include
// "odd {name}:*") onto valid projection names, as redischeckpoint's tests
// do: the Store accepts only [A-Za-z0-9._-].
type nameMapper struct{ *memcontrol.Store }

func mapName(name string) string {
	var b strings.Builder
	for _, r := range name {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "_%x", r)
		}
	}
	return b.String()
}

func (m nameMapper) Load(ctx context.Context, name string) (*framework.GlobalProjectionCheckpoint, error) {
	return m.Store.Load(ctx, mapName(name))
}
func (m nameMapper) Save(ctx context.Context, name string, cp *framework.GlobalProjectionCheckpoint) error {
	return m.Store.Save(ctx, mapName(name), cp)
}
func (m nameMapper) Advance(ctx context.Context, name string, c map[string]uint64) error {
	return m.Store.Advance(ctx, mapName(name), c)
}
func (m nameMapper) Delete(ctx context.Context, name string) error {
	return m.Store.Delete(ctx, mapName(name))
}

func TestFencedErrorNamesTheFences(t *testing.T) {
	s := memcontrol.NewStore()
	ctx := context.Background()
	old, err := s.AcquireFence(ctx, "billing", 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireFence(ctx, "billing", 3); err != nil {
		t.Fatal(err)
	}
	err = s.Advance(controlplane.WithFence(ctx, old), "billing", map[string]uint64{"process/t/a": 1})
	fe, ok := errors.AsType[*memcontrol.FencedError](err)
	if !ok || !errors.Is(err, controlplane.ErrFenced) || fe.Held != old || fe.CurrentToken != old.Token+1 {
		t.Fatalf("stale Advance = %v; want a FencedError", err)
	}
	for _, part := range []string{"billing", "partition 3", "token 1", "token 2"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("%q does not name %s", err, part)
		}
	}
	if err := s.CheckFence(ctx, old); !errors.Is(err, controlplane.ErrFenced) {
		t.Errorf("CheckFence of the old fence = %v", err)
	}
}

func TestInvalidNamesAreRefused(t *testing.T) {
	s := memcontrol.NewStore()
	ctx := context.Background()
	if _, err := s.AcquireFence(ctx, "a b", 0); !errors.Is(err, framework.ErrInvalidProjectionName) {
		t.Errorf("AcquireFence of an invalid name = %v", err)
	}
	if err := s.Advance(ctx, "billing", map[string]uint64{"": 1}); err == nil {
		t.Error("Advance of an empty stream ID = nil")
	}
}

func TestCheckServerWarns(t *testing.T) {
	warnings, err := memcontrol.NewStore().CheckServer(context.Background())
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "memory") {
		t.Errorf("CheckServer = %q, %v", warnings, err)
	}
}

func TestDropVersionLeavesATombstone(t *testing.T) {
	s := memcontrol.NewStore()
	ctx := context.Background()
	if _, err := s.StartRebuild(ctx, "billing", controlplane.Rebuild{By: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DropVersion(ctx, "billing", 0); err == nil {
		t.Error("DropVersion of the live version = nil")
	}
	if _, err := s.SwitchLive(ctx, "billing", 1, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.DropVersion(ctx, "billing", 0); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Versions(ctx, "billing"); len(v.Retiring) != 0 {
		t.Errorf("retiring after the drop = %+v", v.Retiring)
	}
	if _, err := s.AcquireFence(ctx, "billing", 0); !errors.Is(err, controlplane.ErrVersionClosed) {
		t.Errorf("AcquireFence of a dropped version = %v, want ErrVersionClosed", err)
	}
	if live, _ := s.Live(ctx, "billing"); live != "billing@v1" {
		t.Errorf("Live = %q", live)
	}
	if err := s.UpdateRebuild(ctx, "billing", 1, "", true); !errors.Is(err, memcontrol.ErrNoRebuild) {
		t.Errorf("UpdateRebuild without a rebuild = %v", err)
	}
}
