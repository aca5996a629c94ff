// Package safetext makes text from Kafka and Redis safe to show: stream and
// event IDs, reasons and errors are written by anyone who can write there,
// and printed raw, an escape sequence in them could clear a terminal,
// rewrite what is shown or forge a row of a table.
package safetext

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Line returns s fit to show within one line: every character a terminal
// or a text layout acts on instead of showing is written as a Go escape —
// control characters (C0 including \t, \r and \n, DEL, and C1, so also the
// ESC of a terminal escape sequence), line and paragraph separators, the
// bidirectional controls (U+202A–U+202E, U+2066–U+2069 and the marks) —
// and each byte that is not UTF-8 as \xff. Printable text, including
// non-ASCII letters and a backslash, is unchanged; so an escape in the
// output may also be those characters typed literally.
func Line(s string) string { return clean(s, false) }

// Block is Line for text shown over several lines (a payload): it keeps
// newlines.
func Block(s string) string { return clean(s, true) }

func clean(s string, keepNewlines bool) string {
	unsafe := func(r rune) bool { return Unsafe(r) && !(keepNewlines && r == '\n') }
	if utf8.ValidString(s) && !strings.ContainsFunc(s, unsafe) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafe(r):
			q := strconv.QuoteRuneToASCII(r) // '\x1b', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// Unsafe reports whether a terminal or text layout may act on r rather
// than show it.
func Unsafe(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029'
}
