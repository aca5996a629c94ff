package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/projector-dev/projector/controlplane"
)

func TestActionsNeedTokenAndCSRF(t *testing.T) {
	f := newFixture(t, adminToken)
	anon := f.client(t)
	form := func(csrf string) url.Values {
		v := url.Values{"action": {"retry"}, "by": {"alice"}, "reason": {"fixed in 1.4.2"}}
		if csrf != "" {
			v.Set("csrf", csrf)
		}
		return v
	}
	// Without a session: 403, whatever the form says.
	if code, body, _ := post(t, anon, resolveURL(f.server.URL, scriptID), form("00")); code != http.StatusForbidden {
		t.Errorf("resolve without a session: %d\n%s", code, body)
	}
	if code, _, _ := post(t, anon, f.server.URL+"/console/login", url.Values{"token": {"wrong"}}); code != http.StatusForbidden {
		t.Errorf("sign-in with a wrong token: %d", code)
	}
	if code, _, _ := post(t, anon, f.server.URL+"/console/login", url.Values{}); code != http.StatusForbidden {
		t.Errorf("sign-in without a token: %d", code)
	}
	// The stream page offers no form before sign-in.
	if _, body, _ := get(t, anon, streamURL(f.server.URL, scriptID)); strings.Contains(body, "parked/resolve") || !strings.Contains(body, "Sign in") {
		t.Errorf("stream page before sign-in offers the actions or no sign-in")
	}

	admin := f.client(t)
	csrf := signIn(t, f, admin)
	for name, tok := range map[string]string{"missing CSRF": "", "wrong CSRF": strings.Repeat("0", len(csrf))} {
		if code, _, _ := post(t, admin, resolveURL(f.server.URL, scriptID), form(tok)); code != http.StatusForbidden {
			t.Errorf("%s: %d", name, code)
		}
	}
	// Another session's CSRF token does not fit this session.
	other := f.client(t)
	otherCSRF := signIn(t, f, other)
	if code, _, _ := post(t, admin, resolveURL(f.server.URL, scriptID), form(otherCSRF)); code != http.StatusForbidden {
		t.Errorf("another session's CSRF token: %d", code)
	}
	parked, err := f.store.Parked(t.Context(), "billing")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parked {
		if p.Resolving != nil {
			t.Fatalf("a refused POST resolved %q: %+v", p.StreamID, p.Resolving)
		}
	}
	// Bad input with a valid session: 400, nothing recorded.
	if code, _, _ := post(t, admin, resolveURL(f.server.URL, scriptID), url.Values{"csrf": {csrf}, "action": {"skip"}, "by": {"alice"}}); code != http.StatusBadRequest {
		t.Errorf("skip without a reason: %d", code)
	}
	if code, _, _ := post(t, admin, resolveURL(f.server.URL, scriptID), url.Values{"csrf": {csrf}, "action": {"retry"}}); code != http.StatusBadRequest {
		t.Errorf("retry without who: %d", code)
	}

	// Token and CSRF: 303, and the retry is recorded as projectorctl
	// records it, by whom and why.
	code, _, resp := post(t, admin, resolveURL(f.server.URL, scriptID), form(csrf))
	if code != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/parked?") {
		t.Fatalf("resolve with token and CSRF: %d, Location %q", code, resp.Header.Get("Location"))
	}
	// The page it leads to says what was recorded; a crafted link that
	// claims another resolution (or the same without its signature) shows
	// no notice.
	if _, body, _ := get(t, admin, f.server.URL+resp.Header.Get("Location")); !strings.Contains(body, "Recorded: retry of &lt;script&gt;") {
		t.Errorf("the page after the retry does not say what was recorded")
	}
	for _, q := range []url.Values{
		{"done": {"skip"}, "stream": {"process/acme/all-streams"}},
		{"done": {"retry"}, "stream": {scriptID}, "sig": {strings.Repeat("0", 64)}},
	} {
		if _, body, _ := get(t, anon, f.server.URL+"/console/parked?"+q.Encode()); strings.Contains(body, "Recorded:") {
			t.Errorf("a crafted link %v shows a notice", q)
		}
	}
	code, _, _ = post(t, admin, resolveURL(f.server.URL, terminalID), url.Values{"csrf": {csrf}, "action": {"skip"}, "by": {"bob"}, "reason": {"never written (incident 42)"}})
	if code != http.StatusSeeOther {
		t.Fatalf("skip: %d", code)
	}
	parked, err = f.store.Parked(t.Context(), "billing")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*controlplane.Resolution{}
	for _, p := range parked {
		got[p.StreamID] = p.Resolving
	}
	if r := got[scriptID]; r == nil || r.Action != controlplane.ResolveRetry || r.By != "alice (console)" || r.Reason != "fixed in 1.4.2" {
		t.Errorf("retry recorded = %+v", r)
	}
	if r := got[terminalID]; r == nil || r.Action != controlplane.ResolveSkip || r.By != "bob (console)" || r.Reason != "never written (incident 42)" {
		t.Errorf("skip recorded = %+v", r)
	}
	// A second request while the first is pending is refused (409), and
	// the page says so.
	if code, body, _ := post(t, admin, resolveURL(f.server.URL, scriptID), form(csrf)); code != http.StatusConflict {
		t.Errorf("a second retry: %d", code)
	} else {
		checkSafe(t, "refusal", body)
	}
	if code, _, _ := post(t, admin, resolveURL(f.server.URL, "process/acme/not-parked"), form(csrf)); code != http.StatusNotFound {
		t.Errorf("resolve a stream not parked: %d", code)
	}

	// Every page, signed in or not, shows no secret.
	for _, cl := range []*http.Client{anon, admin} {
		for _, u := range []string{"/console/", "/console/parked", "/console/login", "/console/parked/stream?projection=billing&stream=" + url.QueryEscape(scriptID)} {
			code, body, _ := get(t, cl, f.server.URL+u)
			if code != http.StatusOK {
				t.Errorf("GET %s: %d", u, code)
			}
			checkSafe(t, u, body)
		}
	}

	// Sign-out needs the CSRF token too, and ends the session.
	if code, _, _ := post(t, admin, f.server.URL+"/console/logout", url.Values{}); code != http.StatusForbidden {
		t.Errorf("sign-out without CSRF: %d", code)
	}
	if code, _, _ := post(t, admin, f.server.URL+"/console/logout", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Errorf("sign-out: %d", code)
	}
	if code, _, _ := post(t, admin, resolveURL(f.server.URL, terminalID), form(csrf)); code != http.StatusForbidden {
		t.Errorf("resolve after sign-out: %d", code)
	}
}

func TestReadOnlyConsoleRefusesActions(t *testing.T) {
	f := newFixture(t, "")
	cl := f.client(t)
	for _, u := range []string{"/console/login", "/console/parked/resolve?projection=billing&stream=x", "/console/logout"} {
		if code, _, _ := post(t, cl, f.server.URL+u, url.Values{"token": {""}, "csrf": {""}, "action": {"retry"}, "by": {"x"}}); code != http.StatusForbidden {
			t.Errorf("POST %s on a read-only console: %d", u, code)
		}
	}
	if code, _, _ := get(t, cl, f.server.URL+"/console/login"); code != http.StatusNotFound {
		t.Errorf("sign-in page of a read-only console: %d", code)
	}
}

// TestWrongTokensAreThrottled: after maxFailedSignIns wrong tokens from one
// address, sign-ins from it answer 429 without comparing the token, the
// right token included, until the window has passed.
func TestWrongTokensAreThrottled(t *testing.T) {
	f := newFixture(t, adminToken)
	anon := f.client(t)
	for i := range 5 {
		if code, _, _ := post(t, anon, f.server.URL+"/console/login", url.Values{"token": {"wrong"}}); code != http.StatusForbidden {
			t.Fatalf("wrong token %d: %d, want 403", i+1, code)
		}
	}
	for _, tok := range []string{"wrong", adminToken} {
		code, body, _ := post(t, anon, f.server.URL+"/console/login", url.Values{"token": {tok}})
		if code != http.StatusTooManyRequests {
			t.Errorf("sign-in after 5 wrong tokens: %d, want 429\n%s", code, body)
		}
		if strings.Contains(body, adminToken) {
			t.Errorf("the answer shows the token")
		}
	}
}

// TestConcurrentWrongTokensAreThrottled: wrong tokens sent at once from one
// address (their attempts are taken before the body is read) get at most
// five comparisons; the others answer 429.
func TestConcurrentWrongTokensAreThrottled(t *testing.T) {
	f := newFixture(t, adminToken)
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 30 {
		cl := f.client(t)
		wg.Go(func() {
			code := 0
			if resp, err := cl.PostForm(f.server.URL+"/console/login", url.Values{"token": {"wrong"}}); err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[http.StatusForbidden] > 5 || codes[http.StatusForbidden]+codes[http.StatusTooManyRequests] != 30 {
		t.Errorf("30 wrong tokens at once: %v, want at most 5 compared (403), the rest 429", codes)
	}
}
