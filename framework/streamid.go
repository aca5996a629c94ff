package framework

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on identifiers.
const (
	// MaxStreamIDLength is the longest stream ID or prefix, in bytes.
	MaxStreamIDLength = 512
	// MaxTenantIDLength is the longest tenant ID, in bytes.
	MaxTenantIDLength = 64
	// ProcessPrefix is the prefix of every process stream of every tenant.
	ProcessPrefix = "process/"
)

// ValidateStreamID reports whether id can name a stream: non-empty, at most
// [MaxStreamIDLength] bytes of UTF-8, no control characters, and no empty
// segment between slashes (so "a//b", "/a" and "a/" are rejected). The error
// is an [*InvalidStreamIDError].
func ValidateStreamID(id string) error {
	if reason := checkStreamID(id, false); reason != "" {
		return &InvalidStreamIDError{ID: id, Reason: reason}
	}
	return nil
}

// ValidatePrefix reports whether prefix can select streams by ID. The rules
// are those of [ValidateStreamID], except that a prefix may end in "/".
// The empty prefix is rejected: name the family ("process/") you mean.
func ValidatePrefix(prefix string) error {
	if reason := checkStreamID(prefix, true); reason != "" {
		return &InvalidStreamIDError{ID: prefix, Prefix: true, Reason: reason}
	}
	return nil
}

func checkStreamID(id string, prefix bool) string {
	switch {
	case id == "":
		return "empty"
	case len(id) > MaxStreamIDLength:
		return "longer than 512 bytes"
	case !utf8.ValidString(id):
		return "not valid UTF-8"
	}
	for i, r := range id {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return "control character at byte " + strconv.Itoa(i)
		}
	}
	body := id
	if prefix {
		body = strings.TrimSuffix(id, "/")
		if body == "" {
			return "empty segment"
		}
	}
	for seg := range strings.SplitSeq(body, "/") {
		if seg == "" {
			return "empty segment"
		}
	}
	return ""
}

// ValidateTenantID reports whether tenant is safe to embed in a stream ID
// prefix: 1 to [MaxTenantIDLength] characters from [A-Za-z0-9._-], not "."
// or "..". Anything else ("/", wildcards such as "*" or "?", whitespace,
// control characters) could select another tenant's streams in a prefix
// scan or a Redis pattern, so it is an [*InvalidTenantIDError].
func ValidateTenantID(tenant string) error {
	reason := ""
	switch {
	case tenant == "":
		reason = "empty"
	case len(tenant) > MaxTenantIDLength:
		reason = "longer than 64 bytes"
	case tenant == "." || tenant == "..":
		reason = "a relative path segment"
	default:
		for i := 0; i < len(tenant); i++ {
			if c := tenant[i]; !isNameByte(c) {
				reason = "character " + strconv.QuoteRuneToASCII(rune(c)) + " at byte " + strconv.Itoa(i) + " (allowed: letters, digits, '.', '_', '-')"
				break
			}
		}
	}
	if reason != "" {
		return &InvalidTenantIDError{Tenant: tenant, Reason: reason}
	}
	return nil
}

// TenantPrefix returns "process/{tenant}/", the prefix of every process
// stream of one tenant, after [ValidateTenantID].
func TenantPrefix(tenant string) (string, error) {
	if err := ValidateTenantID(tenant); err != nil {
		return "", err
	}
	return ProcessPrefix + tenant + "/", nil
}

// ProcessStreamID returns "process/{tenant}/{process}" after validating the
// tenant and the resulting stream ID.
func ProcessStreamID(tenant, process string) (string, error) {
	prefix, err := TenantPrefix(tenant)
	if err != nil {
		return "", err
	}
	id := prefix + process
	if err := ValidateStreamID(id); err != nil {
		return "", err
	}
	return id, nil
}
