package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// EnvChromium names the Chromium binary for the browser tests; scripts/test.sh sets it
// (installing Debian's chromium when it can). Without it, chromium, chromium-browser and
// google-chrome are looked up on PATH.
const EnvChromium = "PROJECTOR_CHROMIUM"

// Browser returns a chromedp context driving a headless Chromium, closed when the test
// ends. Without a Chromium the test is skipped, or fails when real servers are required
// (PROJECTOR_REQUIRE_REAL=1 or CI=true). When the test fails, the page is saved as a
// screenshot in the test's artifact directory (kept with go test -artifacts, as
// scripts/test.sh runs the tests) and the path logged.
func Browser(t testing.TB) context.Context {
	t.Helper()
	bin := os.Getenv(EnvChromium)
	if bin == "" {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				bin = p
				break
			}
		}
	}
	if bin == "" {
		if RequireReal() {
			t.Fatalf("testenv: a Chromium is required (%s) but none was found: run the tests with scripts/test.sh "+
				"(installs Debian's chromium), or set %s", requireRealWhy(), EnvChromium)
		}
		t.Skipf("testenv: no Chromium (set %s, or apt-get install chromium)", EnvChromium)
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(bin),
		chromedp.WindowSize(1366, 900), // a laptop screen
		chromedp.NoSandbox,             // root in CI containers
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("testenv: start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			Screenshot(t, ctx, "failure")
		}
		cancel()
		cancelAlloc()
	})
	return ctx
}

// Screenshot saves the browser's whole page as <name>.png in the test's artifact directory
// (t.ArtifactDir) and logs the path; it returns the path ("" when it could not).
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	dir := t.ArtifactDir()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(90))
	if err != nil {
		t.Logf("testenv: screenshot: %v", err)
		return ""
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("testenv: screenshot: %v", err)
		return ""
	}
	t.Logf("screenshot: %s", path)
	return path
}
