package worker_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

func payOrder(t *testing.T, sys *systest.System, m *systest.Merchant, amount int64) (systest.Order, string) {
	t.Helper()
	o := m.CreateOrder(amount)
	key := sys.Session(o)
	if r := m.Confirm(o, key, "Prefer", "wait=10"); r.Status != 200 || r.JSON()["result"] != "SUCCESS" {
		t.Fatalf("pay: %d %s", r.Status, r.Body)
	}
	return o, key
}

func TestConcurrentPartialCancelsReserve(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	o, _ := payOrder(t, sys, m, 10000)
	const n = 20
	var wg sync.WaitGroup
	res := make([]systest.Response, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = m.Do("POST", "/v1/orders/"+o.OrderID+"/cancel", map[string]any{"reason": "partial", "amount": 1500},
				"Idempotency-Key", fmt.Sprintf("cancel-%d", i))
		}()
	}
	wg.Wait()
	accepted := 0
	for _, r := range res {
		switch {
		case r.Status == 202:
			accepted++
		case r.Status == 409 && r.Code() == "CANCEL_AMOUNT_EXCEEDED":
		default:
			t.Fatalf("unexpected %d %s", r.Status, r.Body)
		}
	}
	if accepted != 6 { // 6 × 1500 = 9000 ≤ 10000 < 7 × 1500
		t.Fatalf("accepted %d cancels, want 6", accepted)
	}
	testenv.Poll(t, 15*time.Second, "all cancels settled", func() bool {
		return sys.Count(`SELECT count(*) FROM cancels WHERE order_id = $1 AND status = 'SUCCEEDED'`, o.OrderID) == accepted
	})
	got := m.Do("GET", "/v1/orders/"+o.OrderID, nil).JSON()
	if got["canceledAmount"] != float64(9000) || got["status"] != "PARTIALLY_CANCELED" || got["pendingCancelAmount"] != float64(0) {
		t.Fatalf("order after cancels: status %v canceled %v pending %v", got["status"], got["canceledAmount"], got["pendingCancelAmount"])
	}
	st := sys.PG.Stats()[o.OrderID]
	if st.Cancels != accepted || st.CanceledAmount != 9000 {
		t.Fatalf("mockpg cancels %d / %d", st.Cancels, st.CanceledAmount)
	}
	// The rest cancels it fully.
	r := m.Do("POST", "/v1/orders/"+o.OrderID+"/cancel", map[string]any{"reason": "rest"}, "Idempotency-Key", "cancel-rest")
	if r.Status != 202 || r.JSON()["amount"] != float64(1000) {
		t.Fatalf("cancel the rest: %d %s", r.Status, r.Body)
	}
	m.WaitStatus(o.OrderID, "CANCELED", 10*time.Second)
	loc := r.Header.Get("Location")
	if g := m.Do("GET", loc, nil); g.Status != 200 || g.JSON()["status"] != "SUCCEEDED" {
		t.Fatalf("GET %s: %d %s", loc, g.Status, g.Body)
	}
}

func TestCancelRules(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	created := m.CreateOrder(5000)
	if r := m.Do("POST", "/v1/orders/"+created.OrderID+"/cancel", map[string]any{"reason": "x"}, "Idempotency-Key", "k1"); r.Status != 409 || r.Code() != "ORDER_NOT_CANCELABLE" {
		t.Fatalf("cancel of a CREATED order: %d %s", r.Status, r.Body)
	}
	o, _ := payOrder(t, sys, m, 5000)
	if r := m.Do("POST", "/v1/orders/"+o.OrderID+"/cancel", map[string]any{"reason": "x"}); r.Status != 400 || r.Code() != "IDEMPOTENCY_KEY_REQUIRED" {
		t.Fatalf("cancel without a key: %d %s", r.Status, r.Body)
	}
	if r := m.Do("POST", "/v1/orders/"+o.OrderID+"/cancel", map[string]any{"reason": "x", "amount": 6000}, "Idempotency-Key", "k2"); r.Status != 409 || r.Code() != "CANCEL_AMOUNT_EXCEEDED" {
		t.Fatalf("too large: %d %s", r.Status, r.Body)
	}
	// A retried request with the same key is the same cancel.
	a := m.Do("POST", "/v1/orders/"+o.OrderID+"/cancel", map[string]any{"reason": "x", "amount": 1000}, "Idempotency-Key", "k3")
	b := m.Do("POST", "/v1/orders/"+o.OrderID+"/cancel", map[string]any{"reason": "x", "amount": 1000}, "Idempotency-Key", "k3")
	if a.Status != 202 || b.Status != 202 || a.JSON()["cancelId"] != b.JSON()["cancelId"] {
		t.Fatalf("retried cancel: %s / %s", a.Body, b.Body)
	}
	if n := sys.Count(`SELECT count(*) FROM cancels WHERE order_id = $1`, o.OrderID); n != 1 {
		t.Fatalf("%d cancels for one key", n)
	}
}

func TestRefusedCancelReleasesReservation(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	o, key := payOrder(t, sys, m, 7000)
	// Canceled at the PG behind our back, with no webhook (the URL is gone):
	// our cancel is then refused by the PG.
	sys.PG.SetWebhookURL("")
	if res := sys.PGClient().Cancel(t.Context(), "console", key, "console", 0); res.Outcome != 1 {
		t.Fatalf("console cancel: %+v", res)
	}
	r := m.Do("POST", "/v1/orders/"+o.OrderID+"/cancel", map[string]any{"reason": "x", "amount": 2000}, "Idempotency-Key", "k")
	if r.Status != 202 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	testenv.Poll(t, 10*time.Second, "the cancel to fail", func() bool {
		return sys.Count(`SELECT count(*) FROM cancels WHERE order_id = $1 AND status = 'FAILED'`, o.OrderID) == 1
	})
	got := m.Do("GET", "/v1/orders/"+o.OrderID, nil).JSON()
	if got["pendingCancelAmount"] != float64(0) || got["canceledAmount"] != float64(0) {
		t.Fatalf("reservation not released: %v", got)
	}
	if n := callbacks(sys, o.OrderID, "payment.cancel_failed"); n != 1 {
		t.Fatalf("cancel_failed callbacks = %d", n)
	}
	_ = mockpg.Faults{}
}
