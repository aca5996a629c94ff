package console

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Clean returns s fit to show on one line. Stream and event IDs, reasons
// and errors come from Kafka and Redis, written by anyone who can write
// there: html/template escapes them for the page, and Clean writes every
// character a terminal or a text layout acts on instead of showing as a Go
// escape — control characters (C0 including \t, \r and \n, DEL, C1, so
// also the ESC of a terminal escape sequence), line and paragraph
// separators, bidirectional controls, and each byte that is not UTF-8 (as
// \xff). A copied value then shows what is really there.
func Clean(s string) string { return clean(s, false) }

// CleanBlock is Clean for text shown over several lines (a payload): it
// keeps newlines.
func CleanBlock(s string) string { return clean(s, true) }

func clean(s string, keepNewlines bool) string {
	unsafe := func(r rune) bool { return unsafeRune(r) && !(keepNewlines && r == '\n') }
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

// unsafeRune reports whether a terminal or text layout may act on r
// rather than show it.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029'
}
