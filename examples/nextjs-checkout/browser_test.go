//go:build examples

// The Next.js example in a real browser against a real payrail: buy, pay in
// mockpg's window, see SUCCESS (confirmed server-side), the verified
// payment.paid in the live panel, and a DUPLICATE DETECTED confirm again.
// Run by `make test-examples` (it builds the app: too slow for make test's
// budget on 2 cores).
package nextjs_test

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/payrail/payrail/internal/browsertest"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

func TestNextjsCheckout(t *testing.T) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed", tool)
		}
	}
	run := func(name string, args ...string) {
		t.Helper()
		start := time.Now()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		t.Logf("%s %s: %s", name, strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond))
	}
	if _, err := os.Stat(filepath.Join("node_modules", "next")); err != nil {
		run("npm", "ci", "--no-audit", "--no-fund")
	}
	run("npm", "run", "build")

	sys := systest.Start(t, systest.Options{Worker: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	shopURL := "http://127.0.0.1:" + port
	cmd := exec.Command("node_modules/.bin/next", "start", "-p", port, "-H", "127.0.0.1")
	cmd.Env = append(os.Environ(), "PORT="+port, "PAYRAIL_API_URL="+sys.URL, "PAYRAIL_ADMIN_TOKEN="+systest.AdminToken,
		"SHOP_PUBLIC_URL="+shopURL, "SHOP_CREDENTIALS_FILE="+filepath.Join(t.TempDir(), "credentials.json"))
	logf, err := os.Create(filepath.Join(t.TempDir(), "next.log"))
	testenv.Must(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	testenv.Must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("next log:\n%s", b)
		}
	})
	testenv.Poll(t, 30*time.Second, "next start to answer", func() bool {
		resp, err := http.Get(shopURL + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	ctx := browsertest.New(t)
	badge := func(want string) {
		t.Helper()
		testenv.Poll(t, 25*time.Second, "badge "+want, func() bool {
			got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('badge') ? document.getElementById('badge').textContent : ''`))
			return got == want
		})
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(shopURL+"/"), chromedp.WaitVisible(chromedp.ID("buy"))); err != nil {
		t.Fatal(err)
	}
	browsertest.Screenshot(t, ctx, "nextjs-product")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("buy")), chromedp.WaitVisible(chromedp.ID("pay")), chromedp.Click(chromedp.ID("pay"))); err != nil {
		t.Fatal(err)
	}
	badge("SUCCESS")
	orderID, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('order-id').textContent`))
	testenv.Poll(t, 20*time.Second, "a verified payment.paid in the live panel", func() bool {
		ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.querySelector('#callbacks li[data-type="payment.paid"][data-verified="true"][data-order="`+orderID+`"]')`))
		return ok
	})
	browsertest.Screenshot(t, ctx, "nextjs-success")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("again"))); err != nil {
		t.Fatal(err)
	}
	badge("DUPLICATE DETECTED")
	if st := sys.PG.Stats()[orderID]; st.Approvals != 1 {
		t.Fatalf("approvals at the PG = %d", st.Approvals)
	}
}
