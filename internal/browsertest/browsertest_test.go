package browsertest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

func TestNewRendersAndScreenshots(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>t</title><button id="b" onclick="document.getElementById('out').textContent='clicked'">go</button><p id="out"></p>`)
	}))
	t.Cleanup(srv.Close)

	ctx := New(t)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL),
		chromedp.Click(chromedp.ID("b")),
		chromedp.WaitVisible(chromedp.ID("out")),
	); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("out")))
	if err != nil {
		t.Fatal(err)
	}
	if got != "clicked" {
		t.Fatalf("text = %q, want clicked", got)
	}

	Screenshot(t, ctx, "browsertest-selftest")
	dir, err := ArtifactsDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "browsertest-selftest.png"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 || string(b[1:4]) != "PNG" {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(b))
	}
}

func TestChromiumPathHonoursEnv(t *testing.T) {
	t.Parallel()
	_, err := chromiumPath(func(string) string { return "/nonexistent/chromium" })
	if err == nil {
		t.Fatal("want an error for a missing PAYRAIL_CHROMIUM binary")
	}
}

func TestRepoRoot(t *testing.T) {
	t.Parallel()
	wd, _ := os.Getwd()
	root, err := repoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	}
}
