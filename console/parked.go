package console

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/ops"
)

// parkedView is the parked streams of one projection.
type parkedView struct {
	Projection string
	Parked     []controlplane.ParkedStream
	More       int // parked streams not listed (over maxParkedShown)
	Err        string
}

// parked lists the parked streams of every projection, or of the one
// named by ?projection=.
func (c *Console) parked(w http.ResponseWriter, r *http.Request) {
	names := c.cfg.Projections
	if p := r.URL.Query().Get("projection"); p != "" {
		if !slices.Contains(names, p) {
			c.message(w, r, http.StatusNotFound, "Not found", "No projection "+p+" in this console.")
			return
		}
		names = []string{p}
	}
	views := make([]parkedView, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			views[i].Projection = name
			ps, err := c.cfg.Ops.Parked(r.Context(), name)
			if err != nil {
				views[i].Err = err.Error()
			}
			views[i].Parked = ps
		})
	}
	wg.Wait()
	for i := range views {
		if n := len(views[i].Parked); n > maxParkedShown {
			views[i].Parked, views[i].More = views[i].Parked[:maxParkedShown], n-maxParkedShown
		}
	}
	// The notice of a resolution this console carried out: only with the
	// signature the redirect after it carries, so that a crafted link
	// cannot make the page claim one.
	q := r.URL.Query()
	done := ""
	if action, stream := q.Get("done"), q.Get("stream"); action != "" && hmac.Equal([]byte(q.Get("sig")), []byte(c.doneSignature(action, stream))) {
		done = action + " of " + stream
	}
	c.renderPage(w, r, http.StatusOK, "parked", "Parked streams", max(int(c.cfg.SampleEvery/time.Second), 5), struct {
		Views []parkedView
		Done  string
	}{views, done})
}

// maxParkedShown caps the rows of a projection's parked list.
const maxParkedShown = 500

// doneSignature signs the notice of a carried-out resolution.
func (c *Console) doneSignature(action, streamID string) string {
	m := hmac.New(sha256.New, c.csrfKey)
	m.Write([]byte("done\x00" + action + "\x00" + streamID))
	return hex.EncodeToString(m.Sum(nil))
}

// streamView is a parked stream's page.
type streamView struct {
	Projection string
	Parked     controlplane.ParkedStream
	Record     *ops.ParkedRecord
	RecordErr  string
	Headers    []header
	Key        string
	Payload    string
	Binary     bool
	Truncated  bool
	// Actions says whether retry and skip are offered: an admin token is
	// configured (the form then asks to sign in, or posts with the
	// session's CSRF token).
	Actions    bool
	Retryable  bool
	Resolvable bool
}

type header struct{ Key, Value string }

// stream shows a parked stream: where it stopped and why, and the record.
func (c *Console) stream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	projection, streamID := q.Get("projection"), q.Get("stream")
	if !slices.Contains(c.cfg.Projections, projection) {
		c.message(w, r, http.StatusNotFound, "Not found", "No projection "+projection+" in this console.")
		return
	}
	list, err := c.cfg.Ops.Parked(r.Context(), projection)
	if err != nil {
		c.message(w, r, http.StatusServiceUnavailable, "Unavailable", err.Error())
		return
	}
	i := slices.IndexFunc(list, func(p controlplane.ParkedStream) bool { return p.StreamID == streamID })
	if i < 0 {
		c.message(w, r, http.StatusNotFound, "Not parked", "Stream "+streamID+" of "+projection+" is not parked (any more).")
		return
	}
	v := streamView{Projection: projection, Parked: list[i], Actions: c.cfg.AdminToken != "", Resolvable: list[i].Resolving == nil}
	switch list[i].Reason {
	case controlplane.ParkConflict, controlplane.ParkPartialApply, controlplane.ParkMisplaced:
	default:
		v.Retryable = true
	}
	if list[i].Position != nil {
		rec, err := c.cfg.Ops.ParkedRecord(r.Context(), projection, streamID, c.cfg.MaxPayload)
		if err != nil {
			v.RecordErr = err.Error()
		} else {
			v.Record = &rec
			v.Key = Clean(capText(rec.Key))
			for i, h := range rec.Headers {
				if i == maxHeadersShown {
					v.Headers = append(v.Headers, header{Key: "…", Value: fmt.Sprintf("%d more headers not shown", len(rec.Headers)-i)})
					break
				}
				v.Headers = append(v.Headers, header{Key: Clean(capText([]byte(h.Key))), Value: Clean(capText(h.Value))})
			}
			v.Truncated = rec.ValueSize > len(rec.Value)
			value := rec.Value
			if v.Truncated {
				value = trimToRune(value)
			}
			v.Payload, v.Binary = showPayload(value)
		}
	}
	c.renderPage(w, r, http.StatusOK, "stream", "Parked stream", 0, v)
}

// The key and each header of a parked record are shown up to
// maxFieldShown bytes, and at most maxHeadersShown headers.
const (
	maxFieldShown   = 4 << 10
	maxHeadersShown = 64
)

// capText returns b as a string of at most maxFieldShown bytes, marked
// when cut.
func capText(b []byte) string {
	if len(b) <= maxFieldShown {
		return string(b)
	}
	return string(trimToRune(b[:maxFieldShown])) + fmt.Sprintf("… (%d bytes, %d shown)", len(b), maxFieldShown)
}

// trimToRune drops the bytes of a UTF-8 character a cut split at the end
// of b, so that cut text still reads as text.
func trimToRune(b []byte) []byte {
	for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			break
		}
	}
	return b
}

// showPayload returns a payload fit to show: indented JSON, text, or a
// hex dump of binary data.
func showPayload(b []byte) (string, bool) {
	var out bytes.Buffer
	if json.Valid(b) && json.Indent(&out, b, "", "  ") == nil {
		return CleanBlock(out.String()), false
	}
	if utf8.Valid(b) {
		return CleanBlock(string(b)), false
	}
	return hex.Dump(b), true
}

// resolve records a retry or skip of a parked stream, as projectorctl
// parked retry|skip does, with who (the form's "by", noted as done in the
// console) and why.
func (c *Console) resolve(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if !c.authorized(w, r) {
		return
	}
	// The stream's ID is in the URL (query-escaped: it may hold any byte),
	// the rest in the form.
	projection, streamID, action := r.URL.Query().Get("projection"), r.URL.Query().Get("stream"), r.PostFormValue("action")
	by, reason := strings.TrimSpace(r.PostFormValue("by")), strings.TrimSpace(r.PostFormValue("reason"))
	switch {
	case !slices.Contains(c.cfg.Projections, projection):
		c.message(w, r, http.StatusNotFound, "Not found", "No projection "+projection+" in this console.")
		return
	case action != controlplane.ResolveRetry && action != controlplane.ResolveSkip:
		c.message(w, r, http.StatusBadRequest, "Bad request", "The action must be retry or skip.")
		return
	case by == "":
		c.message(w, r, http.StatusBadRequest, "Bad request", "Say who you are: it is recorded with the "+action+".")
		return
	case action == controlplane.ResolveSkip && reason == "":
		c.message(w, r, http.StatusBadRequest, "Bad request", "A skip needs a reason: it is recorded with the skip.")
		return
	}
	_, err := c.cfg.Ops.Resolve(r.Context(), ops.ResolveRequest{Projection: projection, StreamID: streamID, Action: action,
		By: by + " (console)", Reason: reason})
	switch {
	case errors.Is(err, ops.ErrNotFound):
		c.message(w, r, http.StatusNotFound, "Not parked", err.Error())
		return
	case err != nil:
		c.message(w, r, http.StatusConflict, "Not done", err.Error())
		return
	}
	c.cfg.Logger.InfoContext(r.Context(), "console: parked stream resolved", "projection", projection, "stream", Clean(streamID), "action", action, "by", Clean(by), "reason", Clean(reason))
	http.Redirect(w, r, c.cfg.Prefix+"parked?"+url.Values{"projection": {projection}, "done": {action}, "stream": {streamID},
		"sig": {c.doneSignature(action, streamID)}}.Encode(), http.StatusSeeOther)
}
