package console

import "github.com/projector-dev/projector/internal/safetext"

// Clean returns s fit to show on one line. Stream and event IDs, reasons
// and errors come from Kafka and Redis, written by anyone who can write
// there: html/template escapes them for the page, and Clean writes every
// character a terminal or a text layout acts on instead of showing as a Go
// escape (safetext.Line): control characters, so also the ESC of a
// terminal escape sequence, line and paragraph separators, bidirectional
// controls, and each byte that is not UTF-8 (as \xff). A copied value then
// shows what is really there.
func Clean(s string) string { return safetext.Line(s) }

// CleanBlock is Clean for text shown over several lines (a payload): it
// keeps newlines.
func CleanBlock(s string) string { return safetext.Block(s) }
