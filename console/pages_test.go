package console_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestProjectionsPage(t *testing.T) {
	f := newFixture(t, "")
	cl := f.client(t)
	// Two samples drawn before the page is asked for.
	ctx, cancel := contextWithTimeout(t, 300*time.Millisecond)
	defer cancel()
	_ = f.console.Run(ctx)
	code, body, h := get(t, cl, f.server.URL+"/console/")
	if code != http.StatusOK {
		t.Fatalf("GET /console/: %d\n%s", code, body)
	}
	checkSafe(t, "projections", body)
	for _, want := range []string{
		`class="state state-stopped"`, // no member in the group: kfake has none
		"billing (v0)", "1,234,567", "replica-&lt;script&gt;alert(1)&lt;/script&gt;", `<td class="partitions">0, 1, 2</td>`,
		`<span class="parked-streams">2</span>`, `<span class="lag-seconds">1.5</span>`, "<svg", `data-series="lag records"`, `data-refresh=`,
		`href="/console/billing/"`, "read-only",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("projections page lacks %q", want)
		}
	}
	if !strings.Contains(body, `data-series="lag records" data-points="`) || strings.Contains(body, `data-series="lag records" data-points="0"`) {
		t.Errorf("the lag chart has no sampled point")
	}
	if h.Get("Content-Security-Policy") == "" || h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" {
		t.Errorf("headers = %v", h)
	}
	if code, _, _ := get(t, cl, f.server.URL+"/console/static/console.css"); code != http.StatusOK {
		t.Errorf("style sheet: %d", code)
	}
	if code, _, _ := get(t, cl, f.server.URL+"/console/static/refresh.js"); code != http.StatusOK {
		t.Errorf("script: %d", code)
	}
	if code, _, _ := get(t, cl, f.server.URL+"/console/nothing-here"); code != http.StatusNotFound {
		t.Errorf("unknown page: %d", code)
	}
}

func TestParkedPages(t *testing.T) {
	f := newFixture(t, "")
	cl := f.client(t)
	code, body, _ := get(t, cl, f.server.URL+"/console/parked")
	if code != http.StatusOK {
		t.Fatalf("parked list: %d", code)
	}
	checkSafe(t, "parked list", body)
	for _, want := range []string{
		"&lt;script&gt;alert(1)&lt;/script&gt;", `process/acme/\x1b[31mred\x1b[0m`, // shown escaped
		"stream=%3cscript%3ealert%281%29%3c%2fscript%3e", "stream=process%2facme%2f%1b%5b31mred%1b%5b0m", // linked query-escaped
		"apply-failed", "2026-03-29 01:30:00Z", `\x1b]0;title\a`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("parked list lacks %q\n%s", want, body)
		}
	}
	if code, _, _ := get(t, cl, f.server.URL+"/console/parked?projection=%3Cb%3Eother"); code != http.StatusNotFound {
		t.Errorf("unknown projection: %d", code)
	}

	for _, id := range []string{scriptID, terminalID} {
		code, body, _ := get(t, cl, streamURL(f.server.URL, id))
		if code != http.StatusOK {
			t.Fatalf("stream %q: %d\n%s", id, code, body)
		}
		checkSafe(t, "stream page "+id, body)
		for _, want := range []string{
			`<h2 class="stream-id">` + strings.ReplaceAll(strings.ReplaceAll(console_Clean(id), "<", "&lt;"), ">", "&gt;") + "</h2>",
			"projector.event-id", `evt-&lt;script&gt;alert(1)&lt;/script&gt;\x1b[31m`, // header, escaped
			`&#34;note&#34;: &#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;`, // payload as indented JSON, escaped
			`\u001b[2J`, "read-only",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("stream page of %q lacks %q", id, want)
			}
		}
		if strings.Contains(body, `action="/console/parked/resolve`) {
			t.Errorf("a read-only console offers actions")
		}
	}
	if code, _, _ := get(t, cl, streamURL(f.server.URL, "process/acme/not-parked")); code != http.StatusNotFound {
		t.Errorf("stream not parked: %d", code)
	}
}
