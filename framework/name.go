package framework

import (
	"fmt"
	"strconv"
)

// MaxProjectionNameLength is the longest projection name, in bytes.
const MaxProjectionNameLength = 128

// ValidateProjectionName reports whether name can name a projection: 1 to
// [MaxProjectionNameLength] characters from [A-Za-z0-9._-]. The name becomes
// a Kafka consumer group and part of Redis keys (inside a {hash tag}), so
// nothing else is allowed. A versioned name ([VersionedName], "billing@v3")
// is a valid name followed by "@v" and a version from 1.
func ValidateProjectionName(name string) error {
	reason := ""
	switch {
	case name == "":
		reason = "empty"
	case len(name) > MaxProjectionNameLength:
		reason = "longer than 128 bytes"
	default:
		if base, v := SplitVersionedName(name); v > 0 {
			name = base // "billing@v3": a version suffix is allowed
			if base == "" {
				reason = "empty before its version"
			}
		}
		for i := 0; i < len(name); i++ {
			if !isNameByte(name[i]) {
				reason = "character " + strconv.QuoteRuneToASCII(rune(name[i])) + " at byte " + strconv.Itoa(i) +
					" (allowed: letters, digits, '.', '_', '-')"
				break
			}
		}
	}
	if reason != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidProjectionName, name, reason)
	}
	return nil
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}
