package kafkarunner

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/internal/kafkaio"
)

// Crash stops the runner the way a crash would: workers stop at once,
// nothing more is flushed or committed.
func (r *Runner) Crash() {
	r.crashed.Store(true)
	r.cancelMu.Lock()
	defer r.cancelMu.Unlock()
	if r.cancel != nil {
		r.cancel()
	}
}

// SetDeadLetterPause shortens how long workers skip an unreachable
// dead-letter topic; the returned function restores it.
func SetDeadLetterPause(d time.Duration) (restore func()) {
	old := deadLetterPause
	deadLetterPause = d
	return func() { deadLetterPause = old }
}

// SetHeldReadIdle shortens how long a read of held records waits for the
// next record; the returned function restores it.
func SetHeldReadIdle(d time.Duration) (restore func()) {
	old := kafkaio.ReadIdle
	kafkaio.ReadIdle = d
	return func() { kafkaio.ReadIdle = old }
}

// SetCatalogGrace shortens how long the runner waits before it looks a new
// stream up in the catalog; the returned function restores it.
func SetCatalogGrace(d time.Duration) (restore func()) {
	old := catalogGrace
	catalogGrace = d
	return func() { catalogGrace = old }
}

// SetAfterControlRead makes every runner of the test binary call f (with
// its replica ID) once it has read the control state and decided to
// consume, before it joins the group: a test blocks a replica there to
// force the race of a replica that joins while a replay begins. The
// returned function restores the previous hook.
func SetAfterControlRead(f func(replica string)) (restore func()) {
	old := afterControlRead.Swap(&f)
	return func() { afterControlRead.Store(old) }
}

// SetResetClaimTTL sets how long a reset claim lasts without renewal; the
// returned function restores it. Set it before any runner runs.
func SetResetClaimTTL(d time.Duration) (restore func()) {
	old := resetClaimTTL
	resetClaimTTL = d
	return func() { resetClaimTTL = old }
}

// CheckRebuildOnce runs one rebuild check of v, as a tick of Run would, on
// a VersionedRunner that does not run: a replica whose previous check is as
// old as the test makes it (frozen, or whose checks failed meanwhile).
func CheckRebuildOnce(ctx context.Context, v *VersionedRunner) (controlplane.Versions, error) {
	if v.admin == nil {
		cl, err := kgo.NewClient(append(v.cfg.Runner.ClientOpts, kgo.SeedBrokers(v.cfg.Runner.Seeds...))...)
		if err != nil {
			return controlplane.Versions{}, err
		}
		v.cl, v.admin = cl, kadm.NewClient(cl)
	}
	vs, err := v.cfg.Versions.Versions(ctx, v.cfg.Name)
	if err != nil {
		return vs, err
	}
	if vs.Building != nil {
		v.checkRebuild(ctx, vs)
	}
	return v.cfg.Versions.Versions(ctx, v.cfg.Name)
}

// SetBeforeSwitch runs f between a rebuild's last cursor comparison and
// its switch.
func SetBeforeSwitch(f func()) (restore func()) {
	old := beforeSwitch.Swap(&f)
	return func() { beforeSwitch.Store(old) }
}

// SetFreezeTimes sets how long a replica freezes the live version for a
// rebuild's switch, how often at most, and how long a replica honours one
// freeze by its own clock; the returned function restores them. Zero
// leaves a value as it is.
func SetFreezeTimes(holdFor, every, limit time.Duration) (restore func()) {
	oldFor, oldEvery, oldCap := freezeFor, freezeEvery, freezeCap
	if holdFor > 0 {
		freezeFor = holdFor
	}
	if every > 0 {
		freezeEvery = every
	}
	if limit > 0 {
		freezeCap = limit
	}
	return func() { freezeFor, freezeEvery, freezeCap = oldFor, oldEvery, oldCap }
}
