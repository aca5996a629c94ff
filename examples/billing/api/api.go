package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/ops"
	"github.com/projector-dev/projector/redischeckpoint"
)

// Status is GET /api/v1/status: the projection as the operations library
// reports it (ops.Status, the model projectorctl status shows: state, the
// group's lag per partition and in all, the replicas' reports, pause and
// replay, parked streams, versions, problems), and the runner replicas of
// the process that serves the API.
type Status struct {
	ops.Status
	// Error says why the projection's status could not be read (Kafka or
	// Redis unreachable); Local is reported all the same.
	Error string `json:"error,omitempty"`
	// Local are this process's replicas.
	Local Local `json:"local"`
	// UpdatedAt is when these numbers were taken.
	UpdatedAt time.Time `json:"updated_at"`
}

// Local is what the runner replicas of one process report.
type Local struct {
	// State is a word for people about this process: "catching-up",
	// "live", "not run by this process", ...
	State string `json:"state,omitempty"`
	// Applied counts events applied, Skipped duplicates skipped,
	// ParkedEvents events at which a stream was parked, Held events held
	// behind parked streams, by the replicas of this process
	// (kafkarunner.Runner.Stats).
	Applied      int64 `json:"applied"`
	Skipped      int64 `json:"skipped"`
	ParkedEvents int64 `json:"parked_events"`
	Held         int64 `json:"held"`
	// Replicas are the runner replicas of this process.
	Replicas []Replica `json:"replicas,omitempty"`
}

// Replica is one runner replica of this process.
type Replica struct {
	ID string `json:"id"`
	// State is the runner's state: "running", "paused", "stopped", ...
	State string `json:"state"`
	// NotReady is empty when the replica takes part in its group, else why not.
	NotReady string `json:"not_ready,omitempty"`
	// Partitions are the partitions the replica works on now.
	Partitions   []int32 `json:"partitions"`
	Applied      int64   `json:"applied"`
	Skipped      int64   `json:"skipped"`
	ParkedEvents int64   `json:"parked_events"`
	Held         int64   `json:"held"`
	LastError    string  `json:"last_error,omitempty"`
}

// StatusFunc reports the projection's status. It is called once per
// request to /api/v1/status, from the request's goroutine; ctx is the
// request's context.
type StatusFunc func(ctx context.Context) (Status, error)

// Config configures the API handler.
type Config struct {
	// Reader queries the read model (required).
	Reader *mabis.Reader
	// Status reports the projection's status. Default: a status that says
	// "unknown".
	Status StatusFunc
	// Logger receives one record per failed request. Default: discard.
	Logger *slog.Logger
	// WaitFor waits until the live read model has applied stream
	// streamID up to sequence and returns the versioned name of the read
	// model to read (redischeckpoint.Store.WaitFor for the projection):
	// the read-your-writes option of every read (wait_stream,
	// wait_sequence, wait_timeout). Nil: requests with the option are
	// refused (400).
	WaitFor func(ctx context.Context, streamID string, sequence uint64) (string, error)
}

// ReadModelHeader is the response header that names the version of the
// read model a read served: "billing" or "billing@v2".
const ReadModelHeader = "Projector-Read-Model"

// Bounds of the wait_timeout parameter.
const (
	DefaultWaitTimeout = 5 * time.Second
	MaxWaitTimeout     = 30 * time.Second
)

// New returns the API's handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Reader == nil {
		return nil, errors.New("api: Config.Reader is required")
	}
	if cfg.Status == nil {
		cfg.Status = func(context.Context) (Status, error) {
			st := Status{UpdatedAt: time.Now().UTC(), Local: Local{State: "unknown"}}
			st.Projection = mabis.ProjectionName
			return st, nil
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/months/{month}/balance-groups", s.balanceGroups)
	mux.HandleFunc("GET /api/v1/months/{month}/balance-groups/{eic}/series", s.series)
	mux.HandleFunc("GET /api/v1/months/{month}/malos/{malo}", s.malo)
	mux.HandleFunc("GET /api/v1/status", s.status)
	return withJSONErrors(mux, s), nil
}

type server struct{ cfg Config }

// Error is the body of every error response.
type Error struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
	// Wait describes a read-your-writes wait that failed: timed out (504)
	// or found its stream parked (409).
	Wait *WaitState `json:"wait,omitempty"`
	// Closed is the closure of the month a MaLo query asked for (410
	// Gone): close-month dropped the per-MaLo detail; the balance-group
	// series still answer.
	Closed *mabis.Closure `json:"closed,omitempty"`
}

// WaitState is what a failed wait saw.
type WaitState struct {
	// ReadModel is the live version whose cursor was read last.
	ReadModel string `json:"read_model,omitempty"`
	Stream    string `json:"stream"`
	// Sequence is the sequence awaited; Applied the last sequence of the
	// stream the read model had applied when it was read last (absent
	// when its cursor could not be read).
	Sequence uint64  `json:"sequence"`
	Applied  *uint64 `json:"applied,omitempty"`
	Timeout  string  `json:"timeout,omitempty"`
	// ParkedSequence, ParkedReason and ParkedError describe the parked
	// stream (409).
	ParkedSequence uint64 `json:"parked_sequence,omitempty"`
	ParkedReason   string `json:"parked_reason,omitempty"`
	ParkedError    string `json:"parked_error,omitempty"`
}

func (s *server) balanceGroups(w http.ResponseWriter, r *http.Request) {
	m, ok := s.month(w, r)
	if !ok {
		return
	}
	reader, ok := s.reader(w, r)
	if !ok {
		return
	}
	totals, err := reader.BalanceGroups(r.Context(), m)
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("reading the read model: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, totals)
}

func (s *server) series(w http.ResponseWriter, r *http.Request) {
	m, ok := s.month(w, r)
	if !ok {
		return
	}
	eic := r.PathValue("eic")
	if err := mabis.ValidateEIC(eic); err != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("parameter eic: %w", err))
		return
	}
	res := mabis.QuarterHourly
	if v := r.URL.Query().Get("resolution"); v != "" {
		var err error
		if res, err = mabis.ParseResolution(v); err != nil {
			s.fail(w, r, http.StatusBadRequest, fmt.Errorf("parameter resolution: %w", err))
			return
		}
	}
	reader, ok := s.reader(w, r)
	if !ok {
		return
	}
	series, err := reader.Series(r.Context(), m, eic, res)
	switch {
	case errors.Is(err, mabis.ErrUnknownBalanceGroup):
		s.fail(w, r, http.StatusNotFound, err)
		return
	case err != nil:
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("reading the read model: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, series)
}

// malo answers a MaLo's detail for a month; 410 Gone with the closure
// when the month is closed, 404 for a MaLo the month does not know.
func (s *server) malo(w http.ResponseWriter, r *http.Request) {
	m, ok := s.month(w, r)
	if !ok {
		return
	}
	malo := r.PathValue("malo")
	if err := mabis.ValidateMaLoID(malo); err != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("parameter malo: %w", err))
		return
	}
	reader, ok := s.reader(w, r)
	if !ok {
		return
	}
	detail, err := reader.MaLo(r.Context(), m, malo)
	if closed, ok := errors.AsType[*mabis.MonthClosedError](err); ok {
		writeJSON(w, http.StatusGone, Error{Error: err.Error(), Status: http.StatusGone, Closed: &closed.Closure})
		return
	}
	switch {
	case errors.Is(err, mabis.ErrUnknownMaLo):
		s.fail(w, r, http.StatusNotFound, err)
		return
	case err != nil:
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("reading the read model: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, detail)
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.cfg.Status(r.Context())
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("projection status: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// reader returns the reader of the version of the read model the request
// reads, and names it in the response's ReadModelHeader: the live version,
// resolved once, or with wait_stream and wait_sequence the version that
// WaitFor found to have applied the stream up to the sequence.
func (s *server) reader(w http.ResponseWriter, r *http.Request) (*mabis.Reader, bool) {
	wait, ok := s.waitParams(w, r)
	if !ok {
		return nil, false
	}
	var reader *mabis.Reader
	var err error
	if wait == nil {
		reader, err = s.cfg.Reader.Live(r.Context())
	} else {
		var name string
		if name, ok = s.wait(w, r, wait); !ok {
			return nil, false
		}
		reader, err = s.cfg.Reader.Version(name)
	}
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("resolving the read model's version: %w", err))
		return nil, false
	}
	w.Header().Set(ReadModelHeader, reader.ReadModel())
	return reader, true
}

// waitRequest is a request's read-your-writes option.
type waitRequest struct {
	stream   string
	sequence uint64
	timeout  time.Duration
}

// waitParams parses wait_stream, wait_sequence and wait_timeout: nil when
// the request has none.
func (s *server) waitParams(w http.ResponseWriter, r *http.Request) (*waitRequest, bool) {
	q := r.URL.Query()
	stream, seq, timeout := q.Get("wait_stream"), q.Get("wait_sequence"), q.Get("wait_timeout")
	bad := func(param string, err error) (*waitRequest, bool) {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("parameter %s: %w", param, err))
		return nil, false
	}
	switch {
	case !q.Has("wait_stream") && !q.Has("wait_sequence"):
		if q.Has("wait_timeout") {
			return bad("wait_timeout", errors.New("given without wait_stream and wait_sequence"))
		}
		return nil, true
	case s.cfg.WaitFor == nil:
		return bad("wait_stream", errors.New("this server cannot wait for the read model"))
	case !q.Has("wait_sequence"):
		return bad("wait_sequence", errors.New("required with wait_stream"))
	case !q.Has("wait_stream"):
		return bad("wait_stream", errors.New("required with wait_sequence"))
	}
	if err := framework.ValidateStreamID(stream); err != nil {
		return bad("wait_stream", err)
	}
	wr := &waitRequest{stream: stream, timeout: DefaultWaitTimeout}
	var err error
	if wr.sequence, err = strconv.ParseUint(seq, 10, 64); err != nil {
		return bad("wait_sequence", fmt.Errorf("%q is not a sequence (a non-negative integer)", seq))
	}
	if timeout != "" {
		if wr.timeout, err = time.ParseDuration(timeout); err != nil {
			return bad("wait_timeout", fmt.Errorf("%q is not a duration such as 500ms or 5s", timeout))
		}
		if wr.timeout <= 0 || wr.timeout > MaxWaitTimeout {
			return bad("wait_timeout", fmt.Errorf("%v is outside (0, %v]", wr.timeout, MaxWaitTimeout))
		}
	}
	return wr, true
}

// wait waits for the request's stream and sequence and returns the
// version to read; otherwise it answers 504 (timed out), 409 (the stream
// is parked) or 503.
func (s *server) wait(w http.ResponseWriter, r *http.Request, wr *waitRequest) (string, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), wr.timeout)
	defer cancel()
	name, err := s.cfg.WaitFor(ctx, wr.stream, wr.sequence)
	if err == nil {
		return name, true
	}
	state := &WaitState{Stream: wr.stream, Sequence: wr.sequence}
	var parked *redischeckpoint.StreamParkedError
	var waitErr *redischeckpoint.WaitError
	var invalid *framework.InvalidStreamIDError
	switch {
	case errors.As(err, &parked):
		state.ReadModel, state.Applied = parked.ReadModel, &parked.Applied
		state.ParkedSequence, state.ParkedReason, state.ParkedError = parked.Parked.Sequence, parked.Parked.Reason, parked.Parked.Error
		why := parked.Parked.Reason
		if parked.Parked.Error != "" {
			why += ": " + parked.Parked.Error
		}
		s.failWait(w, r, http.StatusConflict, fmt.Errorf("stream %s is parked at sequence %d (%s); %s will not apply it up to sequence %d before an admin resolves it",
			wr.stream, parked.Parked.Sequence, why, parked.ReadModel, wr.sequence), state)
	case errors.Is(err, redischeckpoint.ErrStreamParked):
		s.failWait(w, r, http.StatusConflict, err, state)
	case r.Context().Err() != nil:
		// The client went away: nobody to answer.
	case errors.Is(err, context.DeadlineExceeded):
		state.Timeout = wr.timeout.String()
		msg := fmt.Sprintf("waited %v for stream %s to be applied up to sequence %d: %v", wr.timeout, wr.stream, wr.sequence, err)
		if errors.As(err, &waitErr) {
			state.ReadModel = waitErr.ReadModel
			applied := "nothing known (its cursor could not be read)"
			if waitErr.Checked {
				state.Applied = &waitErr.Applied
				applied = "sequence " + strconv.FormatUint(waitErr.Applied, 10)
			}
			msg = fmt.Sprintf("waited %v for %s to apply stream %s up to sequence %d; it has applied it up to %s",
				wr.timeout, waitErr.ReadModel, wr.stream, wr.sequence, applied)
			if waitErr.LastError != nil {
				msg += fmt.Sprintf(" (the last check failed: %v)", waitErr.LastError)
			}
		}
		s.failWait(w, r, http.StatusGatewayTimeout, errors.New(msg), state)
	case errors.As(err, &invalid):
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("parameter wait_stream: %w", err))
	default:
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("waiting for the read model: %w", err))
	}
	return "", false
}

func (s *server) month(w http.ResponseWriter, r *http.Request) (mabis.Month, bool) {
	m, err := mabis.ParseMonth(r.PathValue("month"))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("parameter month: %w", err))
		return mabis.Month{}, false
	}
	return m, true
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	if status >= 500 {
		s.cfg.Logger.ErrorContext(r.Context(), "api request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	writeJSON(w, status, Error{Error: err.Error(), Status: status})
}

// failWait answers a failed wait, with what it saw.
func (s *server) failWait(w http.ResponseWriter, r *http.Request, status int, err error, state *WaitState) {
	if status >= 500 {
		s.cfg.Logger.WarnContext(r.Context(), "api read-your-writes wait failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	writeJSON(w, status, Error{Error: err.Error(), Status: status, Wait: state})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client went away; nothing left to tell it
}

// withJSONErrors turns the mux's own plain-text 404 and 405 answers into
// JSON errors: the mux decides (so 405 keeps its Allow header), this
// wrapper only rewrites the body.
func withJSONErrors(mux *http.ServeMux, s *server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r) // sets the path values, which h alone would not
			return
		}
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		for k, v := range rec.header {
			if k != "Content-Type" && k != "X-Content-Type-Options" && k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		status := rec.status
		if status == 0 {
			status = http.StatusNotFound
		}
		msg := fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)
		if status == http.StatusMethodNotAllowed {
			msg = fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, rec.header.Get("Allow"))
		}
		writeJSON(w, status, Error{Error: msg, Status: status})
	})
}

// statusRecorder captures the mux's error answer.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(status int)      { r.status = status }
