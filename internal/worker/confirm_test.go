package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/lock"
	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/process"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
	"github.com/payrail/payrail/internal/worker"
)

func transitions(sys *systest.System, orderID, to string) int {
	return sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND to_status = $2`, orderID, to)
}

func callbacks(sys *systest.System, orderID, event string) int {
	return sys.Count(`SELECT count(*) FROM callbacks WHERE order_id = $1 AND event_type = $2`, orderID, event)
}

func TestConcurrentDuplicateConfirms(t *testing.T) {
	t.Parallel()
	concurrentDuplicateConfirms(t, systest.Options{Worker: true, Faults: mockpg.Faults{LatencyMS: 50}})
}

// concurrentDuplicateConfirms sends 200 confirms of one order at once to a
// system started with opt: one is ACCEPTED, the rest DUPLICATE, and the PG
// charges once (also run on a Redis Cluster, cluster_test.go).
func concurrentDuplicateConfirms(t *testing.T, opt systest.Options) {
	sys := systest.Start(t, opt)
	m := sys.NewMerchant("")
	o := m.CreateOrder(15000)
	key := sys.Session(o)

	const n = 200
	var wg sync.WaitGroup
	results := make([]systest.Response, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = m.Confirm(o, key)
		}()
	}
	wg.Wait()
	accepted, dup := 0, 0
	for _, r := range results {
		switch {
		case r.Status == 202 && r.JSON()["result"] == "ACCEPTED":
			accepted++
		case r.Status == 200 && r.JSON()["result"] == "DUPLICATE":
			dup++
		default:
			t.Errorf("unexpected answer %d %s", r.Status, r.Body)
		}
	}
	m.WaitStatus(o.OrderID, "PAID", 15*time.Second)
	if got := sys.PG.Stats()[o.OrderID].Approvals; got != 1 {
		t.Fatalf("mockpg approvals = %d, want 1", got)
	}
	if got := transitions(sys, o.OrderID, "PAID"); got != 1 {
		t.Fatalf("PAID transitions = %d, want 1", got)
	}
	if got := transitions(sys, o.OrderID, "CONFIRMING"); got != 1 {
		t.Fatalf("CONFIRMING transitions = %d, want 1", got)
	}
	if got := callbacks(sys, o.OrderID, "payment.paid"); got != 1 {
		t.Fatalf("payment.paid callbacks = %d, want 1", got)
	}
	t.Logf("200 concurrent confirms: %d ACCEPTED, %d DUPLICATE", accepted, dup)
}

func TestRacingPaymentKeys(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	o := m.CreateOrder(20000)
	const n = 10
	var wg sync.WaitGroup
	results := make([]systest.Response, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = m.Confirm(o, fmt.Sprintf("tmock_racer_%02d", i))
		}()
	}
	wg.Wait()
	won, conflict := 0, 0
	for _, r := range results {
		switch {
		case r.Status == 202:
			won++
		case r.Status == 409 && r.Code() == payment.CodePaymentKeyConflict:
			conflict++
		default:
			t.Errorf("unexpected %d %s", r.Status, r.Body)
		}
	}
	if won != 1 || conflict != n-1 {
		t.Fatalf("won=%d conflict=%d, want 1 and %d", won, conflict, n-1)
	}
}

func TestConfirmRejectionsChangeNothing(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	a := sys.NewMerchant("")
	b := sys.NewMerchant("")
	o := a.CreateOrder(30000)
	key := sys.Session(o)
	body := func(amount int64, token string) map[string]any {
		return map[string]any{"paymentKey": key, "amount": amount, "paymentToken": token}
	}
	cases := []struct {
		name   string
		m      *systest.Merchant
		body   map[string]any
		status int
		code   string
	}{
		{"wrong amount", a, body(29999, o.PaymentToken), 400, payment.CodeAmountMismatch},
		{"wrong token", a, body(30000, "pt_not-the-token"), 403, payment.CodeInvalidPaymentToken},
		{"another merchant", b, body(30000, o.PaymentToken), 404, payment.CodeOrderNotFound},
	}
	for _, c := range cases {
		before := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1`, o.OrderID)
		r := c.m.Do("POST", "/v1/orders/"+o.OrderID+"/confirm", c.body)
		if r.Status != c.status || r.Code() != c.code {
			t.Errorf("%s: got %d %s, want %d %s", c.name, r.Status, r.Body, c.status, c.code)
		}
		after := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1`, o.OrderID)
		wantLog := 0
		if c.code == payment.CodeInvalidPaymentToken {
			wantLog = 1 // the security event, nothing else
			if n := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND action = 'security.invalid_payment_token'`, o.OrderID); n != 1 {
				t.Errorf("security event rows = %d, want 1", n)
			}
		}
		if after-before != wantLog {
			t.Errorf("%s: %d history rows written, want %d", c.name, after-before, wantLog)
		}
	}
	if st := a.Status(o.OrderID); st != "CREATED" {
		t.Fatalf("status = %s, want CREATED", st)
	}
	if calls := sys.PG.Stats()[o.OrderID].ConfirmCalls; calls != 0 {
		t.Fatalf("PG confirm calls = %d, want 0", calls)
	}
}

func TestDeclineFails(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true, Faults: mockpg.Faults{DeclineRate: 1}})
	m := sys.NewMerchant("")
	o := m.CreateOrder(5000)
	key := sys.Session(o)
	r := m.Confirm(o, key, "Prefer", "wait=10")
	if r.Status != 200 || r.JSON()["result"] != "FAILURE" {
		t.Fatalf("confirm with wait: %d %s", r.Status, r.Body)
	}
	failure, _ := r.JSON()["failure"].(map[string]any)
	if failure["code"] != "REJECT_CARD_PAYMENT" {
		t.Fatalf("failure = %v, want the PG's code REJECT_CARD_PAYMENT", failure)
	}
	if n := callbacks(sys, o.OrderID, "payment.failed"); n != 1 {
		t.Fatalf("payment.failed callbacks = %d", n)
	}
	// The same paymentKey again answers the stored failure.
	r = m.Confirm(o, key)
	if r.Status != 200 || r.JSON()["result"] != "FAILURE" {
		t.Fatalf("repeat: %d %s", r.Status, r.Body)
	}
}

func TestTransientErrorsThenSuccess(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true, Faults: mockpg.Faults{Error5xxRate: 1}})
	m := sys.NewMerchant("")
	o := m.CreateOrder(7000)
	key := sys.Session(o)
	if r := m.Confirm(o, key); r.Status != 202 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	testenv.Poll(t, 10*time.Second, "three 5xx answers", func() bool { return sys.PG.Stats()[o.OrderID].ConfirmCalls >= 3 })
	sys.PG.SetFaults(mockpg.Faults{})
	m.WaitStatus(o.OrderID, "PAID", 10*time.Second)
	if got := sys.PG.Stats()[o.OrderID].Approvals; got != 1 {
		t.Fatalf("approvals = %d", got)
	}
	if n := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND action = 'pg.confirm' AND details->>'outcome' = 'unknown'`, o.OrderID); n < 3 {
		t.Fatalf("unknown (5xx) attempts logged = %d, want ≥ 3", n)
	}
}

func TestAnswerLostStillPaidOnce(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true, Faults: mockpg.Faults{AnswerLostRate: 1}})
	sys.PG.SetWebhookURL("") // only the confirm's own retry may learn of the approval
	m := sys.NewMerchant("")
	o := m.CreateOrder(8000)
	key := sys.Session(o)
	m.Confirm(o, key)
	testenv.Poll(t, 10*time.Second, "the approval whose answer is lost", func() bool { return sys.PG.Stats()[o.OrderID].Approvals == 1 })
	testenv.Poll(t, 10*time.Second, "a second confirm call", func() bool { return sys.PG.Stats()[o.OrderID].ConfirmCalls >= 2 })
	sys.PG.SetFaults(mockpg.Faults{})
	m.WaitStatus(o.OrderID, "PAID", 10*time.Second)
	st := sys.PG.Stats()[o.OrderID]
	if st.Approvals != 1 {
		t.Fatalf("approvals = %d, want 1", st.Approvals)
	}
	if n := transitions(sys, o.OrderID, "FAILED"); n != 0 {
		t.Fatal("an approved payment was marked FAILED")
	}
}

func TestUnknownThenSessionGoneIsDecidedByLookup(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	pgNow := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return pgNow }
	sys := systest.Start(t, systest.Options{Worker: true, PGNow: clock,
		Faults: mockpg.Faults{TimeoutRate: 1, TimeoutMS: 5000},
		Env:    map[string]string{"PAYRAIL_PG_TIMEOUT": "300ms", "PAYRAIL_LOCK_TTL": "3s"}})
	m := sys.NewMerchant("")
	o := m.CreateOrder(9000)
	key := sys.Session(o)
	m.Confirm(o, key)
	testenv.Poll(t, 10*time.Second, "an unknown outcome", func() bool {
		return sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND details->>'outcome' = 'unknown'`, o.OrderID) >= 1
	})
	// The PG session expires while we did not know: confirm now answers
	// NOT_FOUND_PAYMENT_SESSION, which must not fail the order on its own.
	mu.Lock()
	pgNow = pgNow.Add(time.Hour)
	mu.Unlock()
	sys.PG.SetFaults(mockpg.Faults{})
	testenv.Poll(t, 15*time.Second, "a terminal status", func() bool {
		st := m.Status(o.OrderID)
		return st == "FAILED" || st == "PAID"
	})
	var actions []string
	testenv.Must(t, sys.DB.DB.Select(&actions, `SELECT action || coalesce(':' || (details->>'code'), '') FROM payment_log WHERE order_id = $1 ORDER BY id`, o.OrderID))
	joined := strings.Join(actions, " ")
	if !strings.Contains(joined, "pg.lookup") {
		t.Fatalf("no lookup before deciding: %s", joined)
	}
	if sys.PG.Stats()[o.OrderID].Approvals != 0 || m.Status(o.OrderID) != "FAILED" {
		t.Fatalf("want FAILED with no approval; history: %s", joined)
	}
}

func TestRedisFlushedBeforeTaskRan(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{"PAYRAIL_CONFIRM_STUCK_AFTER": "300ms"}})
	m := sys.NewMerchant("")
	o := m.CreateOrder(11000)
	key := sys.Session(o)
	if r := m.Confirm(o, key); r.Status != 202 {
		t.Fatalf("confirm: %d", r.Status)
	}
	testenv.Must(t, sys.Redis.Client.FlushDB(context.Background()).Err())
	sys.StartWorker()
	m.WaitStatus(o.OrderID, "PAID", 15*time.Second)
	if sys.PG.Stats()[o.OrderID].Approvals != 1 {
		t.Fatal("want exactly one approval")
	}
}

// A worker whose lock lapsed mid-call (GC pause, slow PG) must not write a
// second transition: the version fence stops it.
func TestExpiredLockFencedByVersion(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Faults: mockpg.Faults{LatencyMS: 400}})
	m := sys.NewMerchant("")
	o := m.CreateOrder(12000)
	key := sys.Session(o)
	if r := m.Confirm(o, key); r.Status != 202 {
		t.Fatalf("confirm: %d", r.Status)
	}
	row, err := sys.Deps.Store.OrderRowAnyMerchant(context.Background(), o.OrderID)
	testenv.Must(t, err)
	mk := func() *worker.Worker {
		w := process.NewWorker(sys.Config, sys.Deps, sys.Log).Handler
		l := lock.New(sys.Redis.Client, 50*time.Millisecond, sys.Log)
		l.NoExtend = true
		w.Locks = l
		return w
	}
	w1, w2 := mk(), mk()
	// w1 calls the PG only once w2 has too (both inside the PG call, w1's
	// lock lapsed): on a loaded machine w2 could otherwise arrive after
	// w1's commit and, reading PAID, never call, which tests nothing.
	started, w2Called := make(chan struct{}), make(chan struct{})
	w1.PG = signalPG{PG: w1.PG, started: started, after: w2Called}
	w2.PG = signalPG{PG: w2.PG, started: w2Called}
	task := asynq.NewTask(queue.TypeConfirm, []byte(fmt.Sprintf(`{"orderId":%q,"version":%d}`, o.OrderID, row.Version)))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, w := range []*worker.Worker{w1, w2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 1 {
				// Start once the first one's lock has lapsed (the fault under
				// test): poll Redis for the key, as a loaded machine can make
				// any fixed wait too short.
				<-started
				// (Not testenv.Poll: Fatal may not be called off the test goroutine.)
				for deadline := time.Now().Add(5 * time.Second); sys.Redis.Client.Exists(context.Background(), "payrail:lock:order:"+o.OrderID).Val() != 0; {
					if time.Now().After(deadline) {
						t.Error("the first worker's lock did not lapse in 5 s")
						return
					}
					time.Sleep(5 * time.Millisecond) // polling Redis for the key's expiry
				}
			}
			errs[i] = w.HandleConfirm(context.Background(), task)
		}()
	}
	wg.Wait()
	t.Logf("handler errors: %v", errs)
	st := sys.PG.Stats()[o.OrderID]
	if st.ConfirmCalls != 2 {
		t.Fatalf("confirm calls = %d, want 2 (both workers called the PG)", st.ConfirmCalls)
	}
	if st.Approvals != 1 {
		t.Fatalf("approvals = %d, want 1", st.Approvals)
	}
	if n := transitions(sys, o.OrderID, "PAID"); n != 1 {
		t.Fatalf("PAID transitions = %d, want 1", n)
	}
	if n := callbacks(sys, o.OrderID, "payment.paid"); n != 1 {
		t.Fatalf("payment.paid callbacks = %d, want 1", n)
	}
}

func TestPreferWaitDoesNotHoldConnections(t *testing.T) {
	t.Parallel()
	// The PG answers after 12 s, so all 200 are still waiting however
	// slowly a loaded machine delivers them (the first answer would end a
	// waiter, and 200 signed confirms under -race on a starved 2-core
	// machine can take more than 5 s to arrive), and the last still
	// settles within its wait=30.
	sys := systest.Start(t, systest.Options{Worker: true, Faults: mockpg.Faults{LatencyMS: 12000},
		Env: map[string]string{"PAYRAIL_WORKER_CONCURRENCY": "200", "PAYRAIL_DB_MAX_CONNS": "20", "PAYRAIL_LOCK_TTL": "30s", "PAYRAIL_PG_TIMEOUT": "16s",
			// No sweep re-enqueues while the PG takes its 12 s.
			"PAYRAIL_CONFIRM_STUCK_AFTER": "30s"}})
	sys.PG.SetWebhookURL("") // measure the waiters, not webhook ingestion
	m := sys.NewMerchant("")
	const n = 200
	orders := make([]systest.Order, n)
	keys := make([]string, n)
	for i := range n {
		orders[i] = m.CreateOrder(int64(1000 + i))
		keys[i] = sys.Session(orders[i])
	}
	var wg sync.WaitGroup
	results := make([]systest.Response, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = m.Confirm(orders[i], keys[i], "Prefer", "wait=30")
		}()
	}
	// While the PG is slow, all 200 wait; sample the pool meanwhile.
	// Generous: on a loaded make test the 200 requests take a while to
	// arrive; what is asserted is the pool, not the speed.
	testenv.Poll(t, 28*time.Second, "200 waiters", func() bool { return sys.API.Waiter.Waiting() == n })
	peak := 0
	for range 20 {
		if u := sys.Deps.DB.Stats().InUse; u > peak {
			peak = u
		}
		time.Sleep(10 * time.Millisecond) // sampling interval, not a wait for work
	}
	wg.Wait()
	for i, r := range results {
		if r.Status != 200 || r.JSON()["result"] != "SUCCESS" {
			t.Fatalf("order %d: %d %s", i, r.Status, r.Body)
		}
	}
	stats := sys.Deps.DB.Stats()
	t.Logf("200 waiters: pool max %d, in use while waiting (peak of samples) %d, total waits for a connection %d", stats.MaxOpenConnections, peak, stats.WaitCount)
	// A waiter holding a connection would show as ~200 (the pool's 20);
	// the api's own background reads (the listener's fallback poll, the
	// delivery-metrics poll, the rate-limit override cache) may each hold
	// one for a moment, which once showed as 3 under a loaded make test.
	if peak > 5 {
		t.Fatalf("%d connections in use while 200 requests waited; waiters must not hold connections", peak)
	}
}

// signalPG closes started when its Confirm is called and, when after is
// set, waits (up to 10 s) for it to close before calling the PG.
type signalPG struct {
	worker.PG
	started chan struct{}
	after   chan struct{}
}

func (p signalPG) Confirm(ctx context.Context, idem, paymentKey, orderID string, amount int64) pgclient.Result {
	close(p.started)
	if p.after != nil {
		select {
		case <-p.after:
		case <-time.After(10 * time.Second):
		}
	}
	return p.PG.Confirm(ctx, idem, paymentKey, orderID, amount)
}
