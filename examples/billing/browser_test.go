package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
)

// TestBrowserConsole drives the demo's console in a real browser (Debian's
// chromium, headless, through chromedp): the projections page shows three
// replicas and the lag reaching 0; a poison record appended to the topic
// (it does not decode) parks, shows in the parked list, and leaves it after
// a retry signed in with the admin token; a balance group's curve of March
// 2026 has 2,972 quarter-hour points in the SVG. On failure the page is
// saved as a screenshot in the test's artifact directory (go test
// -artifacts). With PROJECTOR_CONSOLE_SCREENSHOT=docs/console.png the
// projections page is saved there at the end, and a curve by hour as
// docs/console-curve.png (the README's pictures).
//
// Without a Chromium the test is skipped, unless PROJECTOR_REQUIRE_REAL=1 or
// CI=true (scripts/test.sh installs it): then it fails (testenv.Browser).
func TestBrowserConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo and a browser")
	}
	const token = "browser-test-admin-token"
	t.Setenv("PROJECTOR_KAFKA_BROKERS", "")
	t.Setenv("PROJECTOR_REDIS_URL", "")
	t.Setenv("PROJECTOR_CONSOLE_ADMIN_TOKEN", token)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-malos", "40", "-month", "2026-03", "-http", "127.0.0.1:0", "-partitions", "6"}, &out, &errOut)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	}()
	consoleLine := regexp.MustCompile(`console: (http://\S+/console/)`)
	var base string
	for base == "" {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("demo ended early: %v\n%s\n%s", err, out.String(), errOut.String())
		case <-time.After(100 * time.Millisecond):
		}
		if m := consoleLine.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
	}
	brokers := regexp.MustCompile(`Kafka: in-process fake \(kfake\) on \[([^\]]+)\]`).FindStringSubmatch(out.String())
	if brokers == nil {
		t.Fatalf("no Kafka address in the demo's output:\n%s", out.String())
	}

	// The browser outlives ctx, for the screenshot of a failure
	// (testenv.Browser saves it in the test's artifact directory); each
	// step has a deadline of its own.
	bctx := testenv.Browser(t)

	// waitPage loads url until js evaluates to true.
	waitPage := func(what, url, js string) {
		t.Helper()
		tries := 0
		for {
			err := doIn(bctx, chromedp.Navigate(url))
			var ok bool
			if err == nil {
				ok, err = runIn(bctx, chromedp.Evaluate[bool](js))
			}
			if err == nil && ok {
				return
			}
			if tries++; tries%20 == 0 {
				t.Logf("%s: still waiting (%v)", what, err)
			}
			if ctx.Err() != nil {
				html, _ := runIn(bctx, chromedp.OuterHTML(chromedp.CSS("main")))
				t.Fatalf("%s: never true on %s (%v):\n%.3000s", what, url, err, html)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	waitPage("three replicas and lag 0", base,
		`document.querySelectorAll("tr.replica").length === 3 && document.querySelector(".lag-records").textContent === "0"`)

	// A poison record: its sequence header does not decode. The replica
	// owning its partition parks it (a pseudo-stream "malformed/...").
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Fields(brokers[1])...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	poison := &kgo.Record{Topic: "mabis.process-events", Key: []byte("process/netz-musterstadt/poison"), Value: []byte(`{"poison":true}`),
		Headers: []kgo.RecordHeader{{Key: kafkastore.HeaderStreamID, Value: []byte("process/netz-musterstadt/poison")},
			{Key: kafkastore.HeaderSequence, Value: []byte("not-a-number")}, {Key: kafkastore.HeaderEventID, Value: []byte("poison-1")},
			{Key: kafkastore.HeaderType, Value: []byte("DayValuesReceived")}}}
	res := cl.ProduceSync(ctx, poison)
	if err := res.FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitPage("the poison record parked", base+"parked", fmt.Sprintf(
		`[...document.querySelectorAll("tr.parked-stream")].some(r => r.querySelector("a").textContent === "process/netz-musterstadt/poison" && r.textContent.includes("malformed") && r.textContent.includes("%d/%d"))`,
		res[0].Record.Partition, res[0].Record.Offset))
	waitPage("the projections page counts it", base, `document.querySelector(".parked-streams").textContent === "1"`)

	// Sign in with the token, retry on the stream's page.
	if err := doIn(bctx,
		chromedp.Navigate(base+"login"),
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), token),
		chromedp.Submit(chromedp.CSS(`input[name="token"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.parked`)),
		chromedp.Click(chromedp.CSS(`tr.parked-stream a`)),
		chromedp.WaitVisible(chromedp.CSS(`form.resolve`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="by"]`), "browser-test"),
		chromedp.SendKeys(chromedp.CSS(`input[name="reason"]`), "poison record passed over"),
		chromedp.Click(chromedp.CSS(`button[value="retry"]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
	); err != nil {
		t.Fatalf("retry in the browser: %v", err)
	}
	waitPage("the parked stream gone after the retry", base+"parked", `document.querySelectorAll("tr.parked-stream").length === 0`)
	waitPage("lag 0 again", base, `document.querySelector(".lag-records").textContent === "0"`)

	// A balance group's curve in March 2026 (the clock goes forward on the
	// 29th): 2,972 quarter hours, drawn and counted in the SVG.
	if err := doIn(bctx, chromedp.Navigate(base+"billing/?month=2026-03")); err != nil {
		t.Fatal(err)
	}
	group, err := runIn(bctx, chromedp.Evaluate[string](`document.querySelector("tr.group a").getAttribute("href")`))
	if err != nil {
		t.Fatal(err)
	}
	curve := strings.TrimSuffix(base, "/console/") + group
	waitPage("2,972 quarter-hour points", curve,
		`document.querySelector('g.series[data-series="energy"]').dataset.points === "2972" &&
		 [...document.querySelectorAll('polyline[data-series="energy"]')].reduce((n, p) => n + p.points.numberOfItems, 0) === 2972 &&
		 document.querySelector(".quarter-hours").textContent === "2972"`)
	waitPage("24 hours less one on the 29th", curve+"&resolution=hour",
		`document.querySelector('g.series[data-series="energy"]').dataset.points === "743"`)

	if file := os.Getenv("PROJECTOR_CONSOLE_SCREENSHOT"); file != "" {
		time.Sleep(20 * time.Second) // a few more lag samples for the charts
		if err := doIn(bctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS(`svg.chart`))); err != nil {
			t.Fatal(err)
		}
		png, err := runIn(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Fatal(err)
		}
		// And the curve by hour, beside it ("console-curve.png").
		if err := doIn(bctx, chromedp.Navigate(curve+"&resolution=hour"), chromedp.WaitVisible(chromedp.CSS(`svg.chart`))); err != nil {
			t.Fatal(err)
		}
		if png, err = runIn(bctx, chromedp.FullScreenshot(100)); err != nil {
			t.Fatal(err)
		}
		ext := filepath.Ext(file)
		if err := os.WriteFile(strings.TrimSuffix(file, ext)+"-curve"+ext, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// browserStep bounds each step in the browser.
const browserStep = 30 * time.Second

// doIn runs steps in the browser tab of ctx, within browserStep.
func doIn(ctx context.Context, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(ctx, browserStep)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// runIn runs a in the browser tab of ctx, within browserStep.
func runIn[T any](ctx context.Context, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, browserStep)
	defer cancel()
	return chromedp.Run(ctx, a)
}
