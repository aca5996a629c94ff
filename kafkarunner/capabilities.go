package kafkarunner

import (
	"errors"
	"log/slog"
	"strings"

	"github.com/projector-dev/projector/controlplane"
)

// Capabilities are the control-plane capabilities a runner found in its
// configuration (see package controlplane). The runner logs them when it
// starts; [New] refuses a configuration that lacks a required one.
type Capabilities struct {
	// Fencing: Config.Fencer, or Checkpoints as a [controlplane.Fencer].
	// Writes of a replica that lost its partition (a zombie) are refused.
	// Required unless SingleReplica.
	Fencing bool
	// Progress: Checkpoints as a [controlplane.ProgressStore]. A store that
	// lost state is told from a restart. Required unless SingleReplica.
	Progress bool
	// Parking: Config.Parked, or Checkpoints as a
	// [controlplane.ParkStore]. Parked streams survive restarts and are seen
	// by every replica and the admin tools. Required unless SingleReplica
	// (then they are kept in memory).
	Parking bool
	// Control: Config.Control, or Checkpoints as a
	// [controlplane.ControlStore]: pause, resume, replays and the replicas'
	// reports. Optional: without it the runner cannot be paused or
	// replayed from outside.
	Control bool
	// Heads: Checkpoints as a [controlplane.HeadStore]. A conflict (an
	// applied sequence repeated with another event ID) is recognised also
	// after a restart. Optional.
	Heads bool
	// ServerCheck: Checkpoints as a [controlplane.ServerChecker]. Optional.
	ServerCheck bool
	// Ping: Checkpoints as a [controlplane.Pinger], for readiness. Optional.
	Ping bool
}

// capabilitiesOf reports what c provides, before defaults fill Parked in.
func capabilitiesOf(c Config) Capabilities {
	var caps Capabilities
	_, fencer := c.Checkpoints.(controlplane.Fencer)
	caps.Fencing = c.Fencer != nil || fencer
	_, caps.Progress = c.Checkpoints.(controlplane.ProgressStore)
	_, parker := c.Checkpoints.(controlplane.ParkStore)
	caps.Parking = c.Parked != nil || parker
	_, controller := c.Checkpoints.(controlplane.ControlStore)
	caps.Control = c.Control != nil || controller
	_, caps.Heads = c.Checkpoints.(controlplane.HeadStore)
	_, caps.ServerCheck = c.Checkpoints.(controlplane.ServerChecker)
	_, caps.Ping = c.Checkpoints.(controlplane.Pinger)
	return caps
}

// missing names the required capabilities caps lacks.
func (caps Capabilities) missing(singleReplica bool) error {
	if singleReplica {
		return nil
	}
	var errs []error
	if !caps.Fencing {
		errs = append(errs, errors.New("kafkarunner: Config: no fencing: Checkpoints is not a controlplane.Fencer and Fencer is nil; a replica that lost its partition could still write (set SingleReplica only for a single replica in tests or demos)"))
	}
	if !caps.Progress {
		errs = append(errs, errors.New("kafkarunner: Config: no progress tracking: Checkpoints is not a controlplane.ProgressStore; a store that lost state could not be told from a restart (set SingleReplica only for a single replica in tests or demos)"))
	}
	if !caps.Parking {
		errs = append(errs, errors.New("kafkarunner: Config: no parking store: Checkpoints is not a controlplane.ParkStore and Parked is nil; parked streams would be lost on restart and invisible to other replicas (set SingleReplica only for a single replica in tests or demos)"))
	}
	return errors.Join(errs...)
}

// String lists the capabilities found, for the start-up log.
func (caps Capabilities) String() string {
	var b strings.Builder
	for _, c := range []struct {
		name string
		on   bool
	}{{"fencing", caps.Fencing}, {"progress", caps.Progress}, {"parking", caps.Parking}, {"control", caps.Control},
		{"heads", caps.Heads}, {"server-check", caps.ServerCheck}, {"ping", caps.Ping}} {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(c.name)
		if c.on {
			b.WriteString("=yes")
		} else {
			b.WriteString("=no")
		}
	}
	return b.String()
}

// LogValue logs the capabilities as a group of booleans.
func (caps Capabilities) LogValue() slog.Value {
	return slog.GroupValue(slog.Bool("fencing", caps.Fencing), slog.Bool("progress", caps.Progress),
		slog.Bool("parking", caps.Parking), slog.Bool("control", caps.Control), slog.Bool("heads", caps.Heads),
		slog.Bool("server_check", caps.ServerCheck), slog.Bool("ping", caps.Ping))
}

// Capabilities returns the control-plane capabilities the runner found.
func (r *Runner) Capabilities() Capabilities { return r.caps }
