package worker_test

import (
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// A merchant whose buyers all deposit at once (a payday burst: one
// DEPOSIT_CALLBACK and one PAYMENT_STATUS_CHANGED each) must not hold back
// another merchant's deposit: the notices share the merchants' fair share
// with confirms. As in TestQuietMerchantConfirmsAheadOfAFlood the burst is
// queued before the worker runs, so the order in which deposits are
// applied, not a timing, shows whether B waited behind A; B's own deposit
// alone, earlier in the same system, is the baseline (served first).
func TestQuietMerchantsDepositAheadOfADepositBurst(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{
		"PAYRAIL_RATE_LIMIT": "100000", "PAYRAIL_RATE_BURST": "100000", "PAYRAIL_CONFIRM_FAIR_SHARE": "4",
		// The flood is the set-up here (the worker's fair queue is under
		// test); admission control would rightly lower A's creates.
		"PAYRAIL_ADMIT_TOLERANCE": "off",
		// Nor may shedding answer A's burst 503 when the worker lags on a
		// loaded machine (as in fair_test.go).
		"PAYRAIL_SHED_AFTER": "10m",
	}})
	a, b := sys.NewMerchant(""), sys.NewMerchant("")
	w := sys.StartWorker()

	// Baseline: B's deposit with nothing else queued is PAID.
	base, baseKey, _ := awaitingDeposit(t, sys, b, 1000)
	sys.Deposit(baseKey)
	b.WaitStatus(base.OrderID, "PAID", 10*time.Second)

	const burst = 100
	keys := make([]string, burst)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < burst; i += 8 {
				o := a.CreateOrder(2000)
				keys[i] = sys.VASession(o)
				if r := a.Confirm(o, keys[i]); r.Status != 202 {
					t.Errorf("A's confirm %d: %d %s", i, r.Status, r.Body)
				}
			}
		})
	}
	wg.Wait()
	quiet, quietKey, _ := awaitingDeposit(t, sys, b, 1000)
	testenv.Poll(t, 30*time.Second, "A's accounts to be issued", func() bool {
		return sys.Count(`SELECT count(*) FROM orders WHERE merchant_id = $1 AND status = 'AWAITING_DEPOSIT'`, a.MerchantID) == burst
	})
	testenv.Poll(t, 10*time.Second, "the issuing webhooks to settle", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE state = 'RECEIVED'`) == 0
	})
	w.Server.Shutdown()

	for _, k := range keys {
		sys.Deposit(k)
	}
	testenv.Poll(t, 30*time.Second, "A's deposit notices to be stored", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events e JOIN orders o ON o.order_id = e.order_id
			WHERE o.merchant_id = $1 AND e.pg_status = 'DONE'`, a.MerchantID) == 2*burst
	})
	sys.Deposit(quietKey)
	testenv.Poll(t, 10*time.Second, "B's deposit notices to be stored", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1 AND pg_status = 'DONE'`, quiet.OrderID) == 2
	})

	sys.StartWorker()
	b.WaitStatus(quiet.OrderID, "PAID", 30*time.Second)
	testenv.Poll(t, 60*time.Second, "all of A's deposits to be applied (the burst is served, not starved)", func() bool {
		return sys.Count(`SELECT count(*) FROM orders WHERE merchant_id = $1 AND status = 'PAID'`, a.MerchantID) == burst
	})
	ahead := sys.Count(`SELECT count(*) FROM orders a, orders b WHERE a.merchant_id = $1 AND b.order_id = $2
		AND a.status = 'PAID' AND a.updated_at < b.updated_at`, a.MerchantID, quiet.OrderID)
	// FIFO would apply all 100 of A's (200 notices) first; the fair share
	// serves B within the first few dozen (ten workers start at once).
	if ahead > 40 {
		t.Errorf("%d of A's %d deposits were applied before B's; want B served within the first few", ahead, burst)
	}
	t.Logf("A's deposits applied before B's: %d of %d", ahead, burst)
	for _, id := range []string{base.OrderID, quiet.OrderID} {
		if n := transitions(sys, id, "PAID"); n != 1 {
			t.Fatalf("%s: PAID transitions = %d", id, n)
		}
	}
}
