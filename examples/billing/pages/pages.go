package pages

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"iter"
	"net/http"
	"time"

	"github.com/projector-dev/projector/console"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
)

//go:embed templates/*.html
var templateFS embed.FS

// EventReader reads a stream's events (kafkastore.Store does).
type EventReader interface {
	ReadStream(ctx context.Context, streamID string, after uint64) iter.Seq2[framework.Event, error]
}

// Config configures the billing pages.
type Config struct {
	// Console is the console the pages are added to. Required.
	Console *console.Console
	// Reader reads the billing read model. Required.
	Reader *mabis.Reader
	// Month is shown when a request names none. Required.
	Month mabis.Month
	// Events, when set, shows a MaLo's stream of events on its page.
	Events EventReader
}

// Links are the pages' entries in the console's navigation, for
// console.Config.Links.
func Links(prefix string) []console.Link {
	return []console.Link{{Title: "Balance groups", Path: prefix + "billing/"}, {Title: "MaLo", Path: prefix + "billing/malo"}}
}

type pages struct {
	cfg  Config
	tmpl map[string]*template.Template
}

// Register adds the pages to cfg.Console.
func Register(cfg Config) error {
	if cfg.Console == nil || cfg.Reader == nil || cfg.Month == (mabis.Month{}) {
		return errors.New("pages: Config.Console, Reader and Month are required")
	}
	p := &pages{cfg: cfg, tmpl: map[string]*template.Template{}}
	funcs := console.Funcs()
	funcs["kwh"] = mabis.FormatWh
	funcs["local"] = func(t interface{ Format(string) string }) string { return t.Format("2006-01-02 15:04 MST") }
	funcs["berlin"] = func(t time.Time) string { return t.In(mabis.Berlin()).Format("2006-01-02 15:04 MST") }
	for _, name := range []string{"groups", "curve", "malo"} {
		t, err := template.New(name+".html").Funcs(funcs).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return err
		}
		p.tmpl[name] = t
	}
	prefix := cfg.Console.Prefix()
	c := cfg.Console
	c.Handle("GET "+prefix+"billing/{$}", http.HandlerFunc(p.groups))
	c.Handle("GET "+prefix+"billing/groups/{eic}", http.HandlerFunc(p.curve))
	c.Handle("GET "+prefix+"billing/groups/{eic}/series.csv", http.HandlerFunc(p.csv))
	c.Handle("GET "+prefix+"billing/malo", http.HandlerFunc(p.malo))
	return nil
}

// month reads ?month=, the configured month when absent; it answers 400
// itself for a malformed one.
func (p *pages) month(w http.ResponseWriter, r *http.Request) (mabis.Month, bool) {
	s := r.URL.Query().Get("month")
	if s == "" {
		return p.cfg.Month, true
	}
	m, err := mabis.ParseMonth(s)
	if err != nil {
		p.fail(w, r, http.StatusBadRequest, fmt.Errorf("parameter month: %w", err))
		return mabis.Month{}, false
	}
	return m, true
}

var failTemplate = template.Must(template.New("fail").Funcs(console.Funcs()).Parse(`<p class="error">{{clean .}}</p>`))

func (p *pages) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	p.cfg.Console.Render(w, r, status, http.StatusText(status), 0, failTemplate, err.Error())
}

// readErr answers an error of the read model.
func (p *pages) readErr(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, mabis.ErrUnknownBalanceGroup), errors.Is(err, mabis.ErrUnknownMaLo):
		status = http.StatusNotFound
	case errors.Is(err, mabis.ErrMonthClosed):
		status = http.StatusGone
	case errors.Is(err, mabis.ErrInvalidEIC), errors.Is(err, mabis.ErrInvalidMaLoID):
		status = http.StatusBadRequest
	}
	p.fail(w, r, status, err)
}

// live resolves the live version of the read model once per request.
func (p *pages) live(w http.ResponseWriter, r *http.Request) (*mabis.Reader, bool) {
	rd, err := p.cfg.Reader.Live(r.Context())
	if err != nil {
		p.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("resolving the read model's version: %w", err))
		return nil, false
	}
	return rd, true
}
