// Package controltest is the conformance suite of control-plane backends:
// a [Store] that implements every interface of package controlplane a
// runner and the admin tools use. Every backend runs it in its tests:
//
//	func TestControlPlaneConformance(t *testing.T) {
//		controltest.Run(t, func(t *testing.T) controltest.Store {
//			return newStoreForTest(t)
//		})
//	}
//
// The factory is called once per case and must return a store that no
// other case sees (an empty one, or one on a namespace of its own); cases
// run in parallel. The suite checks the framework.ProjectionCheckpointStore
// methods only as far as the control plane relies on them: run
// framework/checkpointtest as well.
//
// The suite asserts the behaviour of redischeckpoint.Store, the reference
// backend. It compares errors with errors.Is against the sentinels of
// package controlplane ([controlplane.ErrFenced], ErrResetPending,
// ErrVersionClosed, ErrResetClaimLost); where the control plane has no
// sentinel (a second rebuild, a switch without a rebuild) it only checks
// that an error is returned.
package controltest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

// Store is a complete control-plane backend.
type Store interface {
	controlplane.CheckpointStore
	controlplane.Fencer
	controlplane.ProgressStore
	controlplane.HeadStore
	controlplane.ParkStore
	controlplane.ControlStore
	controlplane.Admin
}

// NewStore returns a store that only the calling test uses.
type NewStore func(t *testing.T) Store

// Options adapts the suite to a backend's test setup.
type Options struct {
	// FrozenClock says that the backend's clock does not run by itself
	// (an in-process fake such as miniredis, whose keys expire only when
	// the test moves its clock): the cases that wait for a ttl to run out
	// are skipped.
	FrozenClock bool
}

// Run runs every conformance case against stores made by newStore, each in
// its own parallel subtest.
func Run(t *testing.T, newStore NewStore) {
	t.Helper()
	RunWith(t, newStore, Options{})
}

// RunWith is [Run] with options.
func RunWith(t *testing.T, newStore NewStore, opts Options) {
	t.Helper()
	groups := []struct {
		name  string
		cases []testCase
	}{
		{"Fencing", fencingCases},
		{"Progress", progressCases},
		{"Parking", parkingCases},
		{"Control", controlCases},
		{"ResetClaims", claimCases},
		{"Replicas", replicaCases},
		{"Versions", versionCases},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					if opts.FrozenClock && clockCases[g.name+"/"+c.name] {
						t.Skip("waits for a ttl to run out; the backend's clock is frozen (Options.FrozenClock)")
					}
					c.fn(t, newStore(t))
				})
			}
		})
	}
}

type testCase struct {
	name string
	fn   func(t *testing.T, s Store)
}

// clockCases are the cases that wait for the backend's clock to run out a
// ttl.
var clockCases = map[string]bool{"ResetClaims/ClaimExpiresAfterItsTTL": true}

// proj is the projection most cases use; other is a second one.
const (
	proj  = "billing"
	other = "audit"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func acquire(t *testing.T, s Store, projection string, partition int32) (controlplane.Fence, context.Context) {
	t.Helper()
	ctx := ctxFor(t)
	f, err := s.AcquireFence(ctx, projection, partition)
	if err != nil {
		t.Fatalf("AcquireFence(%s, %d): %v", projection, partition, err)
	}
	return f, controlplane.WithFence(ctx, f)
}

func cursors(t *testing.T, s Store, projection string, ids ...string) map[string]uint64 {
	t.Helper()
	c, err := s.Cursors(ctxFor(t), projection, ids)
	if err != nil {
		t.Fatalf("Cursors(%s): %v", projection, err)
	}
	return c
}

func progress(t *testing.T, s Store, projection string, partition int32) controlplane.PartitionProgress {
	t.Helper()
	pr, err := s.Progress(ctxFor(t), projection, partition)
	if err != nil {
		t.Fatalf("Progress(%s, %d): %v", projection, partition, err)
	}
	return pr
}

func parked(t *testing.T, s Store, projection string) []controlplane.ParkedStream {
	t.Helper()
	list, err := s.Parked(ctxFor(t), projection)
	if err != nil {
		t.Fatalf("Parked(%s): %v", projection, err)
	}
	return list
}

func resolutions(t *testing.T, s Store, projection string, limit int) []controlplane.Resolution {
	t.Helper()
	list, err := s.Resolutions(ctxFor(t), projection, limit)
	if err != nil {
		t.Fatalf("Resolutions(%s): %v", projection, err)
	}
	return list
}

func control(t *testing.T, s Store, projection string) controlplane.Control {
	t.Helper()
	c, err := s.Control(ctxFor(t), projection)
	if err != nil {
		t.Fatalf("Control(%s): %v", projection, err)
	}
	return c
}

func epoch(t *testing.T, s Store, projection string) uint64 {
	t.Helper()
	e, err := s.Epoch(ctxFor(t), projection)
	if err != nil {
		t.Fatalf("Epoch(%s): %v", projection, err)
	}
	return e
}

// sameJSON reports whether got and want encode to the same JSON: the form
// stores keep records in, so that times compare as stored (no monotonic
// reading, same zone).
func sameJSON(t *testing.T, got, want any) bool {
	t.Helper()
	g, err1 := json.Marshal(got)
	w, err2 := json.Marshal(want)
	if err1 != nil || err2 != nil {
		t.Fatalf("encode: %v, %v", err1, err2)
	}
	return string(g) == string(w)
}

func asJSON(v any) string {
	raw, _ := json.Marshal(v)
	return string(raw)
}

// stamp returns a time as stores record it: UTC, without a monotonic
// reading.
func stamp() time.Time { return time.Now().UTC().Round(0) }

func fenced(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, controlplane.ErrFenced) {
		t.Errorf("%s with a stale fence = %v, want an error matching controlplane.ErrFenced", what, err)
	}
}

func parkAt(id string, seq uint64) controlplane.ParkedStream {
	return controlplane.ParkedStream{StreamID: id, Sequence: seq, EventID: "ev-" + id, Type: "Booked", Reason: controlplane.ParkApplyFailed,
		Error: "boom", Attempts: 3, ParkedAt: stamp(), Position: &framework.Position{Partition: 0, Offset: int64(seq) * 10},
		DeadLetter: controlplane.DeadLetterPending}
}

func ids(list []controlplane.ParkedStream) []string {
	out := []string{}
	for _, p := range list {
		out = append(out, p.StreamID)
	}
	return out
}

func replicaIDs(list []controlplane.ReplicaInfo) []string {
	out := []string{}
	for _, r := range list {
		out = append(out, r.ID)
	}
	slices.Sort(out)
	return out
}
