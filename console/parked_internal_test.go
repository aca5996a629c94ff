package console

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestCutRecordFields: a parked record's key and headers are capped like
// its payload, and a payload cut inside a UTF-8 character still shows as
// text, not as a hex dump.
func TestCutRecordFields(t *testing.T) {
	long := []byte(strings.Repeat("k", 400<<10))
	if got := capText(long); len(got) > maxFieldShown+64 || !strings.Contains(got, "bytes, 4096 shown") {
		t.Errorf("capText of 400 KiB: %d bytes, %q...", len(got), got[len(got)-40:])
	}
	if got := capText([]byte("short")); got != "short" {
		t.Errorf("capText(short) = %q", got)
	}
	text := []byte("x" + strings.Repeat("é", 600))
	cut := text[:1024] // ends inside an é
	if utf8.Valid(cut) {
		t.Fatal("the test needs a cut inside a character")
	}
	if show, binary := showPayload(trimToRune(cut)); binary || !strings.HasPrefix(show, "xé") {
		t.Errorf("a cut text payload shows as binary=%v %.20q", binary, show)
	}
	for _, b := range [][]byte{[]byte("abc"), []byte("é"), {}, []byte("\xff")} {
		if got := trimToRune(b); string(got) != string(b) {
			t.Errorf("trimToRune(%q) = %q, want it unchanged", b, got)
		}
	}
}
