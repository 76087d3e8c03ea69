package demoshop_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/payrail/payrail/internal/browsertest"
	"github.com/payrail/payrail/internal/demoshop"
	"github.com/payrail/payrail/internal/systest"
)

// shop is a demoshop served on a real listener in front of a whole payrail.
type shop struct {
	sys *systest.System
	URL string
}

// setup starts payrail (with a worker) and demoshop, which registers itself
// as a merchant with the system's admin token.
func setup(t *testing.T) shop {
	t.Helper()
	sys := systest.Start(t, systest.Options{Worker: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	s, err := demoshop.New(demoshop.Config{PublicURL: url, APIURL: sys.URL, AdminToken: systest.AdminToken, PGConsoleURL: sys.PGURL, Logger: sys.Log})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("demoshop serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return shop{sys: sys, URL: url}
}

// TestDemo drives demoshop in a real browser through every outcome a visitor
// can reach. The subtests share one payrail and one demoshop; each has its
// own browser and its own order.
func TestDemo(t *testing.T) {
	t.Parallel()
	sh := setup(t)

	t.Run("pay succeeds then confirm again is a duplicate", func(t *testing.T) {
		t.Parallel()
		ctx := browsertest.New(t)
		openProduct(t, ctx, sh)
		browsertest.Screenshot(t, ctx, "demoshop-product")
		clickPay(t, ctx)
		browsertest.Screenshot(t, ctx, "demoshop-mockpg-checkout")
		submitAndWaitBadge(t, ctx, "#pay", "SUCCESS")
		elapsed := text(t, ctx, "#elapsed")
		if n, err := strconv.Atoi(elapsed); err != nil || n < 0 {
			t.Errorf("elapsed = %q, want milliseconds", elapsed)
		}
		if got := text(t, ctx, "#http-status"); got != "200" {
			t.Errorf("HTTP status = %q, want 200", got)
		}
		browsertest.Screenshot(t, ctx, "demoshop-success")

		submitAndWaitBadge(t, ctx, "#confirm-again", "DUPLICATE DETECTED")
		if got := text(t, ctx, "#http-status"); got != "200" {
			t.Errorf("duplicate HTTP status = %q, want 200", got)
		}
		browsertest.Screenshot(t, ctx, "demoshop-duplicate")
		orderID := text(t, ctx, "#order-id")
		if got := sh.sys.PG.Stats()[orderID].Approvals; got != 1 {
			t.Errorf("PG approvals for %s = %d, want 1", orderID, got)
		}
	})

	t.Run("force failure shows code and status", func(t *testing.T) {
		t.Parallel()
		ctx := browsertest.New(t)
		openProduct(t, ctx, sh)
		clickPay(t, ctx)
		submitAndWaitBadge(t, ctx, "#pay", "SUCCESS")
		for _, tc := range []struct{ kind, code, status string }{
			{"amount", "AMOUNT_MISMATCH", "400"},
			{"token", "INVALID_PAYMENT_TOKEN", "403"},
			{"signature", "INVALID_SIGNATURE", "401"},
			{"paymentKey", "PAYMENT_KEY_CONFLICT", "409"},
			{"order", "ORDER_NOT_FOUND", "404"},
		} {
			if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("failure-kind"), tc.kind)); err != nil {
				t.Fatal(err)
			}
			submitAndWaitBadge(t, ctx, "#force-failure", "FAILURE")
			if got := text(t, ctx, "#code"); got != tc.code {
				t.Errorf("%s: code = %q, want %s", tc.kind, got, tc.code)
			}
			if got := text(t, ctx, "#http-status"); got != tc.status {
				t.Errorf("%s: HTTP status = %q, want %s", tc.kind, got, tc.status)
			}
			if tc.kind == "amount" {
				browsertest.Screenshot(t, ctx, "demoshop-force-failure")
			}
		}
		// None of it changed the payment.
		submitAndWaitBadge(t, ctx, "#confirm-again", "DUPLICATE DETECTED")
	})

	for _, tc := range []struct{ button, code string }{
		{"#decline", "REJECT_CARD_COMPANY"},
		{"#cancel", "PAY_PROCESS_CANCELED"},
	} {
		t.Run("PG "+tc.button[1:]+" is a failure", func(t *testing.T) {
			t.Parallel()
			ctx := browsertest.New(t)
			openProduct(t, ctx, sh)
			clickPay(t, ctx)
			submitAndWaitBadge(t, ctx, tc.button, "FAILURE")
			if got := text(t, ctx, "#code"); got != tc.code {
				t.Errorf("code = %q, want %s", got, tc.code)
			}
			browsertest.Screenshot(t, ctx, "demoshop-pg-"+tc.button[1:])
		})
	}

	t.Run("virtual account waits for the deposit, then succeeds live", func(t *testing.T) {
		t.Parallel()
		ctx := browsertest.New(t)
		openProduct(t, ctx, sh)
		clickPay(t, ctx)
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("method-va"))); err != nil {
			t.Fatal(err)
		}
		submitAndWaitBadge(t, ctx, "#pay", "AWAITING DEPOSIT")
		account, bank, due := text(t, ctx, "#va-account"), text(t, ctx, "#va-bank"), text(t, ctx, "#va-due")
		if len(account) < 10 || bank == "" || due == "" {
			t.Fatalf("the buyer sees account %q at %q due %q", account, bank, due)
		}
		orderID := text(t, ctx, "#order-id")
		if st := sh.sys.PG.Stats()[orderID]; st.VirtualAccounts != 1 || st.Approvals != 0 {
			t.Fatalf("mockpg stats before the deposit: %+v", st)
		}
		browsertest.Screenshot(t, ctx, "demoshop-virtual-account")
		// The deposit is made at the PG; the page learns of it by itself
		// (it polls the shop, which asks payrail), then shows SUCCESS.
		submitAndWaitBadge(t, ctx, "#simulate-deposit", "SUCCESS")
		browsertest.Screenshot(t, ctx, "demoshop-virtual-account-paid")
		if st := sh.sys.PG.Stats()[orderID]; st.Deposits != 1 || st.Approvals != 1 {
			t.Fatalf("mockpg stats after the deposit: %+v", st)
		}
	})

	t.Run("playground signs and sends", func(t *testing.T) {
		t.Parallel()
		ctx := browsertest.New(t)
		if err := chromedp.Do(ctx,
			chromedp.Navigate(sh.URL+"/playground"),
			chromedp.WaitVisible(chromedp.ID("playground")),
			chromedp.SetValue(chromedp.ID("method"), "GET"),
			chromedp.SetValue(chromedp.ID("path"), "/v1/orders?limit=5"),
		); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "the playground's answer", `document.getElementById('status') ? document.getElementById('status').textContent : ''`, "200", "#send")
		if body := text(t, ctx, "#response"); !strings.Contains(body, "{") {
			t.Errorf("response body = %q, want JSON", body)
		}
		browsertest.Screenshot(t, ctx, "demoshop-playground")
	})

	t.Run("callbacks panel shows a verified payment.paid", func(t *testing.T) {
		t.Parallel()
		ctx := browsertest.New(t)
		openProduct(t, ctx, sh)
		clickPay(t, ctx)
		submitAndWaitBadge(t, ctx, "#pay", "SUCCESS")
		const js = `(function(){
			var all = document.querySelectorAll('#callbacks li.callback');
			if (!all.length) return '';
			for (var i = 0; i < all.length; i++) {
				if (all[i].dataset.type === 'payment.paid' && all[i].dataset.verified === 'true') return 'verified';
			}
			return 'unverified:' + all[0].textContent;
		})()`
		deadline := time.Now().Add(15 * time.Second)
		got := ""
		for time.Now().Before(deadline) {
			got, _ = chromedp.Run(ctx, chromedp.Evaluate[string](js))
			if got == "verified" {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		browsertest.Screenshot(t, ctx, "demoshop-callbacks")
		switch {
		case got == "verified":
		case got == "":
			t.Fatal("no callback reached demoshop within 15 s: payrail's callback delivery is broken")
		default:
			t.Fatalf("callbacks arrived but none is a verified payment.paid: %s", got)
		}
	})
}

func openProduct(t *testing.T, ctx context.Context, sh shop) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(sh.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("pay-button")),
	); err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, "#price"); got != "₩15,000" {
		t.Errorf("price = %q, want ₩15,000", got)
	}
}

// clickPay presses the shop's Pay button and waits for mockpg's window.
func clickPay(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("pay-button")),
		chromedp.WaitVisible(chromedp.ID("pay")),
	); err != nil {
		t.Fatal(err)
	}
}

// submitAndWaitBadge clicks a button that leads to a result page and waits
// for a new one (one more attempt row) whose badge reads want.
func submitAndWaitBadge(t *testing.T, ctx context.Context, button, want string) {
	t.Helper()
	before, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#attempts tr').length`))
	js := `(function(){
		var b = document.getElementById('badge');
		if (!b || document.readyState !== 'complete') return '';
		if (document.querySelectorAll('#attempts tr').length <= ` + strconv.Itoa(before) + ` && document.getElementById('attempts')) return '';
		return b.textContent;
	})()`
	waitFor(t, ctx, "badge "+want+" after "+button, js, want, button)
}

// waitFor clicks button, then evaluates js until it returns want. It polls
// from Go, so it survives the navigation the click causes.
func waitFor(t *testing.T, ctx context.Context, what, js, want, button string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(button))); err != nil {
		t.Fatalf("click %s: %v", button, err)
	}
	deadline := time.Now().Add(25 * time.Second)
	got := ""
	for time.Now().Before(deadline) {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err == nil {
			got = v
			if got == want {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	msg, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById('message')||{}).textContent || document.body.innerText.slice(0, 400)`))
	t.Fatalf("waiting for %s: got %q; page says: %s", what, got, msg)
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}
