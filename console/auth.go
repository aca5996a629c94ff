package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// cookieName is the session cookie: a random session ID, HttpOnly and
// SameSite=Strict, valid under the console's prefix only.
const cookieName = "projector_console_session"

// maxSessions bounds the sessions kept; the oldest give way.
const maxSessions = 1000

// session returns the request's session ID when it has a valid one.
func (c *Console) session(r *http.Request) (string, bool) {
	if c.cfg.AdminToken == "" {
		return "", false
	}
	ck, err := r.Cookie(cookieName)
	if err != nil || ck.Value == "" {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.sessions[ck.Value]
	if !ok || time.Now().After(exp) {
		delete(c.sessions, ck.Value)
		return "", false
	}
	return ck.Value, true
}

// csrfToken is the CSRF token of a session: an HMAC of its ID under a key
// of this process, so it needs no storage and cannot be derived from the
// cookie by a page that cannot read the key.
func (c *Console) csrfToken(session string) string {
	m := hmac.New(sha256.New, c.csrfKey)
	m.Write([]byte("csrf\x00" + session))
	return hex.EncodeToString(m.Sum(nil))
}

// authorized checks a POST: an admin token is configured, the request is
// signed in, and its form's csrf field is the session's token. It answers
// 403 itself when not.
func (c *Console) authorized(w http.ResponseWriter, r *http.Request) bool {
	if c.cfg.AdminToken == "" {
		c.message(w, r, http.StatusForbidden, "Forbidden", "The console is read-only: no admin token is configured (PROJECTOR_CONSOLE_ADMIN_TOKEN).")
		return false
	}
	id, ok := c.session(r)
	if !ok {
		c.message(w, r, http.StatusForbidden, "Forbidden", "Sign in with the admin token first.")
		return false
	}
	want := c.csrfToken(id)
	if got := r.PostFormValue("csrf"); !hmac.Equal([]byte(got), []byte(want)) {
		c.message(w, r, http.StatusForbidden, "Forbidden", "The form's CSRF token is missing or wrong: reload the page and try again.")
		return false
	}
	return true
}

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	if c.cfg.AdminToken == "" {
		c.message(w, r, http.StatusNotFound, "Read-only", "The console is read-only: no admin token is configured (PROJECTOR_CONSOLE_ADMIN_TOKEN).")
		return
	}
	c.renderPage(w, r, http.StatusOK, "login", "Sign in", 0, nil)
}

// login checks the token and starts a session.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if c.cfg.AdminToken == "" {
		c.message(w, r, http.StatusForbidden, "Forbidden", "The console is read-only: no admin token is configured (PROJECTOR_CONSOLE_ADMIN_TOKEN).")
		return
	}
	client := clientAddr(r)
	if wait := c.signInBlocked(client); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Round(time.Second)/time.Second)+1))
		c.message(w, r, http.StatusTooManyRequests, "Too many attempts",
			fmt.Sprintf("Too many wrong admin tokens from this address: try again in %v.", wait.Round(time.Second)))
		return
	}
	// Compare digests, so that the time taken says nothing about the
	// token, not even its length.
	got, want := sha256.Sum256([]byte(r.PostFormValue("token"))), sha256.Sum256([]byte(c.cfg.AdminToken))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		c.signInFailed(client)
		c.cfg.Logger.WarnContext(r.Context(), "console: sign-in with a wrong admin token", "remote", r.RemoteAddr)
		c.message(w, r, http.StatusForbidden, "Forbidden", "Wrong admin token.")
		return
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		http.Error(w, "console: no randomness", http.StatusInternalServerError)
		return
	}
	id := hex.EncodeToString(raw)
	now := time.Now()
	c.mu.Lock()
	for k, exp := range c.sessions {
		if now.After(exp) {
			delete(c.sessions, k)
		}
	}
	for len(c.sessions) >= maxSessions {
		oldest, at := "", time.Time{}
		for k, exp := range c.sessions {
			if oldest == "" || exp.Before(at) {
				oldest, at = k, exp
			}
		}
		delete(c.sessions, oldest)
	}
	c.sessions[id] = now.Add(c.cfg.SessionTTL)
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: c.cfg.Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: int(c.cfg.SessionTTL / time.Second)})
	http.Redirect(w, r, c.cfg.Prefix+"parked", http.StatusSeeOther)
}

// logout ends the session.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	if !c.authorized(w, r) {
		return
	}
	if id, ok := c.session(r); ok {
		c.mu.Lock()
		delete(c.sessions, id)
		c.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: c.cfg.Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, c.cfg.Prefix, http.StatusSeeOther)
}

// Failed sign-ins are throttled per client address: after
// maxFailedSignIns wrong tokens within failedSignInWindow, sign-ins from
// that address answer 429 until the window has passed, without comparing
// the token. The table of addresses is bounded: the oldest entries give
// way.
const (
	maxFailedSignIns   = 5
	failedSignInWindow = time.Minute
	maxFailedAddresses = 10000
)

// failedSignIns counts the wrong tokens of one address since start.
type failedSignIns struct {
	start time.Time
	count int
}

// clientAddr is the address sign-ins are throttled by: the connection's
// host (a proxy in front of the console makes all its clients one).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// signInBlocked returns how long sign-ins from addr stay refused (0: not).
func (c *Console) signInBlocked(addr string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.failures[addr]
	if f == nil {
		return 0
	}
	left := failedSignInWindow - time.Since(f.start)
	if left <= 0 {
		delete(c.failures, addr)
		return 0
	}
	if f.count < maxFailedSignIns {
		return 0
	}
	return left
}

// signInFailed counts a wrong token from addr.
func (c *Console) signInFailed(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	f := c.failures[addr]
	if f == nil || now.Sub(f.start) >= failedSignInWindow {
		if len(c.failures) >= maxFailedAddresses {
			for k, old := range c.failures {
				if now.Sub(old.start) >= failedSignInWindow || len(c.failures) >= maxFailedAddresses {
					delete(c.failures, k)
				}
			}
		}
		f = &failedSignIns{start: now}
		c.failures[addr] = f
	}
	f.count++
}
