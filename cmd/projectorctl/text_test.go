package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/safetext"
)

// evil is data that tries to take over the terminal: clear the screen,
// colour the rest, return to the start of the line, forge a row of the
// table on a new line, and reverse the text after it.
const evil = "x\x1b[2J\x1b[31mred\x1b]0;title\x07\rFORGED\r\nFORGED\tROW\u202eevil\u2066\x7f\u0085\u009b2J\u2028FORGED"

// checkTerminalSafe fails if out holds a control byte other than the line
// ends of the output itself, a C1 control or a bidi control, or a line that
// data forged.
func checkTerminalSafe(t *testing.T, what, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s: output is not valid UTF-8:\n%q", what, out)
	}
	for i, r := range out {
		if r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029') {
			t.Errorf("%s: raw %U at byte %d:\n%q", what, r, i, out)
			break
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "FORGED") {
			t.Errorf("%s: a forged line %q:\n%q", what, line, out)
			break
		}
	}
	if !strings.Contains(out, `\x1b[2J`) || !strings.Contains(out, `\r\nFORGED\tROW\u202e`) {
		t.Errorf("%s: the data is not shown escaped:\n%q", what, out)
	}
}

// TestTextOutputEscapesData: a parked stream, a pause and a replica whose
// data carry terminal escapes, carriage returns, line feeds, tabs and bidi
// overrides are printed by `parked list` and `status` on the lines they
// belong to, escaped; -o json stays JSON that decodes to the data itself.
func TestTextOutputEscapesData(t *testing.T) {
	f := newFixture(t)
	f.produce(4, 1)
	f.start(false) // the group exists: status describes it
	f.waitCounts(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	parked := controlplane.ParkedStream{
		StreamID: "process/t/" + evil, Sequence: 7, EventID: "ev-" + evil, Type: "Type" + evil,
		Reason: controlplane.ParkApplyFailed + evil, Error: "apply failed: " + evil, Attempts: 3, ParkedAt: time.Now().UTC(),
		Position: &framework.Position{Partition: 1, Offset: 42},
	}
	if err := f.rstore.Park(ctx, f.name, parked); err != nil {
		t.Fatal(err)
	}
	if err := f.rstore.SetPaused(ctx, f.name, true, "by-"+evil, "reason-"+evil); err != nil {
		t.Fatal(err)
	}
	if err := f.rstore.Heartbeat(ctx, f.name, controlplane.ReplicaInfo{
		ID: "replica-" + evil, Host: "host-" + evil, Group: f.name, State: "running" + evil,
		Problems:  []controlplane.PartitionStatus{{Partition: 1, State: "failed" + evil, Since: time.Now(), Error: "problem-" + evil}},
		LastError: "last-" + evil, LastErrorAt: time.Now(), Warnings: []string{"warning-" + evil},
	}); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := f.ctl("", "parked", "list", f.name)
	if code != exitOK {
		t.Fatalf("parked list exit %d: %s", code, errOut)
	}
	checkTerminalSafe(t, "parked list", out)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 {
		t.Errorf("parked list printed %d lines, want the header and one row:\n%q", len(lines), out)
	}

	code, out, errOut = f.ctl("", "status", f.name)
	if code != exitOK {
		t.Fatalf("status exit %d: %s", code, errOut)
	}
	checkTerminalSafe(t, "status", out)
	for _, want := range []string{`by-x\x1b[2J`, `reason-x\x1b[2J`, `replica-x\x1b[2J`, `warning-x\x1b[2J`, `problem-x\x1b[2J`, `last-x\x1b[2J`} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%q", want, out)
		}
	}

	// An error that quotes data is escaped too.
	code, _, errOut = f.ctl("", "parked", "retry", f.name, "process/t/none"+evil)
	if code != exitNotFound {
		t.Errorf("retry of a stream that is not parked: exit %d %q, want %d", code, errOut, exitNotFound)
	}
	for _, r := range errOut {
		if r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)) {
			t.Errorf("error output holds a raw %U: %q", r, errOut)
			break
		}
	}

	// JSON stays JSON: it decodes to the data as stored.
	code, out, _ = f.ctl("", "parked", "list", f.name, "-o", "json")
	var decoded []controlplane.ParkedStream
	if code != exitOK || json.Unmarshal([]byte(out), &decoded) != nil || len(decoded) != 1 || decoded[0].EventID != parked.EventID {
		t.Errorf("parked list -o json: exit %d\n%q", code, out)
	}
}

func TestSafeText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"process/t/0001", "process/t/0001"},
		{"Zählpunkt 51238696788 — Bilanzkreis ✓ 日本", "Zählpunkt 51238696788 — Bilanzkreis ✓ 日本"},
		{`a\x1b literally`, `a\x1b literally`},
		{"\uFFFD is a character", "\uFFFD is a character"},
		{"", ""},
		{"\x1b[2J\x1b[31mred", `\x1b[2J\x1b[31mred`},
		{"a\tb\rc\nd", `a\tb\rc\nd`},
		{"\x00\x07\x08\x7f", `\x00\a\b\x7f`},
		{"\u0080\u0085\u009b\u009f", `\u0080\u0085\u009b\u009f`},
		{"\u202a\u202b\u202c\u202d\u202e|\u2066\u2067\u2068\u2069", `\u202a\u202b\u202c\u202d\u202e|\u2066\u2067\u2068\u2069`},
		{"\u200e\u200f\u061c", `\u200e\u200f\u061c`},
		{"line\u2028para\u2029", `line\u2028para\u2029`},
		{"a\xffb\xc3", `a\xffb\xc3`},
		{"\xe2\x80\xaeok", `\u202eok`},
		{"\xe2\x80", `\xe2\x80`},
	} {
		if got := safeText(c.in); got != c.want {
			t.Errorf("safeText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// FuzzSafeText: whatever the input, the output is valid UTF-8 without a
// character a terminal acts on, and input without such characters is
// unchanged.
func FuzzSafeText(f *testing.F) {
	for _, s := range []string{"plain", evil, "\xff\xfe", "Zählpunkt \u202e", "\x1b]8;;http://x\x07link"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := safeText(s)
		if !utf8.ValidString(got) || strings.ContainsFunc(got, safetext.Unsafe) {
			t.Fatalf("safeText(%q) = %q: not safe", s, got)
		}
		if utf8.ValidString(s) && !strings.ContainsFunc(s, safetext.Unsafe) && got != s {
			t.Fatalf("safeText(%q) = %q: changed printable text", s, got)
		}
	})
}
