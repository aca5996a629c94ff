package framework

import (
	"fmt"
	"strconv"
	"strings"
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

// VersionGroup returns the consumer group of version v of a projection
// whose group is group: group itself for version 0, "group@v<v>"
// otherwise (a prefixed Kafka ACL on group covers every version).
func VersionGroup(group string, v uint64) string {
	if v == 0 {
		return group
	}
	return fmt.Sprintf("%s%s%d", group, versionMark, v)
}
