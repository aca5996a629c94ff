package controltest

import (
	"slices"
	"testing"
	"time"

	"github.com/projector-dev/projector/controlplane"
)

var parkingCases = []testCase{
	{"ParkThenParkedListsIt", testParkAndList},
	{"UpdateParkedOnlyAtTheSamePark", testUpdateParked},
	{"RequestResolutionWhileParkedAndNonePending", testRequestResolution},
	{"UnparkAppendsToTheAuditNewestFirst", testUnparkAudit},
	{"UnparkOfAnotherParkKeepsTheStream", testUnparkOfAnotherPark},
	{"UnparkCarriesOutOnlyThePendingRequest", testUnparkPendingRequest},
	{"ParkAgainDropsTheRequestAndAuditsAPartialResume", testParkAgain},
}

func testParkAndList(t *testing.T, s Store) {
	ctx := ctxFor(t)
	if list := parked(t, s, proj); len(list) != 0 {
		t.Fatalf("parked of a new projection = %s", asJSON(list))
	}
	b := parkAt("process/t/b", 2)
	a := parkAt("process/t/a", 1<<63+5) // beyond 2^53: sequences are not doubles
	a.Reason, a.HeldFrom = controlplane.ParkGap, new(int64(3))
	must(t, s.Park(ctx, proj, b))
	must(t, s.Park(ctx, proj, a))
	list := parked(t, s, proj)
	if !slices.Equal(ids(list), []string{"process/t/a", "process/t/b"}) {
		t.Fatalf("Parked lists %v, want a and b by stream ID", ids(list))
	}
	if !sameJSON(t, list[0], a) || !sameJSON(t, list[1], b) {
		t.Errorf("Parked = %s; want %s and %s", asJSON(list), asJSON(a), asJSON(b))
	}
	if list := parked(t, s, other); len(list) != 0 {
		t.Errorf("projection %s sees parks of %s: %s", other, proj, asJSON(list))
	}
	// A resolving given to Park is not a request.
	c := parkAt("process/t/c", 1)
	c.Resolving = &controlplane.Resolution{StreamID: c.StreamID, Action: controlplane.ResolveRetry, By: "w", Parked: c}
	must(t, s.Park(ctx, proj, c))
	for _, p := range parked(t, s, proj) {
		if p.Resolving != nil {
			t.Errorf("%s has a request %s after Park", p.StreamID, asJSON(p.Resolving))
		}
	}
}

func testUpdateParked(t *testing.T, s Store) {
	ctx := ctxFor(t)
	p := parkAt("process/t/a", 7)
	must(t, s.Park(ctx, proj, p))
	p.DeadLetter = controlplane.DeadLetterCopied
	if ok, err := s.UpdateParked(ctx, proj, p); !ok || err != nil {
		t.Fatalf("UpdateParked of the park = %v, %v; want true", ok, err)
	}
	if list := parked(t, s, proj); len(list) != 1 || list[0].DeadLetter != controlplane.DeadLetterCopied {
		t.Errorf("parked after the update = %s", asJSON(list))
	}
	stale := p
	stale.ParkedAt = p.ParkedAt.Add(-time.Second)
	stale.DeadLetter = controlplane.DeadLetterReference
	if ok, err := s.UpdateParked(ctx, proj, stale); ok || err != nil {
		t.Errorf("UpdateParked of another ParkedAt = %v, %v; want false", ok, err)
	}
	stale = p
	stale.Sequence = 8
	if ok, err := s.UpdateParked(ctx, proj, stale); ok || err != nil {
		t.Errorf("UpdateParked of another sequence = %v, %v; want false", ok, err)
	}
	if list := parked(t, s, proj); len(list) != 1 || !sameJSON(t, list[0], p) {
		t.Errorf("parked after refused updates = %s, want %s", asJSON(list), asJSON(p))
	}
	// Resolved: an update must not park it again.
	if ok, err := s.Unpark(ctx, proj, controlplane.Resolution{StreamID: p.StreamID, Action: controlplane.ResolveRetry, By: "admin", Parked: p}); !ok || err != nil {
		t.Fatalf("Unpark = %v, %v", ok, err)
	}
	if ok, err := s.UpdateParked(ctx, proj, p); ok || err != nil {
		t.Errorf("UpdateParked of a resolved stream = %v, %v; want false", ok, err)
	}
	if list := parked(t, s, proj); len(list) != 0 {
		t.Errorf("the update parked a resolved stream again: %s", asJSON(list))
	}
}

func testRequestResolution(t *testing.T, s Store) {
	ctx := ctxFor(t)
	p := parkAt("process/t/a", 7)
	must(t, s.Park(ctx, proj, p))
	res := controlplane.Resolution{StreamID: p.StreamID, Action: controlplane.ResolveSkip, By: "admin", Reason: "bogus", Force: true, Parked: p}
	wrong := res
	wrong.Parked.Sequence = 6
	if ok, err := s.RequestResolution(ctx, proj, wrong); ok || err != nil {
		t.Errorf("a request for another sequence = %v, %v; want false", ok, err)
	}
	wrong = res
	wrong.Parked.ParkedAt = p.ParkedAt.Add(time.Millisecond)
	if ok, err := s.RequestResolution(ctx, proj, wrong); ok || err != nil {
		t.Errorf("a request for another ParkedAt = %v, %v; want false", ok, err)
	}
	wrong = res
	wrong.StreamID, wrong.Parked.StreamID = "process/t/none", "process/t/none"
	if ok, err := s.RequestResolution(ctx, proj, wrong); ok || err != nil {
		t.Errorf("a request for a stream not parked = %v, %v; want false", ok, err)
	}
	if list := parked(t, s, proj); len(list) != 1 || list[0].Resolving != nil {
		t.Fatalf("refused requests were recorded: %s", asJSON(list))
	}
	if ok, err := s.RequestResolution(ctx, proj, res); !ok || err != nil {
		t.Fatalf("RequestResolution = %v, %v; want true", ok, err)
	}
	second := res
	second.Action, second.By = controlplane.ResolveRetry, "someone else"
	if ok, err := s.RequestResolution(ctx, proj, second); ok || err != nil {
		t.Errorf("a second request while one is pending = %v, %v; want false", ok, err)
	}
	list := parked(t, s, proj)
	if len(list) != 1 || list[0].Resolving == nil {
		t.Fatalf("parked = %s; want the request attached", asJSON(list))
	}
	got := list[0].Resolving
	if got.By != "admin" || got.Action != controlplane.ResolveSkip || !got.Force || got.At.IsZero() || got.Parked.Sequence != 7 {
		t.Errorf("the request = %s; want the first one, with At set", asJSON(got))
	}
	// The worker's update of the park keeps the request.
	p.DeadLetter = controlplane.DeadLetterCopied
	if ok, err := s.UpdateParked(ctx, proj, p); !ok || err != nil {
		t.Fatalf("UpdateParked = %v, %v", ok, err)
	}
	if list := parked(t, s, proj); len(list) != 1 || list[0].Resolving == nil || list[0].Resolving.By != "admin" || list[0].DeadLetter != controlplane.DeadLetterCopied {
		t.Errorf("parked after the update = %s; want the update with the request kept", asJSON(list))
	}
	if r := resolutions(t, s, proj, 10); len(r) != 0 {
		t.Errorf("a request went to the audit before it was carried out: %s", asJSON(r))
	}
}

func testUnparkAudit(t *testing.T, s Store) {
	ctx := ctxFor(t)
	a, b := parkAt("process/t/a", 1), parkAt("process/t/b", 2)
	must(t, s.Park(ctx, proj, a))
	must(t, s.Park(ctx, proj, b))
	ra := controlplane.Resolution{StreamID: a.StreamID, Action: controlplane.ResolveRetry, By: "admin", Reason: "fixed", Parked: a,
		Done: stamp(), Result: "applied 1 events"}
	if ok, err := s.Unpark(ctx, proj, ra); !ok || err != nil {
		t.Fatalf("Unpark(a) = %v, %v; want true", ok, err)
	}
	rb := controlplane.Resolution{StreamID: b.StreamID, Action: controlplane.ResolveSkip, By: "admin", Reason: "bogus", Parked: b}
	if ok, err := s.Unpark(ctx, proj, rb); !ok || err != nil {
		t.Fatalf("Unpark(b) = %v, %v; want true", ok, err)
	}
	if list := parked(t, s, proj); len(list) != 0 {
		t.Errorf("parked after both unparked = %s", asJSON(list))
	}
	audit := resolutions(t, s, proj, 10)
	if len(audit) != 2 || audit[0].StreamID != b.StreamID || audit[1].StreamID != a.StreamID {
		t.Fatalf("resolutions = %s; want b then a (newest first)", asJSON(audit))
	}
	if audit[1].Result != "applied 1 events" || audit[1].Reason != "fixed" || !sameJSON(t, audit[1].Parked, a) || audit[0].At.IsZero() {
		t.Errorf("audit entries = %s; want what Unpark was given (At set when zero)", asJSON(audit))
	}
	if one := resolutions(t, s, proj, 1); len(one) != 1 || one[0].StreamID != b.StreamID {
		t.Errorf("resolutions limited to 1 = %s; want b", asJSON(one))
	}
	// Unparked already: nothing more happens.
	if ok, err := s.Unpark(ctx, proj, ra); ok || err != nil {
		t.Errorf("a second Unpark = %v, %v; want false", ok, err)
	}
	if audit := resolutions(t, s, proj, 10); len(audit) != 2 {
		t.Errorf("a refused Unpark went to the audit: %s", asJSON(audit))
	}
}

func testUnparkOfAnotherPark(t *testing.T, s Store) {
	ctx := ctxFor(t)
	p := parkAt("process/t/a", 5)
	must(t, s.Park(ctx, proj, p))
	earlier := p
	earlier.ParkedAt = p.ParkedAt.Add(-time.Minute)
	if ok, err := s.Unpark(ctx, proj, controlplane.Resolution{StreamID: p.StreamID, Action: controlplane.ResolveRetry, By: "w", Parked: earlier}); ok || err != nil {
		t.Errorf("Unpark of a park at another ParkedAt = %v, %v; want false", ok, err)
	}
	seq := p
	seq.Sequence = 4
	if ok, err := s.Unpark(ctx, proj, controlplane.Resolution{StreamID: p.StreamID, Action: controlplane.ResolveRetry, By: "w", Parked: seq}); ok || err != nil {
		t.Errorf("Unpark of a park at another sequence = %v, %v; want false", ok, err)
	}
	if list := parked(t, s, proj); len(list) != 1 || !sameJSON(t, list[0], p) {
		t.Errorf("parked = %s; want the park kept", asJSON(list))
	}
	if audit := resolutions(t, s, proj, 10); len(audit) != 0 {
		t.Errorf("refused Unparks went to the audit: %s", asJSON(audit))
	}
}

func testUnparkPendingRequest(t *testing.T, s Store) {
	ctx := ctxFor(t)
	p := parkAt("process/t/a", 5)
	must(t, s.Park(ctx, proj, p))
	req := controlplane.Resolution{StreamID: p.StreamID, Action: controlplane.ResolveRetry, By: "admin", At: stamp(), Parked: p}
	if ok, err := s.RequestResolution(ctx, proj, req); !ok || err != nil {
		t.Fatalf("RequestResolution = %v, %v", ok, err)
	}
	another := req
	another.At = req.At.Add(-time.Second)
	if ok, err := s.Unpark(ctx, proj, another); ok || err != nil {
		t.Errorf("Unpark carrying out another request = %v, %v; want false", ok, err)
	}
	if list := parked(t, s, proj); len(list) != 1 || list[0].Resolving == nil {
		t.Fatalf("parked = %s; want the park and its request kept", asJSON(list))
	}
	done := req
	done.Done, done.Result = stamp(), "applied 2 held events"
	if ok, err := s.Unpark(ctx, proj, done); !ok || err != nil {
		t.Fatalf("Unpark carrying out the request = %v, %v; want true", ok, err)
	}
	if list := parked(t, s, proj); len(list) != 0 {
		t.Errorf("parked = %s, want none", asJSON(list))
	}
	if audit := resolutions(t, s, proj, 10); len(audit) != 1 || audit[0].Result != done.Result || !audit[0].At.Equal(req.At) {
		t.Errorf("resolutions = %s; want the carried-out request", asJSON(audit))
	}
	// A request is gone with its park: the stream may be requested again
	// once parked again.
	p2 := parkAt("process/t/a", 6)
	must(t, s.Park(ctx, proj, p2))
	if ok, err := s.RequestResolution(ctx, proj, controlplane.Resolution{StreamID: p2.StreamID, Action: controlplane.ResolveRetry, By: "admin", Parked: p2}); !ok || err != nil {
		t.Errorf("RequestResolution of a new park = %v, %v; want true", ok, err)
	}
}

func testParkAgain(t *testing.T, s Store) {
	ctx := ctxFor(t)
	p := parkAt("process/t/a", 5)
	must(t, s.Park(ctx, proj, p))
	req := controlplane.Resolution{StreamID: p.StreamID, Action: controlplane.ResolveSkip, By: "admin", Reason: "bogus", Parked: p}
	if ok, err := s.RequestResolution(ctx, proj, req); !ok || err != nil {
		t.Fatalf("RequestResolution = %v, %v", ok, err)
	}
	// The worker's resume applied part of what was held and parked the
	// stream again at a later event.
	again := parkAt("process/t/a", 9)
	again.ParkedAt = p.ParkedAt.Add(time.Second)
	partial := req
	partial.Done, partial.Result = stamp(), "applied 3 events; parked again at sequence 9"
	again.Resolving = &partial
	must(t, s.Park(ctx, proj, again))
	list := parked(t, s, proj)
	again.Resolving = nil
	if len(list) != 1 || list[0].Resolving != nil || !sameJSON(t, list[0], again) {
		t.Fatalf("parked = %s; want the new park %s without the old request", asJSON(list), asJSON(again))
	}
	audit := resolutions(t, s, proj, 10)
	if len(audit) != 1 || audit[0].Result != partial.Result || audit[0].Parked.Sequence != 5 || audit[0].Parked.Resolving != nil {
		t.Errorf("resolutions = %s; want the partial resume of the park at 5", asJSON(audit))
	}
	// The old request no longer unparks anything.
	if ok, err := s.Unpark(ctx, proj, req); ok || err != nil {
		t.Errorf("Unpark of the old park = %v, %v; want false", ok, err)
	}
	// Park without a resolution drops a request too.
	if ok, err := s.RequestResolution(ctx, proj, controlplane.Resolution{StreamID: again.StreamID, Action: controlplane.ResolveRetry, By: "admin", Parked: again}); !ok || err != nil {
		t.Fatalf("RequestResolution of the new park = %v, %v", ok, err)
	}
	third := parkAt("process/t/a", 9)
	third.ParkedAt = again.ParkedAt.Add(time.Second)
	must(t, s.Park(ctx, proj, third))
	if list := parked(t, s, proj); len(list) != 1 || list[0].Resolving != nil {
		t.Errorf("parked = %s; want the request dropped by the new park", asJSON(list))
	}
	if audit := resolutions(t, s, proj, 10); len(audit) != 1 {
		t.Errorf("a dropped request went to the audit: %s", asJSON(audit))
	}
}
