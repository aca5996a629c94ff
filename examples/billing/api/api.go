package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/projector-dev/projector/examples/billing/mabis"
)

// Status is the projection's status as GET /api/v1/status reports it. The
// runner that drives the projection fills it.
type Status struct {
	Projection string `json:"projection"`
	// Group is the Kafka consumer group the replicas share.
	Group string `json:"group,omitempty"`
	// State is a word for people: "catching-up", "live", "stopped", ...
	State string `json:"state"`
	// Lag is the number of records not yet applied and committed, over
	// every partition of the topic; LagByPartition per partition. LagError
	// says why the lag could not be measured (Lag is then -1).
	Lag            int64           `json:"lag"`
	LagByPartition map[int32]int64 `json:"lag_by_partition,omitempty"`
	LagError       string          `json:"lag_error,omitempty"`
	// Applied counts events applied, Skipped duplicates skipped, by the
	// replicas of this process (kafkastore.Runner.Stats).
	Applied int64 `json:"applied"`
	Skipped int64 `json:"skipped"`
	// ParkedEvents counts events at which a stream was parked, Held the
	// events held behind parked streams (kafkastore.Runner.Stats).
	ParkedEvents int64 `json:"parked_events"`
	Held         int64 `json:"held"`
	// Parked is the number of parked streams of the projection (over every
	// replica), ParkedStreams the streams themselves.
	Parked        int            `json:"parked"`
	ParkedStreams []ParkedStream `json:"parked_streams,omitempty"`
	// Replicas are the runner replicas of this process.
	Replicas []Replica `json:"replicas,omitempty"`
	// UpdatedAt is when these numbers were taken.
	UpdatedAt time.Time `json:"updated_at"`
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

// ParkedStream is a stream whose processing stopped at one event.
type ParkedStream struct {
	StreamID string    `json:"stream_id"`
	Sequence uint64    `json:"sequence"`
	Type     string    `json:"type,omitempty"`
	Reason   string    `json:"reason"`
	Error    string    `json:"error"`
	ParkedAt time.Time `json:"parked_at"`
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
}

// New returns the API's handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Reader == nil {
		return nil, errors.New("api: Config.Reader is required")
	}
	if cfg.Status == nil {
		cfg.Status = func(context.Context) (Status, error) {
			return Status{Projection: mabis.ProjectionName, State: "unknown", UpdatedAt: time.Now().UTC()}, nil
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/months/{month}/balance-groups", s.balanceGroups)
	mux.HandleFunc("GET /api/v1/months/{month}/balance-groups/{eic}/series", s.series)
	mux.HandleFunc("GET /api/v1/status", s.status)
	return withJSONErrors(mux, s), nil
}

type server struct{ cfg Config }

// Error is the body of every error response.
type Error struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

func (s *server) balanceGroups(w http.ResponseWriter, r *http.Request) {
	m, ok := s.month(w, r)
	if !ok {
		return
	}
	totals, err := s.cfg.Reader.BalanceGroups(r.Context(), m)
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
	series, err := s.cfg.Reader.Series(r.Context(), m, eic, res)
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

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.cfg.Status(r.Context())
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("projection status: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, st)
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
