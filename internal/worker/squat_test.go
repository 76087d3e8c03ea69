package worker_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/systest"
)

// Other merchants confirming their own orders with merchant B's paymentKey
// — before B confirms, many at once with duplicates, and after B is paid —
// never keep B's key from B, and their answers are exactly those for a key
// that exists nowhere: no 409, no cross-merchant signal.
func TestPaymentKeySquattingIsAnOrdinaryFailure(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	a, b := sys.NewMerchant(""), sys.NewMerchant("")
	ob := b.CreateOrder(12000)
	key := sys.Session(ob)

	// The baseline: a key no PG session has.
	base := a.CreateOrder(12000)
	r := a.Confirm(base, "tmock_nosuchpaymentkey0001", "Prefer", "wait=10")
	if r.Status != 200 || r.JSON()["result"] != "FAILURE" {
		t.Fatalf("unknown key: %d %s", r.Status, r.Body)
	}
	wantFailure := fmt.Sprint(r.JSON()["failure"])

	var squatters []*systest.Merchant
	squat := func(merchants, dups int) {
		var wg sync.WaitGroup
		for range merchants {
			m := sys.NewMerchant("")
			squatters = append(squatters, m)
			o := m.CreateOrder(12000)
			for i := range dups {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := m.Confirm(o, key, "Prefer", "wait=10")
					if r.Status != 200 || r.JSON()["result"] != "FAILURE" || fmt.Sprint(r.JSON()["failure"]) != wantFailure {
						t.Errorf("squatting confirm %d of %s: %d %s, want the unknown key's answer %s", i, o.OrderID, r.Status, r.Body, wantFailure)
					}
				}()
			}
		}
		wg.Wait()
	}
	squat(10, 3) // before B confirms: their orders bind B's key first

	r = b.Confirm(ob, key, "Prefer", "wait=10")
	if r.Status != 200 || r.JSON()["result"] != "SUCCESS" {
		t.Fatalf("B's own confirm after the squatting: %d %s", r.Status, r.Body)
	}
	squat(5, 3) // after B is paid

	if got := sys.PG.Stats()[ob.OrderID].Approvals; got != 1 {
		t.Fatalf("approvals of B's order = %d, want 1", got)
	}
	if n := sys.Count(`SELECT count(*) FROM orders WHERE merchant_id <> $1 AND status <> 'FAILED'`, b.MerchantID); n != 0 {
		t.Fatalf("%d squatting orders are not FAILED", n)
	}
	if n := sys.Count(`SELECT count(*) FROM callbacks WHERE merchant_id <> $1 AND order_id = $2`, b.MerchantID, ob.OrderID); n != 0 {
		t.Fatalf("other merchants got %d callbacks about B's order", n)
	}
	// B's payment is still found by its key, and only by B.
	if r := b.Do("GET", "/v1/payments/"+key, nil); r.Status != 200 || r.JSON()["orderId"] != ob.OrderID {
		t.Fatalf("B's payment by key: %d %s", r.Status, r.Body)
	}
	for _, m := range squatters {
		if r := m.Do("GET", "/v1/payments/"+key, nil); r.Status != 200 || r.JSON()["status"] != "FAILED" || r.JSON()["orderId"] == ob.OrderID {
			t.Fatalf("a squatter's lookup of the key shows more than its own failed order: %d %s", r.Status, r.Body)
		}
	}
	// A PG event about B's payment reaches B's order, not a squatting one.
	if c := sys.SignedPGWebhook("evt_squat_1", paymentData(ob.OrderID, key, "CANCELED", ob.Amount)); c != 200 {
		t.Fatalf("webhook: %d", c)
	}
	b.WaitStatus(ob.OrderID, "PAID", 5*time.Second) // the PG still says DONE: nothing changes
}
