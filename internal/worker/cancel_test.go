package worker_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/process"
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

// A cancel made in the PG's console makes the PG refuse the merchant's own
// cancel; before the refusal is final the payment is looked up, and the
// cancel that happened is applied: the order is CANCELED for its whole
// amount (the buyer was refunded), not left PAID. No webhook tells payrail
// (the URL is gone), so only the lookup can.
func TestRefusedCancelAppliesTheCancelThePGMade(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	o, key := payOrder(t, sys, m, 7000)
	sys.QuietPGWebhooks()
	if res := sys.PGClient().Cancel(t.Context(), "console", key, "console", 0, nil); res.Outcome != pgclient.Approved {
		t.Fatalf("console cancel: %+v", res)
	}
	r := m.Do("POST", "/v1/orders/"+o.OrderID+"/cancel", map[string]any{"reason": "x", "amount": 2000}, "Idempotency-Key", "k")
	if r.Status != 202 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	m.WaitStatus(o.OrderID, "CANCELED", 10*time.Second)
	got := m.Do("GET", "/v1/orders/"+o.OrderID, nil).JSON()
	if got["pendingCancelAmount"] != float64(0) || got["canceledAmount"] != float64(7000) {
		t.Fatalf("order after the PG's own cancel: pending %v canceled %v, want 0 and 7000", got["pendingCancelAmount"], got["canceledAmount"])
	}
	if n := sys.Count(`SELECT count(*) FROM cancels WHERE order_id = $1 AND status = 'FAILED' AND failure_code = 'NOT_CANCELABLE_PAYMENT'`, o.OrderID); n != 1 {
		t.Fatalf("refused cancels = %d, want 1 (payrail's own cancel did not happen at the PG)", n)
	}
	if n := callbacks(sys, o.OrderID, "payment.cancel_failed"); n != 1 {
		t.Fatalf("cancel_failed callbacks = %d", n)
	}
	if n := callbacks(sys, o.OrderID, "payment.canceled"); n != 1 {
		t.Fatalf("payment.canceled callbacks = %d, want 1", n)
	}
	if st := sys.PG.Stats()[o.OrderID]; st.Cancels != 1 || st.CanceledAmount != 7000 {
		t.Fatalf("mockpg cancels = %d (%d), want only the console's", st.Cancels, st.CanceledAmount)
	}
}

// lossyWorker is a system whose worker's PG cancels can lose their answers.
func lossyWorker(t *testing.T, env map[string]string) (*systest.System, *swappablePG) {
	pg := &swappablePG{}
	sys := systest.Start(t, systest.Options{Worker: true, Env: env, WorkerHook: func(w *process.Worker) { w.Handler.PG = pg }})
	pg.c.Store(pgclient.New(sys.PGURL, sys.Config.PGSecretKey, nil))
	return sys, pg
}

// The PG's webhook for a console cancel that arrives while payrail's own
// cancel is pending is kept, not dropped: here the merchant's 2,000 went
// through (its answer lost) and the console cancelled the other 5,000.
// Once the pending cancel settles, the kept event is read again and the
// order ends CANCELED for 7,000, as the PG's books say.
func TestConsoleCancelDuringAPendingCancelIsReapplied(t *testing.T) {
	t.Parallel()
	sys, pg := lossyWorker(t, nil)
	m := sys.NewMerchant("")
	o, key := payOrder(t, sys, m, 7000)
	pg.loseCancels.Store(true)
	if r := m.Do("POST", "/v1/orders/"+o.OrderID+"/cancel", map[string]any{"reason": "x", "amount": 2000}, "Idempotency-Key", "k"); r.Status != 202 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	testenv.Poll(t, 10*time.Second, "the PG to apply the 2,000", func() bool { return sys.PG.Stats()[o.OrderID].CanceledAmount == 2000 })
	if res := sys.PGClient().Cancel(t.Context(), "console", key, "console", 0, nil); res.Outcome != pgclient.Approved {
		t.Fatalf("console cancel: %+v", res)
	}
	// The PG's webhook arrives and is looked at while the cancel is pending.
	testenv.Poll(t, 10*time.Second, "the console's webhook to be stored", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1 AND pg_status = 'CANCELED'`, o.OrderID) >= 1
	})
	lost := pg.cancelsLost.Load()
	testenv.Poll(t, 10*time.Second, "another lost cancel answer after the event", func() bool { return pg.cancelsLost.Load() > lost+1 })
	if n := sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1 AND pg_status = 'CANCELED' AND state <> 'RECEIVED'`, o.OrderID); n != 0 {
		t.Fatalf("%d CANCELED events settled while payrail's own cancel was pending; they must be kept", n)
	}
	pg.loseCancels.Store(false)
	m.WaitStatus(o.OrderID, "CANCELED", 30*time.Second)
	got := m.Do("GET", "/v1/orders/"+o.OrderID, nil).JSON()
	if got["canceledAmount"] != float64(7000) || got["pendingCancelAmount"] != float64(0) {
		t.Fatalf("canceled %v pending %v, want 7000 and 0", got["canceledAmount"], got["pendingCancelAmount"])
	}
	if n := sys.Count(`SELECT count(*) FROM cancels WHERE order_id = $1 AND status = 'SUCCEEDED'`, o.OrderID); n != 1 {
		t.Fatalf("succeeded cancels = %d, want the merchant's 2,000", n)
	}
	testenv.Poll(t, 10*time.Second, "the kept event to settle", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1 AND state = 'RECEIVED'`, o.OrderID) == 0
	})
	if st := sys.PG.Stats()[o.OrderID]; st.CanceledAmount != 7000 || st.Cancels != 2 {
		t.Fatalf("mockpg cancels = %d (%d), want 2 for 7000", st.Cancels, st.CanceledAmount)
	}
}

// A cancel whose PG answer stays unknown past the session window is
// flagged needsReconciliation (the merchant's GET and the ops console show
// it, with the amount it holds) and reconciled by lookup: the PG's balance
// shows it went through, so it succeeds although no cancel answer ever came.
func TestUnknownCancelIsFlaggedAndReconciledByLookup(t *testing.T) {
	t.Parallel()
	sys, pg := lossyWorker(t, map[string]string{"PAYRAIL_PG_SESSION_WINDOW": "3s", "PAYRAIL_PG_TIMEOUT": "1s"})
	sys.PG.SetWebhookURL("") // only the lookup can tell
	m := sys.NewMerchant("")
	o, _ := payOrder(t, sys, m, 9000)
	pg.loseCancels.Store(true)
	r := m.Do("POST", "/v1/orders/"+o.OrderID+"/cancel", map[string]any{"reason": "x", "amount": 4000}, "Idempotency-Key", "k")
	if r.Status != 202 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	cancelID, _ := r.JSON()["cancelId"].(string)
	testenv.Poll(t, 20*time.Second, "the cancel to be flagged", func() bool {
		return sys.Count(`SELECT count(*) FROM cancels WHERE cancel_id = $1 AND (needs_reconciliation OR status = 'SUCCEEDED')`, cancelID) == 1
	})
	m.WaitStatus(o.OrderID, "PARTIALLY_CANCELED", 20*time.Second)
	c := m.Do("GET", "/v1/orders/"+o.OrderID+"/cancels/"+cancelID, nil).JSON()
	if c["status"] != "SUCCEEDED" || c["needsReconciliation"] != true {
		t.Fatalf("cancel = %v, want SUCCEEDED and still marked needsReconciliation", c)
	}
	if n := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND action = 'pg.cancel' AND (details->>'needsReconciliation')::bool`, o.OrderID); n < 1 {
		t.Fatal("the flag is not in the order's history")
	}
	if st := sys.PG.Stats()[o.OrderID]; st.CanceledAmount != 4000 {
		t.Fatalf("mockpg canceled %d, want 4000 once", st.CanceledAmount)
	}
	if got := m.Do("GET", "/v1/orders/"+o.OrderID, nil).JSON(); got["canceledAmount"] != float64(4000) || got["pendingCancelAmount"] != float64(0) {
		t.Fatalf("order canceled %v pending %v", got["canceledAmount"], got["pendingCancelAmount"])
	}
}
