package ops

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

// Kinds of errors an operator acts on. Errors of the package match one of
// them with [errors.Is] when they are of that kind; their messages say
// what to do.
var (
	// ErrRefused: the operation was refused and nothing was changed (or,
	// where the message says so, the operation stopped where it can be
	// resumed): a replay or rebuild in progress, a group that did not
	// empty, a closed version, a step that was not confirmed.
	ErrRefused = errors.New("ops: refused")
	// ErrNotFound: no such version, no such parked stream.
	ErrNotFound = errors.New("ops: not found")
	// ErrInvalid: the input is not valid (a malformed replay target).
	ErrInvalid = errors.New("ops: invalid input")
)

// Error is an error of one of the kinds above: its message is Err's, it
// matches Kind and whatever Err matches.
type Error struct {
	Kind error // ErrRefused, ErrNotFound or ErrInvalid
	Err  error
}

func (e *Error) Error() string        { return e.Err.Error() }
func (e *Error) Unwrap() error        { return e.Err }
func (e *Error) Is(target error) bool { return target == e.Kind }

func refused(format string, args ...any) error {
	return &Error{Kind: ErrRefused, Err: fmt.Errorf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &Error{Kind: ErrNotFound, Err: fmt.Errorf(format, args...)}
}

func invalid(format string, args ...any) error {
	return &Error{Kind: ErrInvalid, Err: fmt.Errorf(format, args...)}
}

// Config configures a [Client].
type Config struct {
	// Admin is the control plane (redischeckpoint.Store implements it).
	// Required.
	Admin controlplane.Admin
	// Checkpoints gives the streams' cursors, to check a skip of a gap
	// against Kafka ([Client.Resolve]); without it such a skip needs
	// Force or Drop. redischeckpoint.Store implements it.
	Checkpoints controlplane.CheckpointStore
	// Kafka is an admin client of the cluster that holds Topic. Status,
	// replays, rebuilds and waiting for the group need it; without it
	// they fail.
	Kafka *kadm.Client
	// Seeds and ClientOpts (security, timeouts) let the check of a skip
	// read the held records with a client of its own.
	Seeds      []string
	ClientOpts []kgo.Opt
	// Topic is the event topic the projection consumes. Required.
	Topic string
	// Group is the consumer group of version 0 of the projection; empty:
	// the projection's name. Version N > 0 uses framework.VersionGroup.
	Group string
	// RequestTimeout bounds each status gathered (default 30s).
	RequestTimeout time.Duration
	// ReplicaStaleAfter: replica reports older than this are not shown
	// (default 30s).
	ReplicaStaleAfter time.Duration
}

// Client runs operations on the projections of one topic.
type Client struct {
	cfg Config
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.Admin == nil {
		return nil, errors.New("ops: Config.Admin is required")
	}
	if cfg.Topic == "" {
		return nil, errors.New("ops: Config.Topic is required")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.ReplicaStaleAfter <= 0 {
		cfg.ReplicaStaleAfter = 30 * time.Second
	}
	return &Client{cfg: cfg}, nil
}

// Topic returns the event topic.
func (c *Client) Topic() string { return c.cfg.Topic }

// kafka returns the admin client or an error naming what needs it.
func (c *Client) kafka(what string) (*kadm.Client, error) {
	if c.cfg.Kafka == nil {
		return nil, fmt.Errorf("ops: %s needs Kafka (Config.Kafka)", what)
	}
	return c.cfg.Kafka, nil
}

// Version states of a [Projection].
const (
	VersionLive     = "live"
	VersionBuilding = "building"
	VersionRetired  = "retired" // closed by a rebuild, not deleted yet
)

// Projection is one version of a projection, resolved from its name.
type Projection struct {
	// Name is the version's name: "billing" (version 0), "billing@v3".
	Name string
	// Base is the projection's name without a version.
	Base string
	// Version is the read-model version (0: the unversioned layout).
	Version uint64
	// Group is the version's consumer group; BaseGroup version 0's.
	Group     string
	BaseGroup string
	// State is VersionLive, VersionBuilding or VersionRetired.
	State string
}

// Ref returns a name that resolves to this version whatever is live then
// ("billing@v0", "billing@v3"); Name does not for version 0 ("billing"
// is the live version).
func (p Projection) Ref() string {
	return p.Base + "@v" + strconv.FormatUint(p.Version, 10)
}

// Writable refuses to change a retired version: a rebuild replaced or
// abandoned it, nothing is written to it any more.
func (p Projection) Writable() error {
	if p.State == VersionRetired {
		return refused("%s was replaced or abandoned by a rebuild and is closed: nothing is written to it any more (it is deleted after its grace period, or by rebuild --drop)", p.Name)
	}
	return nil
}

// baseGroup is the group of version 0 of base.
func (c *Client) baseGroup(base string) string {
	if c.cfg.Group != "" {
		return c.cfg.Group
	}
	return base
}

// Projection resolves name: a projection's name ("billing") is its live
// version; "billing@v3" (or "billing@v0") names a version, which must be
// live, building or retired but not deleted yet ([ErrNotFound]).
func (c *Client) Projection(ctx context.Context, name string) (Projection, error) {
	base, v := framework.SplitVersionedName(name)
	named := v > 0
	if b, ok := strings.CutSuffix(name, "@v0"); ok { // version 0 by name, once it is not live
		base, named = b, true
	}
	baseGroup := c.cfg.Group
	if baseGroup == "" {
		baseGroup = name
		if named {
			baseGroup = base
		}
	}
	vs, err := c.cfg.Admin.Versions(ctx, base)
	if err != nil {
		return Projection{}, err
	}
	if !named {
		v = vs.Live
	}
	p := Projection{Name: framework.VersionedName(base, v), Base: base, Version: v, Group: framework.VersionGroup(baseGroup, v), BaseGroup: baseGroup}
	if p.State, err = versionState(vs, base, v); err != nil {
		return Projection{}, err
	}
	return p, nil
}

// versionState says what version v of projection base is, or refuses a
// version that does not exist (any more).
func versionState(vs controlplane.Versions, base string, v uint64) (string, error) {
	switch {
	case v == vs.Live:
		return VersionLive, nil
	case vs.Building != nil && v == vs.Building.Version:
		return VersionBuilding, nil
	}
	for _, r := range vs.Retiring {
		if r.Version == v {
			return VersionRetired, nil
		}
	}
	known := []string{"live v" + strconv.FormatUint(vs.Live, 10)}
	if vs.Building != nil {
		known = append(known, "building v"+strconv.FormatUint(vs.Building.Version, 10))
	}
	for _, r := range vs.Retiring {
		known = append(known, "retired v"+strconv.FormatUint(r.Version, 10))
	}
	return "", notFound("%s is not a version of %s that exists (%s); see projectorctl rebuild %s --status",
		framework.VersionedName(base, v), base, strings.Join(known, ", "), base)
}

// ReplayInProgress reports whether a replay in phase is under way: the
// replicas must not be resumed, nor a rebuild started.
func ReplayInProgress(phase string) bool {
	return phase == controlplane.ReplayPausing || phase == controlplane.ReplayResetting || phase == controlplane.ReplayRebuild
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
