package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/console"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/ops"
	"github.com/projector-dev/projector/redischeckpoint"
)

// TestConsoleWithRunner drives the console against the Kafka and Redis of
// testenv (real servers under scripts/test.sh and scripts/infra.sh; a test
// failure instead of the fakes with PROJECTOR_REQUIRE_REAL=1 or CI=true)
// and a running replica: a poison event parks its stream with a hostile
// ID, the console lists it escaped and shows its record, an operator
// signed in with the admin token retries it with the CSRF token, the
// replica carries the retry out, the stream leaves the list, the lag
// reaches 0, and the retry is in the store's audit.
func TestConsoleWithRunner(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	kenv, renv := testenv.Kafka(t), testenv.Redis(t)
	// The event topic and its catalog, as a writer creates them.
	topic := kenv.TopicName(t, "console")
	events, err := kafkastore.New(ctx, kafkastore.Config{Seeds: kenv.Seeds, Topic: topic, Partitions: 3, Guard: appendguard.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: renv.Client, Namespace: renv.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	const name = "console-test"
	var buggy atomic.Bool
	buggy.Store(true)
	p, err := store.NewAtomicProjection(name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type == "Poison" && buggy.Load() {
			return fmt.Errorf("cannot apply %s: poison \x1b[31m<b>", e.EventID)
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Markup in the stream ID (control characters make it invalid: such a
	// record parks as malformed), a terminal escape in the error.
	hostile := "process/acme/<script>alert(1)</script>"
	cl := kenv.Client(t)
	for i, typ := range []string{"Counted", "Poison", "Counted"} {
		seq := strconv.Itoa(i + 1)
		for _, stream := range []string{hostile, "process/acme/calm"} {
			if stream != hostile && typ == "Poison" {
				typ = "Counted"
			}
			rec := &kgo.Record{Topic: topic, Key: []byte(stream), Value: []byte(`{"n":` + seq + `}`), Headers: []kgo.RecordHeader{
				{Key: kafkastore.HeaderStreamID, Value: []byte(stream)}, {Key: kafkastore.HeaderSequence, Value: []byte(seq)},
				{Key: kafkastore.HeaderEventID, Value: []byte("evt-" + seq + "-<i>")}, {Key: kafkastore.HeaderType, Value: []byte(typ)},
			}}
			if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	r, err := kafkarunner.New(kafkarunner.Config{Seeds: kenv.Seeds, Topic: topic, Group: name, Projection: p, Checkpoints: store, ReplicaID: "replica-1",
		Retry: kafkarunner.RetryPolicy{Attempts: 1}, ParkedRefresh: 200 * time.Millisecond, ControlRefresh: 200 * time.Millisecond,
		FlushInterval: 50 * time.Millisecond, SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRunner := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- r.Run(runCtx) }()
	defer func() {
		stopRunner()
		if err := <-ran; err != nil {
			t.Errorf("runner: %v", err)
		}
	}()

	oc, err := ops.New(ops.Config{Admin: store, Checkpoints: store, Kafka: kenv.Admin(t), Seeds: kenv.Seeds, Topic: topic, Group: name})
	if err != nil {
		t.Fatal(err)
	}
	c, err := console.New(console.Config{Ops: oc, Projections: []string{name}, AdminToken: adminToken, SampleEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sampleCtx, stopSampler := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		_ = c.Run(sampleCtx)
	}()
	defer func() {
		stopSampler()
		<-sampled
	}()
	srv := httptest.NewServer(c)
	defer srv.Close()
	f := &fixture{server: srv}
	admin := f.client(t)

	escaped := "process/acme/&lt;script&gt;alert(1)&lt;/script&gt;</a>"
	waitFor := func(path, want string) string {
		t.Helper()
		for {
			code, body, _ := get(t, admin, srv.URL+path)
			checkSafe(t, path, body)
			if code == http.StatusOK && strings.Contains(body, want) {
				return body
			}
			select {
			case err := <-ran:
				ran <- err
				t.Fatalf("the runner ended: %v", err)
			default:
			}
			if ctx.Err() != nil {
				_, parked, _ := get(t, admin, srv.URL+"/console/parked")
				t.Fatalf("GET %s never showed %q; last %d:\n%s\nparked:\n%s", path, want, code, body, parked)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("/console/parked", escaped)
	body := waitFor("/console/", `<span class="parked-streams">1</span>`)
	for _, want := range []string{`<tr class="replica"><td>replica-1</td>`, `class="state state-running"`} {
		if !strings.Contains(body, want) {
			t.Errorf("projections page lacks %q", want)
		}
	}
	streamPage := "/console/parked/stream?" + url.Values{"projection": {name}, "stream": {hostile}}.Encode()
	body = waitFor(streamPage, `&#34;n&#34;: 2`) // the parked record's payload, from Kafka
	for _, want := range []string{"projector.event-id", "evt-2-&lt;i&gt;", "apply-failed", `poison \x1b[31m&lt;b&gt;`, "Sign in"} {
		if !strings.Contains(body, want) {
			t.Errorf("stream page lacks %q", want)
		}
	}

	// The fix is deployed; the operator retries in the console.
	buggy.Store(false)
	csrf := signInTo(t, srv.URL, admin, streamPage)
	resolve := srv.URL + "/console/parked/resolve?" + url.Values{"projection": {name}, "stream": {hostile}}.Encode()
	if code, body, _ := post(t, admin, resolve, url.Values{"action": {"retry"}, "by": {"alice"}, "reason": {"fixed"}}); code != http.StatusForbidden {
		t.Fatalf("retry without CSRF: %d\n%s", code, body)
	}
	if code, body, _ := post(t, admin, resolve, url.Values{"csrf": {csrf}, "action": {"retry"}, "by": {"alice"}, "reason": {"fixed"}}); code != http.StatusSeeOther {
		t.Fatalf("retry: %d\n%s", code, body)
	}
	waitFor("/console/parked", "no parked stream")
	waitFor("/console/", `<span class="lag-records">0</span>`)
	counts, err := renv.Client.HGetAll(ctx, p.Key("counts")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if counts[hostile] != "3" || counts["process/acme/calm"] != "3" {
		t.Errorf("counts after the retry = %v, want 3 each", counts)
	}
	audit, err := store.Resolutions(ctx, name, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 1 || audit[0].By != "alice (console)" || audit[0].Reason != "fixed" || audit[0].Action != "retry" || audit[0].StreamID != hostile {
		t.Errorf("audit = %+v", audit)
	}
}

// signInTo signs cl in and returns the CSRF token shown on page.
func signInTo(t *testing.T, base string, cl *http.Client, page string) string {
	t.Helper()
	if code, _, _ := post(t, cl, base+"/console/login", url.Values{"token": {adminToken}}); code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", code)
	}
	_, body, _ := get(t, cl, base+page)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on %s after sign-in", page)
	}
	return m[1]
}
