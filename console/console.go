package console

import (
	"bytes"
	"crypto/rand"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/projector-dev/projector/ops"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures a [Console]. Zero values are the documented defaults.
type Config struct {
	// Ops is the operations client of the projections' topic. Required;
	// give it Config.Seeds so that the console can show parked records.
	Ops *ops.Client
	// Projections are the projections shown ("billing"). Required.
	Projections []string
	// Prefix is the path the console is served under (default
	// "/console/"); it must start and end with "/".
	Prefix string
	// AdminToken, when set, lets an operator who signs in with it retry
	// and skip parked streams. Empty: the console is read-only. Keep it
	// out of flags and logs (PROJECTOR_CONSOLE_ADMIN_TOKEN).
	AdminToken string
	// Links are the program's own pages, shown in the navigation.
	Links []Link
	// SampleEvery is how often [Console.Run] samples the lag (default
	// 5s); History how long the samples are kept (default 15m).
	SampleEvery time.Duration
	History     time.Duration
	// MaxPayload caps the payload shown of a parked record (default 64
	// KiB).
	MaxPayload int
	// SessionTTL is how long a sign-in lasts (default 8h).
	SessionTTL time.Duration
	// Logger logs failed samples (default slog.Default()).
	Logger *slog.Logger
}

// Link is a page in the console's navigation.
type Link struct {
	Title string
	Path  string
}

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "/console/"
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = 5 * time.Second
	}
	if c.History <= 0 {
		c.History = 15 * time.Minute
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = 64 << 10
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 8 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Ops == nil {
		errs = append(errs, errors.New("console: Config.Ops is required"))
	}
	if len(c.Projections) == 0 {
		errs = append(errs, errors.New("console: Config.Projections is required"))
	}
	if c.Prefix != "" && (!strings.HasPrefix(c.Prefix, "/") || !strings.HasSuffix(c.Prefix, "/")) {
		errs = append(errs, errors.New("console: Config.Prefix must start and end with /"))
	}
	return errors.Join(errs...)
}

// Console serves the console's pages. It is an http.Handler for paths
// under Config.Prefix.
type Console struct {
	cfg     Config
	mux     *http.ServeMux
	pages   map[string]*template.Template
	samples *sampler
	csrfKey []byte

	mu       sync.Mutex
	sessions map[string]time.Time      // session ID -> expiry
	failures map[string]*failedSignIns // by client address
}

// New returns a console for cfg. It starts nothing: run the lag sampler
// with [Console.Run].
func New(cfg Config) (*Console, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	c := &Console{cfg: cfg, mux: http.NewServeMux(), pages: map[string]*template.Template{},
		samples: newSampler(int(cfg.History / cfg.SampleEvery)), csrfKey: make([]byte, 32), sessions: map[string]time.Time{},
		failures: map[string]*failedSignIns{}}
	if _, err := rand.Read(c.csrfKey); err != nil {
		return nil, err
	}
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	for _, page := range []string{"projections", "parked", "stream", "login", "message"} {
		t := template.Must(template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+page+".html"))
		c.pages[page] = t
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	p := cfg.Prefix
	c.mux.Handle("GET "+p+"static/", http.StripPrefix(p+"static/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET "+p+"{$}", c.projections)
	c.mux.HandleFunc("GET "+p+"parked", c.parked)
	c.mux.HandleFunc("GET "+p+"parked/stream", c.stream)
	c.mux.HandleFunc("POST "+p+"parked/resolve", c.resolve)
	c.mux.HandleFunc("GET "+p+"login", c.loginForm)
	c.mux.HandleFunc("POST "+p+"login", c.login)
	c.mux.HandleFunc("POST "+p+"logout", c.logout)
	return c, nil
}

// Prefix returns the path the console is served under.
func (c *Console) Prefix() string { return c.cfg.Prefix }

// AddLinks adds entries to the navigation, for pages added with
// [Console.Handle]. Call it before the console serves.
func (c *Console) AddLinks(links ...Link) { c.cfg.Links = append(c.cfg.Links, links...) }

// Handle adds a page of the program's own under the console (pattern as
// http.ServeMux takes it, under Prefix). Render it with [Console.Render].
func (c *Console) Handle(pattern string, h http.Handler) { c.mux.Handle(pattern, h) }

// ServeHTTP serves the console, with headers that keep its pages from
// being framed, sniffed, cached or given scripts or styles from
// elsewhere.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	if !strings.HasPrefix(r.URL.Path, c.cfg.Prefix+"static/") {
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

// layoutData is what the layout shows around a page.
type layoutData struct {
	Title   string
	Prefix  string
	Links   []Link
	Admin   bool // an admin token is configured
	Session bool // the request is signed in
	CSRF    string
	Refresh int // seconds; 0: no auto-refresh
	Now     time.Time
	Content template.HTML
	Data    any
}

// Render writes a page in the console's layout with status: body (an
// html/template that escapes what it shows) executed with data, under
// title. refresh > 0 reloads the page every refresh seconds.
func (c *Console) Render(w http.ResponseWriter, r *http.Request, status int, title string, refresh int, body *template.Template, data any) {
	var buf bytes.Buffer
	if err := body.Execute(&buf, data); err != nil {
		c.cfg.Logger.ErrorContext(r.Context(), "console: rendering", "page", title, "error", err)
		http.Error(w, "console: rendering failed", http.StatusInternalServerError)
		return
	}
	c.renderPage(w, r, status, "message", title, refresh, template.HTML(buf.String())) // executed by html/template above
}

// renderPage writes one of the console's own pages.
func (c *Console) renderPage(w http.ResponseWriter, r *http.Request, status int, page, title string, refresh int, data any) {
	ld := layoutData{Title: title, Prefix: c.cfg.Prefix, Links: c.cfg.Links, Admin: c.cfg.AdminToken != "", Refresh: refresh, Now: time.Now().UTC(), Data: data}
	if id, ok := c.session(r); ok {
		ld.Session, ld.CSRF = true, c.csrfToken(id)
	}
	if html, ok := data.(template.HTML); ok {
		ld.Content = html
	}
	var buf bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&buf, "layout.html", ld); err != nil {
		c.cfg.Logger.ErrorContext(r.Context(), "console: rendering", "page", page, "error", err)
		http.Error(w, "console: rendering failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// message shows a short message (an error, a refusal) as a page.
func (c *Console) message(w http.ResponseWriter, r *http.Request, status int, title, text string) {
	body := template.Must(template.New("m").Parse(`<p class="message">{{.}}</p>`))
	c.Render(w, r, status, title, 0, body, Clean(text))
}

// Funcs are the template functions the console's pages use, for a
// program's own pages: clean ([Clean]), utc (a time as RFC 3339 in UTC),
// num (an integer with thousands separated by commas). The map is a copy:
// add to it freely.
func Funcs() template.FuncMap { return maps.Clone(funcs) }

var funcs = template.FuncMap{
	"clean": Clean,
	"utc": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"num": formatInt,
}
