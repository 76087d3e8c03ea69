// Package browsertest starts a headless Chromium for tests through chromedp
// and saves screenshots of what it shows, so that the demo shop and the ops
// console are tested the way a person uses them: in a real browser.
//
// It owns only the browser's lifetime and where artifacts go. It must never
// reach the network on its own (the flags below turn off Chromium's
// background traffic) and never share a profile between tests: each test gets
// a fresh user-data-dir, so cookies and storage never leak from one test to
// the next.
package browsertest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Timeout bounds everything one test does in its browser. A page that never
// shows the element a test waits for fails the test after this long instead
// of hanging the whole run.
const Timeout = 60 * time.Second

// EnvChromium names the environment variable that overrides which Chromium
// binary runs.
const EnvChromium = "PAYRAIL_CHROMIUM"

// skipMessage is loud on purpose: a skipped browser test looks like a passing
// one in a summary, and nobody should believe the UI was tested when it was
// not.
const skipMessage = "BROWSER TESTS SKIPPED: chromium not found; install it with apt-get install chromium (or set " + EnvChromium + ")"

// New starts a headless Chromium for t and returns a chromedp context bound
// to one tab of it. The context expires after Timeout; the browser is closed
// and its profile removed when t ends. If no Chromium is installed, New skips
// t (make test installs one, so a skip there is a setup bug).
func New(t testing.TB) context.Context {
	t.Helper()
	bin, err := chromiumPath(os.Getenv)
	if err != nil {
		t.Log("==================================================================")
		t.Log(skipMessage)
		t.Log("==================================================================")
		t.Skip(skipMessage)
	}

	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancel()
	})
	// The first Run starts the browser; doing it here makes a broken
	// Chromium fail in New, with a clear message, not in the test's first
	// step.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("browsertest: start chromium %s: %v", bin, err)
	}
	// Registered after the close above, so it runs before it: a failed test
	// leaves a picture of what the browser showed.
	t.Cleanup(func() {
		if t.Failed() && bctx.Err() == nil {
			Screenshot(t, bctx, sanitize(t.Name())+"-failed")
		}
	})
	return bctx
}

// Screenshot saves a full-page PNG of what ctx's tab shows to
// <repo root>/test-artifacts/<name>.png. A failure to capture is logged, not
// fatal: a missing picture must not hide the real assertion.
func Screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("browsertest: screenshot %s: %v", name, err)
		return
	}
	dir, err := ArtifactsDir()
	if err != nil {
		t.Logf("browsertest: screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, sanitize(name)+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("browsertest: screenshot %s: %v", name, err)
		return
	}
	t.Logf("browsertest: screenshot saved to %s", path)
}

// ArtifactsDir returns <repo root>/test-artifacts, creating it. The repo root
// is the nearest ancestor of the working directory that holds go.mod.
func ArtifactsDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := repoRoot(wd)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "test-artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, nil
}

func repoRoot(dir string) (string, error) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("browsertest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// chromiumPath finds the browser: $PAYRAIL_CHROMIUM, then /usr/bin/chromium,
// then chromium or chromium-browser on PATH.
func chromiumPath(getenv func(string) string) (string, error) {
	if p := getenv(EnvChromium); p != "" {
		return exec.LookPath(p)
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium", nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium not found")
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func sanitize(name string) string {
	return unsafeName.ReplaceAllString(name, "_")
}
