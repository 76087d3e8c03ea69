package ops_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"github.com/payrail/payrail/internal/browsertest"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// These tests drive the console in a real Chromium, as an operator uses it
// (issue 7). Each saves screenshots to test-artifacts/.

// flakyMerchant is a merchant's callback endpoint that answers 500 while
// failing is set and 200 otherwise, counting what it accepted.
type flakyMerchant struct {
	failing  atomic.Bool
	accepted atomic.Int64
	srv      *httptest.Server
}

func newFlakyMerchant(t *testing.T) *flakyMerchant {
	f := &flakyMerchant{}
	f.failing.Store(true)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if f.failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		f.accepted.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// callbackState is the status of the order's payment.paid callback.
func callbackState(t *testing.T, sys *systest.System, orderID string) (id, status string) {
	t.Helper()
	_ = sys.DB.DB.QueryRow(`SELECT callback_id, status FROM callbacks WHERE order_id = $1 AND event_type = 'payment.paid'`, orderID).Scan(&id, &status)
	return id, status
}

// run runs browser steps and fails t with what on error.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitJS evaluates the boolean expression js in the page until it is true.
// It polls from Go, so it survives the navigations a click or a submit
// causes (a page-side poll dies with its document).
func waitJS(t *testing.T, ctx context.Context, what, js string) {
	t.Helper()
	expr := `(function(){ try { return document.readyState === 'complete' && !!(` + js + `); } catch (e) { return false; } })()`
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr)); err == nil && ok {
			return
		}
		<-tick.C
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 500) : ''`))
	t.Fatalf("waiting for %s: not true after 20s at %s; page says: %s", what, loc, body)
}

// signIn fills the login form the browser shows and submits it.
func signIn(t *testing.T, ctx context.Context) {
	t.Helper()
	run(t, ctx, "fill the login form",
		chromedp.WaitVisible(chromedp.ID("login-name")),
		chromedp.SendKeys(chromedp.ID("login-name"), opName),
		chromedp.SendKeys(chromedp.ID("login-password"), opPassword),
	)
	run(t, ctx, "submit the login form", chromedp.Click(chromedp.ID("login-submit")))
	waitJS(t, ctx, "the signed-in page", `!document.getElementById('login-form')`)
}

func TestBrowserRedeliverDeadCallback(t *testing.T) {
	t.Parallel()
	sys := setup(t, systest.Options{Worker: true, Env: map[string]string{
		"PAYRAIL_CALLBACK_SCHEDULE": "50ms,50ms",
		"PAYRAIL_CALLBACK_TIMEOUT":  "2s",
	}})
	merchant := newFlakyMerchant(t)
	m := sys.NewMerchant(merchant.srv.URL + "/callbacks")
	o := m.CreateOrder(15000)
	if r := m.Confirm(o, sys.Session(o), "Prefer", "wait=10"); r.Status != http.StatusOK && r.Status != http.StatusAccepted {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	m.WaitStatus(o.OrderID, "PAID", 10*time.Second)
	testenv.Poll(t, 15*time.Second, "the payment.paid callback to be DEAD", func() bool {
		_, st := callbackState(t, sys, o.OrderID)
		return st == "DEAD"
	})
	cbID, _ := callbackState(t, sys, o.OrderID)
	merchant.failing.Store(false)

	ctx := browsertest.New(t)
	// An unauthenticated visit lands on the login page, which leads back.
	run(t, ctx, "open the console", chromedp.Navigate(sys.URL+"/ops/"))
	browsertest.Screenshot(t, ctx, "ops-login")
	signIn(t, ctx)
	waitJS(t, ctx, "the orders page", `document.getElementById('search-q') && document.getElementById('operator-name')`)
	if got := text(t, ctx, "#operator-name"); !strings.Contains(got, opName) {
		t.Errorf("signed-in operator = %q, want %s", got, opName)
	}

	run(t, ctx, "search the order",
		chromedp.SendKeys(chromedp.ID("search-q"), o.OrderID),
		chromedp.Click(chromedp.ID("search-submit")),
	)
	link := `a.order-link[href="/ops/orders/` + o.OrderID + `"]`
	waitJS(t, ctx, "the search result", `location.search.indexOf('q=`+o.OrderID+`') >= 0 && document.querySelectorAll('a.order-link').length === 1 && document.querySelector('`+link+`')`)
	browsertest.Screenshot(t, ctx, "ops-search")

	run(t, ctx, "open the order", chromedp.Click(chromedp.CSS(link)))
	waitJS(t, ctx, "the order page", `document.getElementById('timeline') && document.getElementById('order-id').textContent.trim() === '`+o.OrderID+`'`)
	if got := text(t, ctx, "#order-status"); got != "PAID" {
		t.Errorf("order status = %q, want PAID", got)
	}
	const paidRow = `Array.prototype.some.call(document.querySelectorAll('#timeline tr.kind-log'), function(tr){ return tr.cells[3] && /→\s*PAID$/.test(tr.cells[3].textContent.trim()); })`
	if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](paidRow)); err != nil || !ok {
		t.Errorf("the timeline has no transition to PAID (err %v)", err)
	}
	button := `button.redeliver[data-callback-id="` + cbID + `"]`
	run(t, ctx, "see the redeliver button", chromedp.WaitVisible(chromedp.CSS(button)))
	browsertest.Screenshot(t, ctx, "ops-order-timeline-dead")

	run(t, ctx, "click redeliver", chromedp.Click(chromedp.CSS(button)))
	waitJS(t, ctx, "the flash after redeliver", `location.pathname === '/ops/orders/`+o.OrderID+`' && document.getElementById('flash')`)
	testenv.Poll(t, 10*time.Second, "the redelivered callback to be DELIVERED", func() bool {
		_, st := callbackState(t, sys, o.OrderID)
		return st == "DELIVERED"
	})
	if n := merchant.accepted.Load(); n < 1 {
		t.Errorf("the merchant accepted %d callbacks, want at least 1", n)
	}
	if n := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND action = 'ops.callback_redeliver' AND actor = $2`, o.OrderID, "operator:"+opName); n != 1 {
		t.Errorf("%d ops.callback_redeliver rows by %s, want 1", n, opName)
	}

	// The timeline now shows the operator's action and no redeliver button.
	run(t, ctx, "reload the order", chromedp.Reload())
	waitJS(t, ctx, "the delivered timeline", `document.getElementById('timeline') && document.getElementById('timeline').textContent.indexOf('operator:`+opName+`') >= 0 && !document.querySelector('`+button+`')`)
	browsertest.Screenshot(t, ctx, "ops-order-timeline")

	run(t, ctx, "open the failing callbacks page", chromedp.Navigate(sys.URL+"/ops/callbacks"))
	waitJS(t, ctx, "the callbacks page", `!document.querySelector('`+button+`')`)
	browsertest.Screenshot(t, ctx, "ops-callbacks")
}

func TestBrowserAsynqmonBehindLogin(t *testing.T) {
	t.Parallel()
	sys := setup(t, systest.Options{Worker: true})
	// A paid order puts tasks in the payments and callbacks queues, so
	// asynqmon has something to list.
	m := sys.NewMerchant("")
	o := m.CreateOrder(15000)
	if r := m.Confirm(o, sys.Session(o), "Prefer", "wait=10"); r.Status != http.StatusOK && r.Status != http.StatusAccepted {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}

	ctx := browsertest.New(t)
	run(t, ctx, "open asynqmon without a session", chromedp.Navigate(sys.URL+"/ops/queues/"))
	waitJS(t, ctx, "the login page", `document.getElementById('login-name')`)
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.HasPrefix(loc, sys.URL+"/ops/login?next=") {
		t.Fatalf("unauthenticated /ops/queues/ ended at %q (%v), want the login page", loc, err)
	}
	browsertest.Screenshot(t, ctx, "ops-queues-login")

	// Signing in from there leads back to asynqmon, which renders its app.
	signIn(t, ctx)
	waitJS(t, ctx, "asynqmon's queue list", `location.pathname.indexOf('/ops/queues') === 0 && document.body.innerText.indexOf('Queues') >= 0 && document.body.innerText.indexOf('payments') >= 0`)
	browsertest.Screenshot(t, ctx, "ops-asynqmon")

	// Its API works with the session cookie the browser holds.
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch('/ops/queues/api/queues').then(function(r){ return r.status; })`, chromedp.EvalAwaitPromise))
	if err != nil || status != http.StatusOK {
		t.Errorf("asynqmon API from the signed-in browser: %d (%v), want 200", status, err)
	}

	// A fresh browser (no cookie) never sees it.
	fresh := browsertest.New(t)
	run(t, fresh, "open asynqmon's queue page without a session", chromedp.Navigate(sys.URL+"/ops/queues/queues/payments"))
	waitJS(t, fresh, "the login page", `document.getElementById('login-name')`)
	if loc, _ := chromedp.Run(fresh, chromedp.Location()); !strings.Contains(loc, "/ops/login?next=") {
		t.Errorf("a browser without a session ended at %q, want the login page", loc)
	}
	if body, _ := chromedp.Run(fresh, chromedp.Evaluate[string](`document.body.innerText`)); strings.Contains(body, "payments") {
		t.Errorf("the login page shows queue data: %.200s", body)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// TOTP in a real Chromium: the first sign-in shows the QR code and the
// secret, the code (computed here from the secret, as an authenticator app
// would) turns the factor on and shows the recovery codes, and the next
// sign-in asks for a code only.
func TestBrowserTOTPEnrolmentAndSignIn(t *testing.T) {
	t.Parallel()
	sys := setup(t, systest.Options{Env: map[string]string{"PAYRAIL_OPS_REQUIRE_TOTP": "true"}})
	ctx := browsertest.New(t)
	run(t, ctx, "open the console", chromedp.Navigate(sys.URL+"/ops/"))
	signIn(t, ctx)
	waitJS(t, ctx, "the enrolment page", `document.getElementById('totp-qr') && document.getElementById('totp-qr').naturalWidth === 200`)
	browsertest.Screenshot(t, ctx, "ops-totp-enrol")
	secret := text(t, ctx, "#totp-secret")
	code, err := totp.GenerateCode(secret, time.Now())
	testenv.Must(t, err)
	run(t, ctx, "enter the first code",
		chromedp.SendKeys(chromedp.ID("totp-code"), code),
		chromedp.Click(chromedp.ID("totp-submit")),
	)
	waitJS(t, ctx, "the recovery codes", `document.querySelectorAll('.recovery-code').length === 10`)
	browsertest.Screenshot(t, ctx, "ops-totp-recovery")
	run(t, ctx, "continue", chromedp.Click(chromedp.ID("recovery-continue")))
	waitJS(t, ctx, "the console", `document.getElementById('operator-name')`)

	// A new browser: password, then a code, and no secret on the page.
	ctx2 := browsertest.New(t)
	run(t, ctx2, "open the console again", chromedp.Navigate(sys.URL+"/ops/"))
	signIn(t, ctx2)
	waitJS(t, ctx2, "the code page", `document.getElementById('totp-code') && !document.getElementById('totp-secret')`)
	// The first code is spent: wait for the next step's code rather than
	// replaying it (a replay is refused; TestTOTPEnrolmentAndSignIn).
	next := code
	deadline := time.Now().Add(35 * time.Second)
	for next == code && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond) // polling the clock for the next 30 s step
		next, err = totp.GenerateCode(secret, time.Now())
		testenv.Must(t, err)
	}
	run(t, ctx2, "enter a code",
		chromedp.SendKeys(chromedp.ID("totp-code"), next),
		chromedp.Click(chromedp.ID("totp-submit")),
	)
	waitJS(t, ctx2, "the console after the code", `document.getElementById('operator-name')`)
	browsertest.Screenshot(t, ctx2, "ops-totp-signed-in")
}
