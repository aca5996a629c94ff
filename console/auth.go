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
	// The attempt is counted before the body is read, so that requests
	// sent at once (or with their bodies held back) cannot all pass the
	// check before the first failure is counted; a right token gives its
	// attempt back.
	client := clientAddr(r)
	if wait := c.takeSignIn(client); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Round(time.Second)/time.Second)+1))
		c.message(w, r, http.StatusTooManyRequests, "Too many attempts",
			fmt.Sprintf("Too many wrong admin tokens from this address: try again in %v.", wait.Round(time.Second)))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	// Compare digests, so that the time taken says nothing about the
	// token, not even its length.
	got, want := sha256.Sum256([]byte(r.PostFormValue("token"))), sha256.Sum256([]byte(c.cfg.AdminToken))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		c.cfg.Logger.WarnContext(r.Context(), "console: sign-in with a wrong admin token", "remote", r.RemoteAddr)
		c.message(w, r, http.StatusForbidden, "Forbidden", "Wrong admin token.")
		return
	}
	c.giveBackSignIn(client)
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

// Sign-ins are throttled per client address: each attempt takes one of
// maxFailedSignIns within failedSignInWindow before its token is compared,
// and a right token gives it back. When they are used up, sign-ins from
// that address answer 429 until the window has passed, without reading or
// comparing the token. IPv6 addresses count per /64 (what one host
// usually holds). The table of addresses is bounded: expired entries go
// first, then the oldest.
const (
	maxFailedSignIns   = 5
	failedSignInWindow = time.Minute
	maxFailedAddresses = 10000
)

// failedSignIns counts the attempts of one address since start.
type failedSignIns struct {
	start time.Time
	count int
}

// clientAddr is the address sign-ins are throttled by: the connection's
// host, an IPv6 one as its /64 (a proxy in front of the console makes all
// its clients one).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return host
}

// takeSignIn takes an attempt for addr, or returns how long sign-ins from
// addr stay refused.
func (c *Console) takeSignIn(addr string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	f := c.failures[addr]
	if f != nil && now.Sub(f.start) >= failedSignInWindow {
		delete(c.failures, addr)
		f = nil
	}
	if f == nil {
		if len(c.failures) >= maxFailedAddresses {
			c.evictSignInsLocked(now)
		}
		f = &failedSignIns{start: now}
		c.failures[addr] = f
	}
	if f.count >= maxFailedSignIns {
		return failedSignInWindow - now.Sub(f.start)
	}
	f.count++
	return 0
}

// giveBackSignIn returns the attempt of a right token.
func (c *Console) giveBackSignIn(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.failures[addr]; f != nil && f.count > 0 {
		f.count--
	}
}

// evictSignInsLocked makes room in the table: expired entries, else the
// oldest.
func (c *Console) evictSignInsLocked(now time.Time) {
	oldest, at := "", now
	for k, f := range c.failures {
		if now.Sub(f.start) >= failedSignInWindow {
			delete(c.failures, k)
			continue
		}
		if f.start.Before(at) {
			oldest, at = k, f.start
		}
	}
	if len(c.failures) >= maxFailedAddresses && oldest != "" {
		delete(c.failures, oldest)
	}
}
