package callback_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/callback"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// A merchant's backlog drains in a handful of lane tasks, not one per
// batch (each turn stays in its task while no other lane waits), while
// 64 wakes and 10 payments of the same merchant land during the drain:
// every callback is sent once and nothing is left behind.
func TestLaneDrainsBacklogInPlace(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, nil)
	sys := start(t, nil, nil)
	m := sys.NewMerchant(ep.URL)
	ctx := context.Background()
	o := m.CreateOrder(1000)
	_, err := sys.DB.DB.ExecContext(ctx, `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload)
SELECT 'msg_stay_' || g, $1, $2, 'payment.paid', '{}' FROM generate_series(1, 400) g`, m.MerchantID, o.OrderID)
	testenv.Must(t, err)
	testenv.Must(t, sys.Deps.Store.WakeLane(ctx, m.MerchantID))
	began := time.Now()
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() { testenv.Must(t, sys.Deps.Store.WakeLane(ctx, m.MerchantID)) })
	}
	var paid []string
	var mu sync.Mutex
	for range 10 {
		wg.Go(func() {
			id := pay(t, sys, m)
			mu.Lock()
			paid = append(paid, id)
			mu.Unlock()
		})
	}
	wg.Wait()
	testenv.Poll(t, 60*time.Second, "410 callbacks delivered", func() bool {
		return sys.Count(`SELECT count(*) FROM callbacks WHERE merchant_id = $1 AND status = 'DELIVERED'`, m.MerchantID) == 410
	})
	perID := map[string]int{}
	for _, r := range ep.requests() {
		perID[r.ID]++
	}
	for id, n := range perID {
		if n != 1 {
			t.Errorf("%s sent %d times", id, n)
		}
	}
	if len(perID) != 410 {
		t.Errorf("endpoint received %d distinct callbacks, want 410", len(perID))
	}
	var gen int64
	testenv.Must(t, sys.DB.DB.Get(&gen, `SELECT lane_gen FROM callback_endpoints WHERE merchant_id = $1`, m.MerchantID))
	took := time.Since(began)
	t.Logf("410 callbacks (51+ batches of 8) delivered at lane generation %d in %s", gen, took)
	// One generation per task: re-queueing every batch would take 51 or
	// more. A task stays at most MaxStay, so a slow (loaded) drain may
	// take one more generation per MaxStay.
	if limit := 12 + int64(took/callback.MaxStay); gen > limit {
		t.Errorf("lane generation %d after 410 callbacks: turns were re-queued, not taken in place", gen)
	}
}

// Merchant A's lane draining a 3,000-callback backlog in place must not
// hold up merchant B's fresh callbacks: they arrive within what they take
// alone (baseline measured in this test). A's lane stays in its task; B's
// lane gets a turn slot of its own, since a lane stays only while one is
// left. (With a single turn slot, PAYRAIL_WORKER_CONCURRENCY=2, lanes never
// stay; B's refused turn then retries against A's re-queued ones, as it
// did before lanes stayed: 0.4–2.3 s measured, left alone.)
func TestStayingLaneLeavesRoomForAQuietMerchant(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		env   map[string]string
		slack time.Duration
	}{
		// A floor of 1 s: a loaded machine stalls for hundreds of ms, while
		// waiting behind A's staying lane would cost up to MaxStay (5 s).
		{"default worker", nil, time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			fastA, fastB := newEndpoint(t, nil), newEndpoint(t, nil)
			sys := start(t, c.env, nil)
			a, b := sys.NewMerchant(fastA.URL), sys.NewMerchant(fastB.URL)
			ctx := context.Background()

			alone := callbackLatencies(t, sys, b, fastB, 6, nil)

			o := a.CreateOrder(1000)
			_, err := sys.DB.DB.ExecContext(ctx, `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload)
SELECT 'msg_noisy_' || g, $1, $2, 'payment.paid', '{}' FROM generate_series(1, 3000) g`, a.MerchantID, o.OrderID)
			testenv.Must(t, err)
			testenv.Must(t, sys.Deps.Store.WakeLane(ctx, a.MerchantID))
			testenv.Poll(t, 20*time.Second, "A's backlog draining", func() bool { return len(fastA.requests()) >= 50 })

			beside := callbackLatencies(t, sys, b, fastB, 6, nil)
			left := sys.Count(`SELECT count(*) FROM callbacks WHERE merchant_id = $1 AND status = 'PENDING'`, a.MerchantID)
			var gen int64
			testenv.Must(t, sys.DB.DB.Get(&gen, `SELECT lane_gen FROM callback_endpoints WHERE merchant_id = $1`, a.MerchantID))
			p := func(s []time.Duration) time.Duration { return s[len(s)-1] }
			t.Logf("B's outbox→received: alone max %s, beside A's draining backlog max %s; A still pending %d of 3000 at lane generation %d",
				p(alone), p(beside), left, gen)
			if left == 0 {
				t.Fatal("A's backlog drained before B's payments were measured: the test measured nothing")
			}
			if limit := max(2*p(alone), p(alone)+c.slack); p(beside) > limit {
				t.Errorf("B's callbacks waited behind A's lane: max %s beside A vs %s alone (limit %s)", p(beside), p(alone), limit)
			}
		})
	}
}

// callbackTasksProcessed is how many callbacks-queue tasks asynq has run.
func callbackTasksProcessed(t *testing.T, sys *systest.System) int {
	info, err := asynq.NewInspectorFromRedisClient(sys.Redis.Client).GetQueueInfo(queue.QueueCallbacks)
	if err != nil {
		return 0 // the queue was never used
	}
	return info.ProcessedTotal
}

// A payment whose merchant's lane is idle has its callback sent by the
// worker that made it PAID, started in that transaction: no lane task runs.
// And a turn with no task that outlasts LaneCheckAfter (a merchant
// answering in 4.5 s) is not taken for lost by the sweep: it keeps its lane
// fresh, so its generation stands and the callback is sent once.
func TestIdleLaneSendsFromTheWakingWorker(t *testing.T) {
	t.Parallel()
	slow := make(chan struct{}, 1)
	ep := newEndpoint(t, func(n int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-slow:
			time.Sleep(4500 * time.Millisecond)
		default:
		}
	})
	sys := start(t, map[string]string{"PAYRAIL_SWEEP_INTERVAL": "500ms", "PAYRAIL_CALLBACK_TIMEOUT": "10s"}, nil)
	m := sys.NewMerchant(ep.URL)
	var gen int64
	laneGen := func() int64 {
		testenv.Must(t, sys.DB.DB.Get(&gen, `SELECT lane_gen FROM callback_endpoints WHERE merchant_id = $1`, m.MerchantID))
		return gen
	}
	for i := range 3 {
		o := pay(t, sys, m)
		waitCallback(t, sys, o, "DELIVERED", 10*time.Second)
		testenv.Poll(t, 5*time.Second, "the lane to end", func() bool {
			return sys.Count(`SELECT count(*) FROM callback_endpoints WHERE merchant_id = $1 AND NOT lane_queued`, m.MerchantID) == 1
		})
		if g := laneGen(); g != int64(i+1) {
			t.Fatalf("payment %d: lane generation %d, want %d (one per idle wake)", i+1, g, i+1)
		}
	}
	if n := callbackTasksProcessed(t, sys); n != 0 {
		t.Errorf("%d lane tasks ran for 3 callbacks to an idle lane, want 0", n)
	}

	slow <- struct{}{}
	before := laneGen()
	o := pay(t, sys, m)
	c := waitCallback(t, sys, o, "DELIVERED", 20*time.Second)
	if g := laneGen(); g != before+1 {
		t.Errorf("slow turn: lane generation %d → %d, want one more (the sweep superseded a live turn)", before, g)
	}
	if as := attempts(t, sys, c.CallbackID); len(as) != 1 {
		t.Errorf("slow callback attempted %d times, want 1", len(as))
	}
	n := 0
	for _, r := range ep.requests() {
		if r.OrderID == o {
			n++
		}
	}
	if n != 1 {
		t.Errorf("slow callback received %d times, want 1", n)
	}
}
