package main

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// safeText returns s fit to print within one line of a terminal. Data
// shown in text output (stream and event IDs, types, reasons, errors,
// replica IDs) comes from Redis and Kafka, written by anyone who can write
// there; printed raw, an escape sequence in it could clear the screen,
// rewrite what is shown, or forge a row of a table. So every character
// that a terminal acts on instead of showing is written as a Go escape:
// control characters (C0 including \t, \r and \n, DEL, and C1), line and
// paragraph separators, the bidirectional controls (U+202A–U+202E,
// U+2066–U+2069 and the marks), and each byte that is not UTF-8 (as \xff).
// Printable text, including non-ASCII letters and a backslash, is
// unchanged; so an escape in the output may also be those characters
// typed literally. JSON output does not use it: encoding/json escapes.
func safeText(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r):
			q := strconv.QuoteRuneToASCII(r) // '\x1b', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsFunc(s, unsafeRune)
}

// unsafeRune reports whether a terminal may act on r rather than show it.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029'
}
