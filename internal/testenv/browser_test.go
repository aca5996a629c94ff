package testenv_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/projector-dev/projector/internal/testenv"
)

// TestBrowserRendersAPage drives the headless Chromium over a page of ours:
// the browser tests' harness works.
func TestBrowserRendersAPage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>t</title><p id="x">rendered</p><script>document.getElementById("x").textContent += " by script"</script>`)
	}))
	defer srv.Close()
	ctx := testenv.Browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text("#x"))
	if err != nil {
		t.Fatal(err)
	}
	if text != "rendered by script" {
		t.Errorf("text = %q", text)
	}
	path := testenv.Screenshot(t, ctx, "page")
	if path == "" {
		t.Fatal("no screenshot")
	}
	_ = os.Remove(path) // kept only when a browser test fails

}
