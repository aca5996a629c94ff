package framework

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Read-model versions (blue/green rebuilds).
//
// A projection's read model lives under a version. Version 0 is the
// unversioned layout every projection starts with (its keys and consumer
// group carry the bare name, "billing"); a rebuild creates version N+1
// beside the live one, under the versioned name "billing@v2", whose keys,
// cursors, fences, parked streams and consumer group are its own. When the
// new version has caught up with the topic, the live pointer switches to it
// in one write; readers resolve the pointer and read the live version.

// versionMark separates a projection's name from its version in a
// versioned name: "billing@v3". '@' is not allowed in a name, so a
// versioned name never collides with a plain one.
const versionMark = "@v"

// VersionedName returns the name of version v of the projection name:
// name itself for version 0, "name@v<v>" otherwise.
func VersionedName(name string, v uint64) string {
	if v == 0 {
		return name
	}
	return name + versionMark + strconv.FormatUint(v, 10)
}

// SplitVersionedName splits a (possibly versioned) projection name into
// the projection's name and the version: "billing@v3" gives "billing", 3;
// "billing" gives "billing", 0. It does not validate the name.
func SplitVersionedName(s string) (name string, v uint64) {
	i := strings.LastIndex(s, versionMark)
	if i < 0 {
		return s, 0
	}
	digits := s[i+len(versionMark):]
	if digits == "" || digits[0] == '0' {
		return s, 0
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return s, 0
	}
	return s[:i], n
}

// Versions is the registry of a projection's read-model versions.
type Versions struct {
	// Live is the version readers read and the replicas keep up to date
	// (0: the unversioned layout).
	Live uint64 `json:"live"`
	// Last is the highest version ever created: a new rebuild takes
	// Last+1, so a version number is never used twice.
	Last uint64 `json:"last"`
	// Building is the rebuild in progress, if any.
	Building *Rebuild `json:"building,omitempty"`
	// Retiring are former live versions (and aborted rebuilds) whose keys
	// and consumer group are deleted at their RetireAt, unless kept.
	Retiring []Retiring `json:"retiring,omitempty"`
	// SwitchedAt, SwitchedBy and SwitchedFrom describe the last switch of
	// the live pointer.
	SwitchedAt   time.Time `json:"switched_at,omitzero"`
	SwitchedBy   string    `json:"switched_by,omitempty"`
	SwitchedFrom uint64    `json:"switched_from,omitempty"`
	// History lists the last rebuilds that ended (switched, aborted or
	// failed), newest first.
	History []Rebuild `json:"history,omitempty"`
}

// Rebuild is a version being built beside the live one.
type Rebuild struct {
	Version   uint64        `json:"version"`
	By        string        `json:"by"`
	Reason    string        `json:"reason,omitempty"`
	StartedAt time.Time     `json:"started_at"`
	Grace     time.Duration `json:"grace"` // how long the version it replaces is kept after the switch
	Keep      bool          `json:"keep,omitempty"`
	// Blocked says why the switch waits although the version may have
	// caught up (streams parked in it), as last seen by a replica.
	Blocked string `json:"blocked,omitempty"`
	// CaughtUpAt is when a replica found it caught up; EndedAt and
	// Outcome ("switched", "aborted") are set when it ends.
	CaughtUpAt time.Time `json:"caught_up_at,omitzero"`
	EndedAt    time.Time `json:"ended_at,omitzero"`
	Outcome    string    `json:"outcome,omitempty"`
}

// Retiring is a version no longer live (or an aborted rebuild) waiting for
// deletion.
type Retiring struct {
	Version  uint64    `json:"version"`
	RetireAt time.Time `json:"retire_at"`
	Keep     bool      `json:"keep,omitempty"` // kept until deleted by hand
	Why      string    `json:"why"`            // "replaced by v3", "aborted"
}

// VersionGroup returns the consumer group of version v of a projection
// whose group is group: group itself for version 0, "group@v<v>"
// otherwise (a prefixed Kafka ACL on group covers every version).
func VersionGroup(group string, v uint64) string {
	if v == 0 {
		return group
	}
	return fmt.Sprintf("%s%s%d", group, versionMark, v)
}
