package callback_test

import (
	"context"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// refusingURL is a loopback address nothing listens on: every dial is
// refused at once.
func refusingURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err)
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/cb"
}

// queuedCallbackTasks is every task asynq holds for the callbacks queue.
func queuedCallbackTasks(t *testing.T, sys *systest.System) int {
	insp := asynq.NewInspectorFromRedisClient(sys.Redis.Client)
	info, err := insp.GetQueueInfo(queue.QueueCallbacks)
	if err != nil {
		return 0 // the queue does not exist yet
	}
	return info.Pending + info.Scheduled + info.Retry + info.Active
}

// callbackLatencies pays n orders for m one at a time and returns, for each,
// the time from its outbox row to the endpoint receiving it.
func callbackLatencies(t *testing.T, sys *systest.System, m *systest.Merchant, ep *endpoint, n int, sample func()) []time.Duration {
	t.Helper()
	var out []time.Duration
	for range n {
		orderID := pay(t, sys, m)
		testenv.Poll(t, 20*time.Second, "callback of "+orderID, func() bool {
			if sample != nil {
				sample()
			}
			for _, r := range ep.requests() {
				if r.OrderID == orderID {
					var created time.Time
					testenv.Must(t, sys.DB.DB.Get(&created, `SELECT created_at FROM callbacks WHERE order_id = $1`, orderID))
					out = append(out, r.At.Sub(created))
					return true
				}
			}
			return false
		})
	}
	slices.Sort(out)
	return out
}

// A merchant whose endpoint refuses, with 10,000 callbacks pending, costs
// another merchant nothing measurable: its callbacks arrive as fast as
// alone (baseline measured in this test), the dead endpoint's breaker
// opens so it is not hammered, and asynq holds a handful of callback tasks,
// not one per pending callback.
func TestDeadEndpointBacklogDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	fast := newEndpoint(t, nil)
	sys := start(t, map[string]string{"PAYRAIL_CALLBACK_SCHEDULE": "1s,5s,30s,2m,10m"}, nil)
	b := sys.NewMerchant(fast.URL)
	d := sys.NewMerchant(refusingURL(t))
	ctx := context.Background()

	alone := callbackLatencies(t, sys, b, fast, 8, nil)

	// D's backlog: 10,000 PENDING callbacks, due now, on one real order.
	dOrder := d.CreateOrder(1000)
	_, err := sys.DB.DB.ExecContext(ctx, `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload)
SELECT 'msg_dead_' || g, $1, $2, 'payment.paid', '{"type":"payment.paid"}' FROM generate_series(1, 10000) g`, d.MerchantID, dOrder.OrderID)
	testenv.Must(t, err)
	testenv.Must(t, sys.Deps.Store.WakeLane(ctx, d.MerchantID))
	testenv.Poll(t, 20*time.Second, "dead endpoint's breaker to open", func() bool {
		var open bool
		testenv.Must(t, sys.DB.DB.Get(&open, `SELECT open_until IS NOT NULL FROM callback_endpoints WHERE merchant_id = $1`, d.MerchantID))
		return open
	})

	maxQueued := 0
	beside := callbackLatencies(t, sys, b, fast, 8, func() { maxQueued = max(maxQueued, queuedCallbackTasks(t, sys)) })
	var attempted int
	testenv.Must(t, sys.DB.DB.Get(&attempted, `SELECT count(*) FROM callback_attempts a JOIN callbacks c USING (callback_id) WHERE c.merchant_id = $1`, d.MerchantID))
	var pending int
	testenv.Must(t, sys.DB.DB.Get(&pending, `SELECT count(*) FROM callbacks WHERE merchant_id = $1 AND status = 'PENDING'`, d.MerchantID))

	// What metrics show of it (payrail_callback_breakers, _pending_by_merchant).
	counts, err := sys.Deps.Store.CountInFlight(ctx, time.Second)
	testenv.Must(t, err)
	if counts.Breakers["open"] != 1 || counts.PendingByMerchant[d.MerchantID] != int64(pending) {
		t.Errorf("counts: breakers %v, D's backlog %d (want 1 open, %d)", counts.Breakers, counts.PendingByMerchant[d.MerchantID], pending)
	}
	p := func(s []time.Duration) time.Duration { return s[len(s)-1] }
	t.Logf("B's outbox→received: alone max %s, beside D (10,000 pending, refusing) max %s; D attempted %d, still pending %d; queued callback tasks ≤ %d",
		p(alone), p(beside), attempted, pending, maxQueued)
	// 2× the baseline, with a floor of 1 s for this noisy 2-core machine
	// (it stalls for hundreds of ms); waiting behind D's backlog costs
	// seconds to minutes.
	if limit := max(2*p(alone), p(alone)+time.Second); p(beside) > limit {
		t.Errorf("B's callbacks slowed by D's backlog: max %s beside D vs %s alone (limit %s)", p(beside), p(alone), limit)
	}
	if maxQueued > 10 {
		t.Errorf("queued callback tasks reached %d with two merchants: must not grow with the backlog", maxQueued)
	}
	if attempted > 20 || pending < 9900 {
		t.Errorf("the open breaker must hold D's backlog unsent: %d attempts, %d still pending", attempted, pending)
	}
}

// The breaker opens after 5 failures, keeps the rest unsent without
// spending their attempts, probes after the cool-down, and a 2xx closes it
// and drains the backlog.
func TestBreakerOpensProbesClosesAndDrains(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(503))
	sys := start(t, map[string]string{"PAYRAIL_CALLBACK_SCHEDULE": "100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms"}, nil)
	m := sys.NewMerchant(ep.URL)
	var orders []string
	for range 12 {
		orders = append(orders, pay(t, sys, m))
	}
	var br struct {
		Failures     int        `db:"failures"`
		OpenUntil    *time.Time `db:"open_until"`
		FailingSince *time.Time `db:"failing_since"`
	}
	readBreaker := func() {
		testenv.Must(t, sys.DB.DB.Get(&br, `SELECT failures, open_until, failing_since FROM callback_endpoints WHERE merchant_id = $1`, m.MerchantID))
	}
	testenv.Poll(t, 20*time.Second, "breaker open", func() bool { readBreaker(); return br.OpenUntil != nil })
	if br.Failures < 5 || br.FailingSince == nil {
		t.Fatalf("breaker: %+v", br)
	}
	sentWhenOpened := len(ep.requests())
	// While it is open, nothing more goes out until the probe (5 s): judged
	// by when each request arrived, so a test goroutine that wakes late on
	// a loaded machine (after the probe went at OpenUntil) judges the same.
	until := *br.OpenUntil
	testenv.Poll(t, 10*time.Second, "cool-down to pass", func() bool { return time.Now().After(until) })
	early := 0
	for _, r := range ep.requests()[sentWhenOpened:] {
		if r.At.Before(until) {
			early++
		}
	}
	if early > 0 {
		t.Errorf("%d attempts sent while the breaker was open (before %s)", early, until.Format(time.RFC3339Nano))
	}
	ep.setAnswer(status(200))
	for _, o := range orders {
		waitCallback(t, sys, o, "DELIVERED", 30*time.Second)
	}
	readBreaker()
	if br.OpenUntil != nil || br.Failures != 0 || br.FailingSince != nil {
		t.Errorf("breaker not closed after the backlog drained: %+v", br)
	}
	// Callbacks never attempted while open kept their schedule: none DEAD.
	var dead int
	testenv.Must(t, sys.DB.DB.Get(&dead, `SELECT count(*) FROM callbacks WHERE merchant_id = $1 AND status = 'DEAD'`, m.MerchantID))
	if dead != 0 {
		t.Errorf("%d callbacks DEAD: waiting behind an open breaker must not spend attempts", dead)
	}
}

// Many concurrent wakes of one merchant's lane (a flood of PAID orders)
// leave at most one lane task queued: the callbacks queue is bounded by
// merchants, not by callbacks.
func TestConcurrentWakesOneLaneTask(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	ep := newEndpoint(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	})
	sys := start(t, nil, nil)
	t.Cleanup(func() { close(hold) })
	m := sys.NewMerchant(ep.URL)
	ctx := context.Background()
	o := m.CreateOrder(1000)
	_, err := sys.DB.DB.ExecContext(ctx, `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload)
SELECT 'msg_wake_' || g, $1, $2, 'payment.paid', '{}' FROM generate_series(1, 500) g`, m.MerchantID, o.OrderID)
	testenv.Must(t, err)
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			testenv.Must(t, sys.Deps.Store.WakeLane(ctx, m.MerchantID))
		}()
	}
	wg.Wait()
	var gen int64
	testenv.Must(t, sys.DB.DB.Get(&gen, `SELECT lane_gen FROM callback_endpoints WHERE merchant_id = $1`, m.MerchantID))
	if gen != 1 {
		t.Errorf("64 concurrent wakes took %d lane generations, want 1", gen)
	}
	if n := queuedCallbackTasks(t, sys); n > 1 {
		t.Errorf("%d callback tasks queued for one merchant, want ≤ 1", n)
	}
	var lane store.LaneWake
	testenv.Must(t, sys.DB.DB.Get(&lane, `SELECT merchant_id, lane_gen FROM callback_endpoints WHERE merchant_id = $1 AND lane_queued`, m.MerchantID))
}
