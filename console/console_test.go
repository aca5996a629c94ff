package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/console"
	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/controlplane/memcontrol"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/ops"
)

// Hostile values: markup and terminal escapes in stream and event IDs,
// errors, headers and payloads.
const (
	scriptID   = "<script>alert(1)</script>"
	terminalID = "process/acme/\x1b[31mred\x1b[0m"
	adminToken = "s3cret-admin-token-0123456789"
)

// fixture is a console on an in-memory control plane and an in-process
// Kafka whose topic "events" holds one record per parked stream.
type fixture struct {
	store   *memcontrol.Store
	ops     *ops.Client
	console *console.Console
	server  *httptest.Server
}

func newFixture(t *testing.T, token string) *fixture {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	return newFixtureOn(t, token, cluster.ListenAddrs(), memcontrol.NewStore(), "events")
}

func newFixtureOn(t *testing.T, token string, seeds []string, store controlplaneStore, topic string) *fixture {
	t.Helper()
	ctx := t.Context()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	oc, err := ops.New(ops.Config{Admin: store, Checkpoints: store, Kafka: kadmOf(cl), Topic: topic, Seeds: seeds})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ops: oc}
	if ms, ok := store.(*memcontrol.Store); ok {
		f.store = ms
	}
	for i, id := range []string{scriptID, terminalID} {
		rec := &kgo.Record{Topic: topic, Partition: int32(i), Key: []byte(id), Value: []byte(`{"note":"` + scriptID + `","esc":"\u001b[2J"}`),
			Headers: []kgo.RecordHeader{{Key: "projector.event-id", Value: []byte("evt-" + scriptID + "\x1b[31m")}}}
		res := cl.ProduceSync(ctx, rec)
		if err := res.FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := store.Park(ctx, "billing", controlplane.ParkedStream{StreamID: id, Sequence: 7, EventID: "evt-" + scriptID + "\x1b[31m", Type: "x",
			Reason: controlplane.ParkApplyFailed, Error: "boom " + scriptID + " \x1b]0;title\x07", ParkedAt: time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC),
			Position: &framework.Position{Partition: res[0].Record.Partition, Offset: res[0].Record.Offset}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Heartbeat(ctx, "billing", controlplane.ReplicaInfo{ID: "replica-" + scriptID, Host: "h1", Partitions: []int32{0, 1, 2}, State: "running",
		Applied: 1234567, Skipped: 3, Parked: 2, Held: 5, LagSeconds: 1.5}); err != nil {
		t.Fatal(err)
	}
	c, err := console.New(console.Config{Ops: oc, Projections: []string{"billing"}, AdminToken: token, MaxPayload: 1 << 10,
		SampleEvery: 50 * time.Millisecond, Links: []console.Link{{Title: "Balance groups", Path: "/console/billing/"}}})
	if err != nil {
		t.Fatal(err)
	}
	f.console = c
	f.server = httptest.NewServer(c)
	t.Cleanup(f.server.Close)
	return f
}

// client returns an HTTP client that keeps cookies and does not follow
// redirects.
func (f *fixture) client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, cl *http.Client, u string) (int, string, http.Header) {
	t.Helper()
	resp, err := cl.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func post(t *testing.T, cl *http.Client, u string, form url.Values) (int, string, *http.Response) {
	t.Helper()
	resp, err := cl.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

// checkSafe fails when body shows hostile markup or a raw control
// character, or the admin token.
func checkSafe(t *testing.T, what, body string) {
	t.Helper()
	if strings.Contains(body, "<script>") || strings.Contains(body, "alert(1)</script>") {
		t.Errorf("%s: unescaped markup", what)
	}
	if i := strings.IndexFunc(body, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' && r != '\r' || r == 0x7f }); i >= 0 {
		t.Errorf("%s: raw control character %q at %d: %q", what, body[i], i, body[max(i-40, 0):min(i+40, len(body))])
	}
	if strings.Contains(body, adminToken) {
		t.Errorf("%s: shows the admin token", what)
	}
}

func streamURL(base, id string) string {
	return base + "/console/parked/stream?" + url.Values{"projection": {"billing"}, "stream": {id}}.Encode()
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// signIn signs cl in and returns the CSRF token of its session.
func signIn(t *testing.T, f *fixture, cl *http.Client) string {
	t.Helper()
	code, _, resp := post(t, cl, f.server.URL+"/console/login", url.Values{"token": {adminToken}})
	if code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", code)
	}
	ck := resp.Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Path != "/console/" {
		t.Fatalf("session cookie = %+v", ck)
	}
	_, body, _ := get(t, cl, streamURL(f.server.URL, scriptID))
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the stream page after sign-in:\n%s", body)
	}
	return m[1]
}

func resolveURL(base, id string) string {
	return base + "/console/parked/resolve?" + url.Values{"projection": {"billing"}, "stream": {id}}.Encode()
}

type controlplaneStore interface {
	controlplane.Admin
	controlplane.CheckpointStore
	Park(ctx context.Context, projection string, p controlplane.ParkedStream) error
	Heartbeat(ctx context.Context, projection string, info controlplane.ReplicaInfo) error
}

func kadmOf(cl *kgo.Client) *kadm.Client { return kadm.NewClient(cl) }
