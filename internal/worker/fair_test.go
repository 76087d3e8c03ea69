package worker_test

import (
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// A merchant's burst of confirms must not queue ahead of another merchant's
// confirm (DESIGN "Fair workers"). The flood is queued before any worker
// runs, so the order in which confirms are served — not a timing — shows
// whether B waited behind A: FIFO serves B after all of A's; the fair share
// serves it after at most a few.
func TestQuietMerchantConfirmsAheadOfAFlood(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{
		"PAYRAIL_RATE_LIMIT": "100000", "PAYRAIL_RATE_BURST": "100000", "PAYRAIL_CONFIRM_FAIR_SHARE": "4",
		// The flood is the set-up here (the worker's fair queue is under
		// test); admission control would rightly lower A's creates.
		"PAYRAIL_ADMIT_TOLERANCE": "off",
		// Nor may shedding refuse them: with no worker running, A's first
		// confirm waits longer than 5 s on a loaded machine.
		"PAYRAIL_SHED_AFTER": "10m",
	}})
	a, b := sys.NewMerchant(""), sys.NewMerchant("")

	// Baseline, same system: B alone, one confirm at a time.
	w := sys.StartWorker()
	for range 3 {
		o := b.CreateOrder(1000)
		if r := b.Confirm(o, sys.Session(o), "Prefer", "wait=10"); r.Status != 200 {
			t.Fatalf("B alone: %d %s", r.Status, r.Body)
		}
	}
	testenv.Poll(t, 10*time.Second, "B's baseline confirms to leave the fair share", func() bool {
		n, err := sys.Deps.Queue.Fair.Outstanding(t.Context(), b.MerchantID)
		return err == nil && n == 0
	})
	w.Server.Shutdown()

	const flood = 300
	orders := make([]systest.Order, flood)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < flood; i += 8 {
				o := a.CreateOrder(2000)
				if r := a.Confirm(o, sys.Session(o)); r.Status != 202 {
					t.Errorf("A's confirm %d: %d %s", i, r.Status, r.Body)
				}
				orders[i] = o
			}
		})
	}
	wg.Wait()
	quiet := b.CreateOrder(1000)
	if r := b.Confirm(quiet, sys.Session(quiet)); r.Status != 202 {
		t.Fatalf("B's confirm: %d %s", r.Status, r.Body)
	}

	insp := asynq.NewInspectorFromRedisClient(sys.Deps.Redis)
	bulk, err := insp.GetQueueInfo(queue.QueuePaymentsBulk)
	testenv.Must(t, err)
	flooded, err := insp.GetQueueInfo(queue.QueuePaymentsFlood)
	testenv.Must(t, err)
	pending, err := insp.ListPendingTasks(queue.QueuePayments, asynq.PageSize(1000))
	testenv.Must(t, err)
	confirms := 0
	for _, task := range pending {
		if task.Type == queue.TypeConfirm {
			confirms++
		}
	}
	// A's first 4 and B's in payments; A's next 4 × 15 in bulk; the rest in flood.
	if wantBulk := 4 * (queue.FloodFactor - 1); confirms != 5 || bulk.Pending != wantBulk || flooded.Pending != flood-4-wantBulk {
		t.Fatalf("queued confirms: payments %d, payments_bulk %d, payments_flood %d; want 5, %d, %d",
			confirms, bulk.Pending, flooded.Pending, wantBulk, flood-4-wantBulk)
	}

	sys.StartWorker()
	b.WaitStatus(quiet.OrderID, "PAID", 30*time.Second)
	testenv.Poll(t, 60*time.Second, "all of A's orders to be PAID (bulk is served, not starved)", func() bool {
		return sys.Count(`SELECT count(*) FROM orders WHERE merchant_id = $1 AND status = 'PAID'`, a.MerchantID) == flood
	})
	ahead := sys.Count(`SELECT count(*) FROM orders a, orders b WHERE a.merchant_id = $1 AND b.order_id = $2
		AND a.status = 'PAID' AND a.updated_at < b.updated_at`, a.MerchantID, quiet.OrderID)
	// Ten workers start at once and asynq picks the payments queue first
	// about half the time, so B is among the first few dozen; FIFO would
	// put ~300 ahead.
	if ahead > 60 {
		t.Errorf("%d of A's %d flooded confirms were PAID before B's; want B served within the first few", ahead, flood)
	}
	t.Logf("A's confirms PAID before B's: %d of %d", ahead, flood)
	testenv.Poll(t, 10*time.Second, "finished confirms to leave A's fair share", func() bool {
		n, err := sys.Deps.Queue.Fair.Outstanding(t.Context(), a.MerchantID)
		return err == nil && n == 0
	})
}
