package console

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	c.renderPage(w, r, http.StatusOK, "parked", "Parked streams", max(int(c.cfg.SampleEvery/time.Second), 5), struct {
		Views []parkedView
		Done  string
	}{views, r.URL.Query().Get("done")})
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
			v.Key = Clean(string(rec.Key))
			for _, h := range rec.Headers {
				v.Headers = append(v.Headers, header{Key: Clean(h.Key), Value: Clean(string(h.Value))})
			}
			v.Payload, v.Binary = showPayload(rec.Value)
			v.Truncated = rec.ValueSize > len(rec.Value)
		}
	}
	c.renderPage(w, r, http.StatusOK, "stream", "Parked stream", 0, v)
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
	http.Redirect(w, r, c.cfg.Prefix+"parked?"+url.Values{"projection": {projection}, "done": {action + " of " + streamID}}.Encode(), http.StatusSeeOther)
}
