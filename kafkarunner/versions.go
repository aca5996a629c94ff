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
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/kafkaio"
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

	mu       sync.Mutex
	running  map[uint64]*versionRun
	live     uint64
	liveRun  *Runner
	checks   map[uint64]*rebuildCheck // per building version, what the last check saw
	status   string
	started  bool
	returned bool
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

// rebuildCheck is what a replica saw at its last check of a rebuild.
type rebuildCheck struct {
	at time.Time
	// ends are the topic's last stable offsets; near whether the new
	// version had reached the previous check's ends (or the live
	// group's offsets).
	ends map[int32]int64
	near bool
	// live is the live version's cursors, read before ends (only while
	// near): the new version must hold at least these before the switch.
	live *framework.GlobalProjectionCheckpoint
	// skip counts checks left without reading the live cursors after a
	// comparison found the new version short (a blocked rebuild).
	skip int
}

// checkRebuild switches the live pointer to the rebuilt version once it has
// caught up, holds everything the live version held, and nothing blocks it.
//
// Caught up: on every partition the new group's committed offset has
// reached the topic's last stable offset of this replica's previous check
// (at most three refreshes old: a replica frozen in between starts
// over), or the live group's committed offset if that is lower (a
// partition ending in a transaction marker, a live version that lags). Then
// the new version's cursors are compared with the live version's as they
// were at the previous check, read before its end offsets: every stream the
// live version had must be in the new version at least as far. A stream
// missing (its events deleted from the topic by retention) or behind (parked
// or held earlier in the new version) blocks the switch and is named.
func (v *VersionedRunner) checkRebuild(ctx context.Context, vs controlplane.Versions) {
	log := v.cfg.Runner.Logger
	b := vs.Building
	name := framework.VersionedName(v.cfg.Name, b.Version)
	liveName := framework.VersionedName(v.cfg.Name, vs.Live)
	block := func(reason string) {
		v.setStatus(reason)
		if b.Blocked != reason {
			if err := v.cfg.Versions.UpdateRebuild(ctx, v.cfg.Name, b.Version, reason, true); err != nil {
				log.WarnContext(ctx, "cannot record why the rebuild waits", "projection", name, "err", err)
			}
			log.WarnContext(ctx, "the rebuild caught up but does not switch: "+reason, "projection", name)
		}
	}
	v.mu.Lock()
	prev := v.checks[b.Version]
	v.mu.Unlock()
	if prev != nil && time.Since(prev.at) > 3*v.cfg.Refresh {
		prev = nil // too old to vouch for "one refresh ago"
	}
	cur := &rebuildCheck{at: time.Now()}
	if prev != nil && prev.skip > 0 {
		cur.skip = prev.skip - 1
	}
	if prev != nil && prev.near && cur.skip == 0 {
		cp, err := v.loadCursors(ctx, liveName)
		if err != nil {
			log.WarnContext(ctx, "cannot read the live version's cursors", "projection", liveName, "err", err)
			return
		}
		cur.live = cp
	}
	near, behind, ends, err := v.caughtUp(ctx, vs.Live, b.Version, prev)
	if err != nil {
		log.WarnContext(ctx, "cannot check the rebuild's progress", "projection", name, "err", err)
		return
	}
	cur.ends, cur.near = ends, near
	v.mu.Lock()
	v.checks[b.Version] = cur
	v.mu.Unlock()
	if !near || prev == nil || prev.live == nil {
		v.setStatus(fmt.Sprintf("%s is %d record(s) behind the topic", name, behind))
		return
	}
	blocked, err := v.newlyParked(ctx, vs.Live, b.Version)
	if err != nil {
		log.WarnContext(ctx, "cannot compare the rebuild's parked streams", "projection", name, "err", err)
		return
	}
	if blocked != "" {
		block(blocked)
		return
	}
	if short, err := v.shortOf(ctx, name, prev.live); err != nil {
		log.WarnContext(ctx, "cannot compare the rebuild's cursors with the live version's", "projection", name, "err", err)
		return
	} else if short != "" {
		cur.skip = 10
		block(short)
		return
	}
	if c, ok := v.control(); ok {
		ctl, err := c.Control(ctx, liveName)
		if err != nil {
			log.WarnContext(ctx, "cannot read the live version's control state", "projection", liveName, "err", err)
			return
		}
		if ctl.Paused {
			block(fmt.Sprintf("the live version %s is paused (by %s: %s): the switch waits until it is resumed", liveName, ctl.PausedBy, ctl.PauseReason))
			return
		}
		if r := ctl.Replay; r != nil && (r.Phase == controlplane.ReplayPausing || r.Phase == controlplane.ReplayResetting || r.Phase == controlplane.ReplayRebuild) {
			block(fmt.Sprintf("a replay of the live version %s is in progress (%s, phase %s): the switch waits for it", liveName, r.ID, r.Phase))
			return
		}
	}
	if _, err := v.cfg.Versions.SwitchLive(ctx, v.cfg.Name, b.Version, v.cfg.Runner.ReplicaID); err != nil {
		log.InfoContext(ctx, "the switch to the rebuilt version did not happen here (another replica may have made it)", "projection", name, "err", err)
		return
	}
	log.InfoContext(ctx, "switched the live read model to the rebuilt version", "projection", name, "from", liveName)
	v.setStatus("")
}

func (v *VersionedRunner) setStatus(s string) {
	v.mu.Lock()
	v.status = s
	v.mu.Unlock()
}

func (v *VersionedRunner) control() (controlplane.ControlStore, bool) {
	if v.cfg.Runner.Control != nil {
		return v.cfg.Runner.Control, true
	}
	c, ok := v.cfg.Runner.Checkpoints.(controlplane.ControlStore)
	return c, ok
}

// loadCursors reads every cursor of a version.
func (v *VersionedRunner) loadCursors(ctx context.Context, name string) (*framework.GlobalProjectionCheckpoint, error) {
	loader, ok := v.cfg.Runner.Checkpoints.(interface {
		Load(ctx context.Context, name string) (*framework.GlobalProjectionCheckpoint, error)
	})
	if !ok {
		return framework.NewGlobalProjectionCheckpoint(), nil // cannot compare: nothing to hold the switch to
	}
	return loader.Load(ctx, name)
}

// shortOf names the streams the rebuilt version lacks or holds less of than
// the live version did (live), or "".
func (v *VersionedRunner) shortOf(ctx context.Context, name string, live *framework.GlobalProjectionCheckpoint) (string, error) {
	got, err := v.loadCursors(ctx, name)
	if err != nil {
		return "", err
	}
	var short []string
	n := 0
	for id, want := range live.All() {
		if have := got.Cursor(id); have < want {
			n++
			short = append(short, fmt.Sprintf("%s (live at %d, new at %d)", id, want, have))
		}
	}
	slices.Sort(short)
	short = short[:min(len(short), 5)]
	if n == 0 {
		return "", nil
	}
	return fmt.Sprintf("%d stream(s) are behind in %s what the live version holds, e.g. %s: their events are not in the topic any more "+
		"(retention) or the new version parked or held them earlier; switching would lose them (see projectorctl parked list %s, or abort the rebuild)",
		n, name, strings.Join(short, "; "), name), nil
}

// caughtUp reports whether the new version's committed offsets have
// reached, on every partition, the last stable offset of prev (or the live
// group's committed offset, when lower), how many records it is behind the
// end now, and the ends now.
func (v *VersionedRunner) caughtUp(ctx context.Context, live, ver uint64, prev *rebuildCheck) (bool, int64, map[int32]int64, error) {
	topic := v.cfg.Runner.Topic
	starts, err := kafkaio.ListOffsets(ctx, v.admin.ListStartOffsets, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return false, 0, nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	ends, err := kafkaio.ListOffsets(ctx, v.admin.ListCommittedOffsets, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return false, 0, nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	committed := func(group string) (func(int32) int64, error) {
		c, err := v.admin.FetchOffsets(ctx, group)
		if err == nil {
			err = c.Error()
		}
		if errors.Is(err, kerr.GroupIDNotFound) {
			c, err = nil, nil // not created yet: nothing committed
		}
		if err != nil {
			return nil, fmt.Errorf("committed offsets of %s: %w", group, err)
		}
		return func(p int32) int64 {
			s, _ := starts.Lookup(topic, p)
			pos := s.Offset
			if o, ok := c.Lookup(topic, p); ok && o.At > pos {
				pos = o.At
			}
			return pos
		}, nil
	}
	at, err := committed(framework.VersionGroup(v.cfg.Runner.Group, ver))
	if err != nil {
		return false, 0, nil, err
	}
	liveAt, err := committed(framework.VersionGroup(v.cfg.Runner.Group, live))
	if err != nil {
		return false, 0, nil, err
	}
	now := map[int32]int64{}
	var behind int64
	ends.Each(func(o kadm.ListedOffset) {
		now[o.Partition] = o.Offset
		behind += max(o.Offset-at(o.Partition), 0)
	})
	if prev == nil || len(now) == 0 {
		return false, behind, now, nil
	}
	for p, end := range now {
		target, ok := prev.ends[p]
		if !ok {
			target = end // a partition added since: its end now
		}
		if at(p) < min(target, liveAt(p)) {
			return false, behind, now, nil
		}
	}
	return true, behind, now, nil
}

// newlyParked names the streams parked in the rebuilt version that are not
// parked in the live one, or parked at an earlier sequence: the new version
// lacks their later events, and switching to it would serve an incomplete
// model.
func (v *VersionedRunner) newlyParked(ctx context.Context, live, ver uint64) (string, error) {
	store, ok := v.cfg.Runner.Parked, v.cfg.Runner.Parked != nil
	if !ok {
		store, ok = v.cfg.Runner.Checkpoints.(controlplane.ParkStore)
	}
	if !ok {
		return "", nil
	}
	inLive, err := store.Parked(ctx, framework.VersionedName(v.cfg.Name, live))
	if err != nil {
		return "", err
	}
	inNew, err := store.Parked(ctx, framework.VersionedName(v.cfg.Name, ver))
	if err != nil {
		return "", err
	}
	old := map[string]uint64{}
	for _, p := range inLive {
		old[p.StreamID] = p.Sequence
	}
	var names []string
	for _, p := range inNew {
		if seq, ok := old[p.StreamID]; !ok || p.Sequence < seq {
			names = append(names, fmt.Sprintf("%s at sequence %d (%s)", p.StreamID, p.Sequence, p.Reason))
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	return fmt.Sprintf("%d stream(s) parked in %s and not in the live version (or at an earlier sequence): %s (resolve them with projectorctl parked list %s, or abort the rebuild)",
		len(names), framework.VersionedName(v.cfg.Name, ver), strings.Join(names, "; "), framework.VersionedName(v.cfg.Name, ver)), nil
}

// retire deletes the versions whose grace period is over: first the
// consumer group (refused by Kafka while a replica still consumes in it),
// then the keys.
func (v *VersionedRunner) retire(ctx context.Context, vs controlplane.Versions) {
	log := v.cfg.Runner.Logger
	for _, r := range vs.Retiring {
		if r.Keep || time.Now().Before(r.RetireAt) {
			continue
		}
		v.mu.Lock()
		_, runs := v.running[r.Version]
		v.mu.Unlock()
		if runs {
			continue
		}
		name := framework.VersionedName(v.cfg.Name, r.Version)
		group := framework.VersionGroup(v.cfg.Runner.Group, r.Version)
		resp, err := v.admin.DeleteGroup(ctx, group)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			log.InfoContext(ctx, "cannot delete the consumer group of a retired version yet", "projection", name, "group", group, "err", err)
			continue
		}
		if err := v.cfg.Versions.DropVersion(ctx, v.cfg.Name, r.Version); err != nil {
			log.WarnContext(ctx, "cannot drop a retired version", "projection", name, "err", err)
			continue
		}
		log.InfoContext(ctx, "dropped a retired read-model version", "projection", name, "group", group, "why", r.Why)
	}
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
