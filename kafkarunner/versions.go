package kafkarunner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

// VersionStore keeps the registry of a projection's read-model versions
// (see [controlplane.Versions]). redischeckpoint.Store implements it.
type VersionStore interface {
	// Versions returns the registry of the projection (its bare name).
	Versions(ctx context.Context, projection string) (controlplane.Versions, error)
	// UpdateRebuild records why the rebuild of version cannot switch yet
	// ("" when nothing blocks it) and whether it caught up.
	UpdateRebuild(ctx context.Context, projection string, version uint64, blocked string, caughtUp bool) error
	// SwitchLive makes the rebuilt version live in one write and closes
	// the version it replaces.
	SwitchLive(ctx context.Context, projection string, version uint64, by string) (controlplane.Versions, error)
	// DropVersion deletes the keys of a closed, retired version.
	DropVersion(ctx context.Context, projection string, version uint64) error
}

// LiveFreezer is a VersionStore that can ask every replica to hold the live
// version's writes for a moment (see [controlplane.Rebuild.FrozenUntil]).
// With one, a rebuild that keeps finding itself a moment behind the live
// version under a steady write load freezes the live version for a few
// seconds and switches then. redischeckpoint.Store implements it.
type LiveFreezer interface {
	// FreezeLive sets the rebuild's FrozenUntil (zero: ends the freeze).
	FreezeLive(ctx context.Context, projection string, version uint64, until time.Time, by string) error
}

// VersionedConfig configures a [VersionedRunner].
type VersionedConfig struct {
	// Runner configures the runner of every version. Its Projection is
	// ignored: each version's comes from NewProjection. Its Group is the
	// consumer group of version 0 (default: Name); version N uses
	// framework.VersionGroup(Group, N), "billing@v3".
	Runner Config
	// Name is the projection's name, without a version (required).
	Name string
	// NewProjection returns the projection of a version, given its
	// versioned name ("billing" or "billing@v3") (required). For an
	// AtomicProjection: p.Version.
	NewProjection func(versionedName string) (framework.Projection, error)
	// Versions keeps the registry. Default: Runner.Checkpoints, if it
	// implements VersionStore.
	Versions VersionStore
	// Refresh is how often the registry is read and a rebuild's progress
	// checked. Default: Runner.ControlRefresh (1s).
	Refresh time.Duration
}

// VersionedRunner runs every version of a projection's read model that
// needs a runner: the live version, and the version a rebuild builds beside
// it (see [controlplane.Versions]). Each version is a [Runner] of its own,
// with its own consumer group, cursors, fences and parked streams, so the
// live version keeps serving and keeping up while the new one reads the
// topic from the start.
//
// Every replica checks the rebuild: when the new version's committed
// offsets have reached the end of the topic as it was one check earlier
// (last stable offsets, so an open transaction does not hold it back
// forever), and no stream is parked in it that is not parked in the live
// version, a replica switches the live pointer in one write
// (VersionStore.SwitchLive). The replicas then stop the replaced version's
// runner; its writes are refused from the switch on (the version is
// closed). After the rebuild's grace period a replica deletes its consumer
// group and its keys.
type VersionedRunner struct {
	cfg   VersionedConfig
	admin *kadm.Client
	cl    *kgo.Client

	mu      sync.Mutex
	running map[uint64]*versionRun
	live    uint64
	liveRun *Runner
	checks  map[uint64]*rebuildCheck // per building version, what the last check saw
	// freezeSeen is the FrozenUntil of the freeze this replica last
	// honoured, freezeUntil the end of its hold by this replica's clock
	// (capped); lastFreeze is when this replica last froze the live
	// version.
	freezeSeen, freezeUntil, lastFreeze time.Time
	status                              string
	started                             bool
	returned                            bool
}

type versionRun struct {
	runner *Runner
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// NewVersionedRunner checks cfg and returns a VersionedRunner.
func NewVersionedRunner(cfg VersionedConfig) (*VersionedRunner, error) {
	var errs []error
	if err := framework.ValidateProjectionName(cfg.Name); err != nil {
		errs = append(errs, fmt.Errorf("kafkarunner: VersionedConfig.Name: %w", err))
	} else if _, v := framework.SplitVersionedName(cfg.Name); v > 0 {
		errs = append(errs, fmt.Errorf("kafkarunner: VersionedConfig.Name %q names a version; give the projection's name", cfg.Name))
	}
	if cfg.NewProjection == nil {
		errs = append(errs, errors.New("kafkarunner: VersionedConfig.NewProjection is required"))
	}
	if cfg.Versions == nil {
		cfg.Versions, _ = cfg.Runner.Checkpoints.(VersionStore)
		if cfg.Versions == nil {
			errs = append(errs, errors.New("kafkarunner: VersionedConfig.Versions is required (Runner.Checkpoints does not keep versions)"))
		}
	}
	if cfg.Runner.Group == "" {
		cfg.Runner.Group = cfg.Name
	}
	if cfg.Runner.ReplicaID == "" {
		cfg.Runner.ReplicaID = defaultReplicaID()
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = cfg.Runner.ControlRefresh
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = time.Second
	}
	if cfg.Runner.Logger == nil {
		cfg.Runner.Logger = slog.New(slog.DiscardHandler)
	}
	probe := cfg.Runner
	probe.Projection = namedOnly(cfg.Name)
	if err := probe.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &VersionedRunner{cfg: cfg, running: map[uint64]*versionRun{}, checks: map[uint64]*rebuildCheck{}}, nil
}

// namedOnly is a projection that only has a name, to validate a config.
type namedOnly string

func (n namedOnly) Name() string                               { return string(n) }
func (namedOnly) Apply(context.Context, framework.Event) error { return nil }

// ReplicaID returns the name this replica reports under (in every
// version).
func (v *VersionedRunner) ReplicaID() string { return v.cfg.Runner.ReplicaID }

// Live returns the live version's runner (nil before it started).
func (v *VersionedRunner) Live() *Runner {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.liveRun
}

// LiveName returns the versioned name of the live version.
func (v *VersionedRunner) LiveName() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return framework.VersionedName(v.cfg.Name, v.live)
}

// Runners returns the runners of the versions running now, the live one
// first.
func (v *VersionedRunner) Runners() []*Runner {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []*Runner
	if v.liveRun != nil {
		out = append(out, v.liveRun)
	}
	for _, ver := range slices.Sorted(mapKeys(v.running)) {
		if r := v.running[ver].runner; r != v.liveRun {
			out = append(out, r)
		}
	}
	return out
}

// RebuildStatus returns what this replica last found about a rebuild in
// progress ("" when none runs).
func (v *VersionedRunner) RebuildStatus() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.status
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Run runs the versions until ctx is cancelled, then stops their runners
// gracefully. It returns the error of the live version's runner if that
// stopped on its own (the process should restart), or nil.
func (v *VersionedRunner) Run(ctx context.Context) error {
	v.mu.Lock()
	if v.started {
		v.mu.Unlock()
		return ErrRunnerClosed
	}
	v.started = true
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.returned = true
		v.mu.Unlock()
	}()
	cl, err := kgo.NewClient(append(slices.Clone(v.cfg.Runner.ClientOpts), kgo.SeedBrokers(v.cfg.Runner.Seeds...))...)
	if err != nil {
		return fmt.Errorf("kafkarunner: versioned runner %s: %w", v.cfg.Name, err)
	}
	v.cl, v.admin = cl, kadm.NewClient(cl)
	defer cl.Close()
	defer v.stopAll()
	for {
		if err := v.tick(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(v.cfg.Refresh):
		}
	}
}

// tick reconciles the running versions with the registry once.
func (v *VersionedRunner) tick(ctx context.Context) error {
	log := v.cfg.Runner.Logger
	vs, err := v.cfg.Versions.Versions(ctx, v.cfg.Name)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		// The runners go on; the next tick reads again.
		log.WarnContext(ctx, "cannot read the read model's versions; retrying", "projection", v.cfg.Name, "err", err)
		return nil
	}
	want := map[uint64]bool{vs.Live: true}
	if vs.Building != nil {
		want[vs.Building.Version] = true
	}
	v.mu.Lock()
	// A version's runner that returned on its own is restarted, except
	// the live one, whose error ends Run (the process restarts).
	for ver, run := range v.running {
		select {
		case <-run.done:
			delete(v.running, ver)
			if ver == v.live && want[ver] && run.err != nil && ctx.Err() == nil {
				v.mu.Unlock()
				return run.err
			}
			if run.err != nil {
				log.ErrorContext(ctx, "a version's runner stopped; restarting it", "projection", framework.VersionedName(v.cfg.Name, ver), "err", run.err)
			}
		default:
		}
	}
	var stop []*versionRun
	for ver, run := range v.running {
		if !want[ver] {
			stop = append(stop, run)
			delete(v.running, ver)
			log.InfoContext(ctx, "stopping a read-model version that is no longer live or building", "projection", framework.VersionedName(v.cfg.Name, ver))
		}
	}
	v.mu.Unlock()
	for _, run := range stop {
		run.cancel()
	}
	for _, run := range stop {
		<-run.done
	}
	for ver := range want {
		v.mu.Lock()
		_, ok := v.running[ver]
		v.mu.Unlock()
		if ok {
			continue
		}
		if err := v.start(ctx, ver); err != nil {
			log.ErrorContext(ctx, "cannot start a read-model version", "projection", framework.VersionedName(v.cfg.Name, ver), "err", err)
		}
	}
	v.mu.Lock()
	v.live = vs.Live
	if run, ok := v.running[vs.Live]; ok {
		v.liveRun = run.runner
	}
	if vs.Building == nil {
		v.status = ""
		clear(v.checks)
	}
	v.honourFreeze(vs.Building)
	v.mu.Unlock()
	if vs.Building != nil {
		v.checkRebuild(ctx, vs)
	}
	v.retire(ctx, vs)
	return nil
}

func (v *VersionedRunner) start(ctx context.Context, ver uint64) error {
	name := framework.VersionedName(v.cfg.Name, ver)
	p, err := v.cfg.NewProjection(name)
	if err != nil {
		return err
	}
	if p.Name() != name {
		return fmt.Errorf("kafkarunner: NewProjection(%q) returned projection %q", name, p.Name())
	}
	cfg := v.cfg.Runner
	cfg.Projection = p
	cfg.Group = framework.VersionGroup(v.cfg.Runner.Group, ver)
	r, err := New(cfg)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	run := &versionRun{runner: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.err = r.Run(runCtx)
	}()
	v.mu.Lock()
	v.running[ver] = run
	v.mu.Unlock()
	v.cfg.Runner.Logger.InfoContext(ctx, "running a read-model version", "projection", name, "group", cfg.Group)
	return nil
}

// stopAll stops every version's runner and waits for them.
func (v *VersionedRunner) stopAll() {
	v.mu.Lock()
	runs := slices.Collect(func(yield func(*versionRun) bool) {
		for _, r := range v.running {
			if !yield(r) {
				return
			}
		}
	})
	v.mu.Unlock()
	for _, r := range runs {
		r.cancel()
	}
	for _, r := range runs {
		<-r.done
	}
}

func (v *VersionedRunner) control() (controlplane.ControlStore, bool) {
	if v.cfg.Runner.Control != nil {
		return v.cfg.Runner.Control, true
	}
	c, ok := v.cfg.Runner.Checkpoints.(controlplane.ControlStore)
	return c, ok
}

// Healthy reports whether Run runs.
func (v *VersionedRunner) Healthy() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case !v.started:
		return errors.New("kafkarunner: versioned runner not started")
	case v.returned:
		return errors.New("kafkarunner: versioned runner stopped")
	}
	return nil
}

// Ready reports whether the live version's runner is ready (see
// [Runner.Ready]); a rebuild in progress does not make a replica unready.
func (v *VersionedRunner) Ready(ctx context.Context) error {
	if err := v.Healthy(); err != nil {
		return err
	}
	r := v.Live()
	if r == nil {
		return errors.New("kafkarunner: the live version's runner has not started yet")
	}
	return r.Ready(ctx)
}

// Handler serves GET /healthz and GET /readyz for the live version's
// runner (see [Runner.Handler]), naming the live version.
func (v *VersionedRunner) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r := v.Live()
		if r == nil {
			err := v.Healthy()
			if err == nil && strings.HasSuffix(req.URL.Path, "/readyz") {
				err = errors.New("kafkarunner: the live version's runner has not started yet")
			}
			status := http.StatusOK
			body := `{"status":"ok"}`
			if err != nil {
				status, body = http.StatusServiceUnavailable, fmt.Sprintf(`{"status":"unavailable","error":%q}`, err.Error())
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
			return
		}
		w.Header().Set("Projector-Read-Model", v.LiveName())
		r.Handler().ServeHTTP(w, req)
	})
}
