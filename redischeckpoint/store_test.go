package redischeckpoint_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/checkpointtest"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// newStore returns a store on the test binary's Redis (real under
// scripts/test.sh) with a namespace of its own, and the namespace.
func newStore(t *testing.T, cfg redischeckpoint.Config) (*redischeckpoint.Store, *testenv.RedisEnv, string) {
	t.Helper()
	env := testenv.Redis(t)
	ns := env.Prefix(t)
	if cfg.Client == nil {
		cfg.Client = env.Client
	}
	cfg.Namespace = ns
	s, err := redischeckpoint.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, env, ns
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	checkpointtest.Run(t, func(t *testing.T) framework.ProjectionCheckpointStore {
		s, _, _ := newStore(t, redischeckpoint.Config{})
		return nameMapper{s}
	})
}

// TestConformanceMiniredis runs the suite against the in-process fake as
// well: the fast tier's evidence, never the only one.
func TestConformanceMiniredis(t *testing.T) {
	m := miniredis.RunT(t)
	checkpointtest.Run(t, func(t *testing.T) framework.ProjectionCheckpointStore {
		c := redis.NewClient(&redis.Options{Addr: m.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		s, err := redischeckpoint.New(redischeckpoint.Config{Client: c, Namespace: testNamespace(t)})
		if err != nil {
			t.Fatal(err)
		}
		return nameMapper{s}
	})
}

func testNamespace(t *testing.T) string {
	return "t" + strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
}

// nameMapper maps the suite's free-form checkpoint names (which include
// "odd {name}:*") onto valid projection names, since the store accepts only
// [A-Za-z0-9._-].
type nameMapper struct{ *redischeckpoint.Store }

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
func (m nameMapper) Names(ctx context.Context) ([]string, error) {
	names, err := m.Store.Names(ctx)
	// The suite only ever uses names that map to themselves for Names.
	return names, err
}

func TestInvalidProjectionNameIsRejected(t *testing.T) {
	s, _, _ := newStore(t, redischeckpoint.Config{})
	for _, name := range []string{"", "a{b}", "a:b", "a*"} {
		if _, err := s.Load(ctxFor(t), name); !errors.Is(err, framework.ErrInvalidProjectionName) {
			t.Errorf("Load(%q) = %v, want ErrInvalidProjectionName", name, err)
		}
	}
}

// crc16 is Redis Cluster's key hash (XMODEM), to check the slot of keys.
func crc16(data string) uint16 {
	var crc uint16
	for i := 0; i < len(data); i++ {
		crc ^= uint16(data[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func clusterSlot(key string) uint16 {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	return crc16(key) % 16384
}

func TestKeysOfOneProjectionShareASlot(t *testing.T) {
	s, env, ns := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	fence, err := s.AcquireFence(ctx, "billing", 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.NewAtomicProjection("billing", func(e framework.Event, w *redischeckpoint.Writes) error {
		w.HIncrBy(w.Key("totals"), "n", 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(controlplane.WithFence(ctx, fence), framework.Event{StreamID: "process/t/a", Sequence: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BumpEpoch(ctx, "billing"); err != nil {
		t.Fatal(err)
	}
	if err := s.Advance(ctx, "billing", map[string]uint64{"process/t/a": 1}); err != nil {
		t.Fatal(err)
	}
	keys, err := env.Client.Keys(ctx, ns+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{ns + ":{billing}:meta": true, ns + ":{billing}:fences": true, ns + ":{billing}:cursors": true,
		ns + ":{billing}:serials": true, ns + ":{billing}:rm:totals": true}
	// The bump dropped the event IDs with the cursors; the Advance after it wrote no new ones.
	got := map[string]bool{}
	for _, k := range keys {
		got[k] = true
		if clusterSlot(k) != clusterSlot("{billing}") {
			t.Errorf("key %s is in slot %d, not the projection's slot %d", k, clusterSlot(k), clusterSlot("{billing}"))
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("keys = %v, want %v", keys, want)
	}
}

// roundTrips counts what the client sends: one per command outside a
// pipeline, one per pipeline or transaction. The handshake of a new pooled
// connection (HELLO, CLIENT SETINFO) is not counted.
type roundTrips struct{ n atomic.Int64 }

func isHandshake(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "auth":
		return true
	}
	return false
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !isHandshake(cmd) {
			r.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !isHandshake(cmds[0]) {
			r.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

func TestAdvanceAndLookupAreOneRoundTripAndChunked(t *testing.T) {
	env := testenv.Redis(t)
	client := redis.NewClient(&redis.Options{Addr: env.Addr})
	t.Cleanup(func() { _ = client.Close() })
	counter := &roundTrips{}
	client.AddHook(counter)
	s, _, _ := newStore(t, redischeckpoint.Config{Client: client, ChunkSize: 1000})
	ctx := ctxFor(t)
	// Warm the script cache and the connection so that only the calls
	// under test are counted.
	if err := s.Advance(ctx, "p", map[string]uint64{"process/t/warm": 1}); err != nil {
		t.Fatal(err)
	}

	const n = 9_500 // ten chunks, beyond what one Lua unpack takes
	cursors := make(map[string]uint64, n)
	ids := make([]string, 0, n)
	for i := range n {
		id := fmt.Sprintf("process/t/%05d", i)
		cursors[id] = uint64(i + 1)
		ids = append(ids, id)
	}
	before := counter.n.Load()
	if err := s.Advance(ctx, "p", cursors); err != nil {
		t.Fatalf("Advance of %d cursors: %v", n, err)
	}
	if got := counter.n.Load() - before; got != 1 {
		t.Errorf("Advance of %d cursors took %d round trips, want 1", n, got)
	}
	before = counter.n.Load()
	got, err := s.Cursors(ctx, "p", append(ids, "process/t/unknown"))
	if err != nil {
		t.Fatal(err)
	}
	if rt := counter.n.Load() - before; rt != 1 {
		t.Errorf("Cursors of %d streams took %d round trips, want 1", n+1, rt)
	}
	if got["process/t/unknown"] != 0 || len(got) != n+1 {
		t.Errorf("Cursors returned %d entries, unknown stream at %d", len(got), got["process/t/unknown"])
	}
	for id, seq := range cursors {
		if got[id] != seq {
			t.Fatalf("cursor of %s = %d, want %d", id, got[id], seq)
		}
	}
	// Lowering every cursor by one changes nothing.
	lower := make(map[string]uint64, n)
	for id, seq := range cursors {
		lower[id] = seq - 1
	}
	if err := s.Advance(ctx, "p", lower); err != nil {
		t.Fatal(err)
	}
	cp, err := s.Load(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	for id, seq := range cursors {
		if cp.Cursor(id) != seq {
			t.Fatalf("after a lower Advance %s is at %d, want %d", id, cp.Cursor(id), seq)
		}
	}
}

func TestCorruptCursorsNameKeyAndField(t *testing.T) {
	for _, bad := range []string{"abc", "-1", "1.5", "007x"} {
		t.Run(bad, func(t *testing.T) {
			s, env, ns := newStore(t, redischeckpoint.Config{})
			ctx := ctxFor(t)
			key := ns + ":{p}:cursors"
			if err := env.Client.HSet(ctx, key, "process/t/ok", "3", "process/t/bad", bad).Err(); err != nil {
				t.Fatal(err)
			}
			check := func(op string, err error) {
				t.Helper()
				ce, ok := errors.AsType[*redischeckpoint.CorruptCursorError](err)
				if !ok || !errors.Is(err, redischeckpoint.ErrCorruptCursor) {
					t.Fatalf("%s: error = %v, want a CorruptCursorError", op, err)
				}
				if ce.Key != key || ce.Field != "process/t/bad" || ce.Value != bad {
					t.Errorf("%s: %+v, want key %s field process/t/bad value %q", op, ce, key, bad)
				}
				if !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "process/t/bad") {
					t.Errorf("%s: message %q does not name key and field", op, err)
				}
			}
			_, err := s.Load(ctx, "p")
			check("Load", err)
			_, err = s.Cursors(ctx, "p", []string{"process/t/ok", "process/t/bad"})
			check("Cursors", err)
			check("Advance", s.Advance(ctx, "p", map[string]uint64{"process/t/bad": 4}))
		})
	}
}

func TestFencingRaceRejectsEveryStaleWrite(t *testing.T) {
	s, _, _ := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	const stream = "process/t/raced"
	old, err := s.AcquireFence(ctx, "p", 7)
	if err != nil {
		t.Fatal(err)
	}
	oldCtx := controlplane.WithFence(ctx, old)

	var newAcquired atomic.Bool
	var staleAccepted, staleRejected atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// The old holder keeps writing increasing cursors 1, 2, 3, ...
	// — a zombie that has not noticed the rebalance.
	wg.Go(func() {
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			startedAfterTakeover := newAcquired.Load()
			err := s.Advance(oldCtx, "p", map[string]uint64{stream: seq})
			switch {
			case err == nil && startedAfterTakeover:
				staleAccepted.Add(1)
			case err == nil:
			case errors.Is(err, redischeckpoint.ErrFenced):
				staleRejected.Add(1)
				fe, _ := errors.AsType[*redischeckpoint.FencedError](err)
				if fe.Projection != "p" || fe.Partition != 7 || fe.Held.Token != old.Token || fe.CurrentToken <= old.Token {
					t.Errorf("fenced error %+v does not name projection, partition and both tokens", fe)
				}
			default:
				t.Errorf("stale write: %v", err)
				return
			}
		}
	})
	time.Sleep(50 * time.Millisecond) // let the old holder write for a while
	fresh, err := s.AcquireFence(ctx, "p", 7)
	if err != nil {
		t.Fatal(err)
	}
	newAcquired.Store(true)
	if fresh.Token <= old.Token {
		t.Fatalf("new token %d is not above the old %d", fresh.Token, old.Token)
	}
	freshCtx := controlplane.WithFence(ctx, fresh)
	start, err := s.Load(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	base := start.Cursor(stream)
	var last uint64
	for i := uint64(1); i <= 200; i++ {
		last = base + i
		if err := s.Advance(freshCtx, "p", map[string]uint64{stream: last}); err != nil {
			t.Fatalf("the new holder's write: %v", err)
		}
		cp, err := s.Load(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		if cp.Cursor(stream) != last {
			t.Fatalf("cursor is %d after the new holder wrote %d: it regressed or was overwritten", cp.Cursor(stream), last)
		}
	}
	close(stop)
	wg.Wait()
	if staleAccepted.Load() != 0 {
		t.Errorf("%d writes of the stale holder were accepted after the takeover", staleAccepted.Load())
	}
	if staleRejected.Load() == 0 {
		t.Error("the stale holder never tried a write after the takeover; the race did not happen")
	}
	if err := s.CheckFence(ctx, old); !errors.Is(err, redischeckpoint.ErrFenced) {
		t.Errorf("CheckFence(old) = %v, want ErrFenced", err)
	}
	if err := s.CheckFence(ctx, fresh); err != nil {
		t.Errorf("CheckFence(fresh) = %v", err)
	}
	// Every other kind of write is fenced too.
	if err := s.Save(oldCtx, "p", framework.NewGlobalProjectionCheckpoint()); !errors.Is(err, redischeckpoint.ErrFenced) {
		t.Errorf("stale Save = %v, want ErrFenced", err)
	}
	if err := s.Delete(oldCtx, "p"); !errors.Is(err, redischeckpoint.ErrFenced) {
		t.Errorf("stale Delete = %v, want ErrFenced", err)
	}
	if err := s.Park(oldCtx, "p", controlplane.ParkedStream{StreamID: stream, Sequence: 9, Reason: controlplane.ParkApplyFailed}); !errors.Is(err, controlplane.ErrFenced) {
		t.Errorf("stale Park = %v, want ErrFenced", err)
	}
	if parked, _ := s.Parked(ctx, "p"); len(parked) != 0 {
		t.Errorf("a stale holder parked %+v", parked)
	}
	heads := []controlplane.StreamHead{{StreamID: stream, Sequence: last + 1, EventID: "e"}}
	if err := s.AdvancePartition(oldCtx, "p", 7, heads, 99); !errors.Is(err, controlplane.ErrFenced) {
		t.Errorf("stale AdvancePartition = %v, want ErrFenced", err)
	}
	if pr, _ := s.Progress(ctx, "p", 7); pr.Recorded {
		t.Error("a stale holder recorded progress")
	}
	t.Logf("stale holder: %d writes rejected after the takeover", staleRejected.Load())
}

func TestEpochBumpMakesOldCursorsAndFencesStale(t *testing.T) {
	s, _, _ := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	f0, err := s.AcquireFence(ctx, "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	if f0.Epoch != 0 {
		t.Fatalf("first epoch = %d, want 0", f0.Epoch)
	}
	ctx0 := controlplane.WithFence(ctx, f0)
	if err := s.Advance(ctx0, "p", map[string]uint64{"process/t/a": 5}); err != nil {
		t.Fatal(err)
	}
	epoch, err := s.BumpEpoch(ctx, "p")
	if err != nil || epoch != 1 {
		t.Fatalf("BumpEpoch = %d, %v; want 1", epoch, err)
	}
	if got, _ := s.Epoch(ctx, "p"); got != 1 {
		t.Errorf("Epoch = %d, want 1", got)
	}
	cp, err := s.Load(ctx, "p")
	if err != nil || cp.Len() != 0 {
		t.Fatalf("after the bump Load = %v, %v; want no cursors", cp, err)
	}
	err = s.Advance(ctx0, "p", map[string]uint64{"process/t/a": 6})
	fe, ok := errors.AsType[*redischeckpoint.FencedError](err)
	if !ok || fe.CurrentEpoch != 1 || fe.Held.Epoch != 0 {
		t.Fatalf("a write of epoch 0 after the bump = %v, want a FencedError naming epochs 0 and 1", err)
	}
	f1, err := s.AcquireFence(ctx, "p", 0)
	if err != nil || f1.Epoch != 1 || f1.Token <= f0.Token {
		t.Fatalf("fence after the bump = %+v, %v; want epoch 1 and a higher token", f1, err)
	}
	if err := s.Advance(controlplane.WithFence(ctx, f1), "p", map[string]uint64{"process/t/a": 1}); err != nil {
		t.Fatal(err)
	}
	if cp, _ := s.Load(ctx, "p"); cp.Cursor("process/t/a") != 1 {
		t.Errorf("cursor in the new epoch = %d, want 1 (the rebuild starts from scratch)", cp.Cursor("process/t/a"))
	}
}

func TestFenceOfAnotherProjectionIsRefused(t *testing.T) {
	s, _, _ := newStore(t, redischeckpoint.Config{})
	ctx := controlplane.WithFence(ctxFor(t), controlplane.Fence{Projection: "other", Partition: 1, Token: 1})
	if err := s.Advance(ctx, "p", map[string]uint64{"process/t/a": 1}); err == nil || !strings.Contains(err.Error(), "other") {
		t.Errorf("Advance with another projection's fence = %v, want a refusal", err)
	}
}

func TestConfigValidateJoinsProblems(t *testing.T) {
	_, err := redischeckpoint.New(redischeckpoint.Config{ChunkSize: 9000, Namespace: "a{b}"})
	for _, part := range []string{"Client", "ChunkSize", "Namespace"} {
		if err == nil || !strings.Contains(err.Error(), part) {
			t.Errorf("error %v does not name %s", err, part)
		}
	}
}

// TestUpdateParkedLeavesAResolvedStream: a worker records its dead letter
// after an admin resolved the stream: the update must not park it again.
func TestUpdateParkedLeavesAResolvedStream(t *testing.T) {
	s, _, _ := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	p := controlplane.ParkedStream{StreamID: "process/t/a", Sequence: 7, Reason: controlplane.ParkApplyFailed, ParkedAt: time.Now().UTC(), DeadLetter: controlplane.DeadLetterPending}
	if err := s.Park(ctx, "p", p); err != nil {
		t.Fatal(err)
	}
	p.DeadLetter = controlplane.DeadLetterCopied
	if ok, err := s.UpdateParked(ctx, "p", p); !ok || err != nil {
		t.Fatalf("UpdateParked of a parked stream = %v, %v", ok, err)
	}
	if parked, _ := s.Parked(ctx, "p"); len(parked) != 1 || parked[0].DeadLetter != controlplane.DeadLetterCopied {
		t.Errorf("parked = %+v", parked)
	}
	if ok, err := s.Unpark(ctx, "p", controlplane.Resolution{StreamID: p.StreamID, Action: controlplane.ResolveRetry, By: "test", Parked: p}); !ok || err != nil {
		t.Fatalf("Unpark = %v, %v", ok, err)
	}
	if ok, err := s.UpdateParked(ctx, "p", p); ok || err != nil {
		t.Errorf("UpdateParked of a resolved stream = %v, %v; want false", ok, err)
	}
	if parked, _ := s.Parked(ctx, "p"); len(parked) != 0 {
		t.Errorf("the update parked the resolved stream again: %+v", parked)
	}
	// Parked again at another event: an update of the old park is stale.
	again := p
	again.Sequence, again.ParkedAt = 9, time.Now().UTC()
	if err := s.Park(ctx, "p", again); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.UpdateParked(ctx, "p", p); ok {
		t.Error("an update of an older park replaced the newer one")
	}
}

// TestResolutionIsARequestUntilTheWorkerUnparks: an admin's resolution is
// recorded beside the parked stream; the dead-letter update keeps it; a new
// park of the stream drops it; Unpark acts only on the park it names, even
// at a sequence beyond 2^53, and only with the current fence.
func TestResolutionIsARequestUntilTheWorkerUnparks(t *testing.T) {
	s, _, _ := newStore(t, redischeckpoint.Config{})
	ctx := ctxFor(t)
	const huge = uint64(1<<64 - 1)
	p := controlplane.ParkedStream{StreamID: "process/t/b", Sequence: huge, Reason: controlplane.ParkGap, ParkedAt: time.Now().UTC(),
		Position: &framework.Position{Partition: 0, Offset: 42}, DeadLetter: controlplane.DeadLetterPending}
	f, err := s.AcquireFence(ctx, "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	fenced := controlplane.WithFence(ctx, f)
	if err := s.Park(fenced, "p", p); err != nil {
		t.Fatal(err)
	}
	res := controlplane.Resolution{StreamID: p.StreamID, Action: controlplane.ResolveSkip, By: "admin", Reason: "bogus", Force: true, Parked: p}
	stale := res
	stale.Parked.Sequence = huge - 1 // 2^64-2 and 2^64-1 are one double
	if ok, err := s.RequestResolution(ctx, "p", stale); ok || err != nil {
		t.Fatalf("a request for another sequence = %v, %v; want false", ok, err)
	}
	if ok, err := s.RequestResolution(ctx, "p", res); !ok || err != nil {
		t.Fatalf("RequestResolution = %v, %v", ok, err)
	}
	other := res
	other.Action, other.Drop = controlplane.ResolveRetry, false
	if ok, err := s.RequestResolution(ctx, "p", other); ok || err != nil {
		t.Fatalf("a second request while one is pending = %v, %v; want false", ok, err)
	}
	p.DeadLetter = controlplane.DeadLetterCopied
	if ok, err := s.UpdateParked(fenced, "p", p); !ok || err != nil {
		t.Fatalf("UpdateParked = %v, %v", ok, err)
	}
	parked, err := s.Parked(ctx, "p")
	if err != nil || len(parked) != 1 || parked[0].Resolving == nil || parked[0].Resolving.By != "admin" || !parked[0].Resolving.Force ||
		parked[0].DeadLetter != controlplane.DeadLetterCopied || parked[0].Sequence != huge {
		t.Fatalf("parked = %+v, %v; want the request kept by the update", parked, err)
	}
	// A newer fence: the old worker cannot unpark.
	if _, err := s.AcquireFence(ctx, "p", 0); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Unpark(fenced, "p", res); ok || !errors.Is(err, controlplane.ErrFenced) {
		t.Fatalf("Unpark by a fenced worker = %v, %v; want ErrFenced", ok, err)
	}
	// Parked again (at a later event) by the resume that carried out the
	// request in part: the request goes, what it did is in the audit.
	again := p
	again.Sequence, again.ParkedAt = 3, time.Now().UTC()
	partial := res
	partial.Result = "applied 1 events; parked again at sequence 3 (gap)"
	again.Resolving = &partial
	if err := s.Park(ctx, "p", again); err != nil {
		t.Fatal(err)
	}
	again.Resolving = nil
	if parked, _ := s.Parked(ctx, "p"); len(parked) != 1 || parked[0].Resolving != nil {
		t.Fatalf("parked = %+v; want the new park without the old request", parked)
	}
	if ok, err := s.Unpark(ctx, "p", res); ok || err != nil {
		t.Fatalf("Unpark of the old park = %v, %v; want false", ok, err)
	}
	res.Parked = again
	res.Done, res.Result = time.Now().UTC(), "applied 2 held events"
	if ok, err := s.Unpark(ctx, "p", res); !ok || err != nil {
		t.Fatalf("Unpark = %v, %v", ok, err)
	}
	if parked, _ := s.Parked(ctx, "p"); len(parked) != 0 {
		t.Fatalf("still parked: %+v", parked)
	}
	if list, err := s.Resolutions(ctx, "p", 10); err != nil || len(list) != 2 || list[0].Result != "applied 2 held events" || list[0].Parked.Sequence != 3 ||
		list[1].Result != partial.Result || list[1].Parked.Sequence != huge {
		t.Fatalf("resolutions = %+v, %v", list, err)
	}
}
