package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/process"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// A merchant whose lane task is stranded (a worker lost Redis mid-task, so
// asynq holds the task ID until its lease recovery, up to a minute or more)
// still gets its callbacks promptly: the sweep presumes the lane lost and
// wakes it under a new generation (a new task ID).
func TestStrandedLaneIsBypassed(t *testing.T) {
	t.Parallel()
	var got atomic.Int32
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1) }))
	defer sink.Close()
	sys := systest.Start(t, systest.Options{Env: map[string]string{"PAYRAIL_SWEEP_INTERVAL": "200ms", "PAYRAIL_CALLBACK_TIMEOUT": "1s"}})
	m := sys.NewMerchant(sink.URL)
	o := m.CreateOrder(2500)
	m.Confirm(o, sys.Session(o))
	ctx := context.Background()
	row, err := sys.Deps.Store.OrderRowAnyMerchant(ctx, o.OrderID)
	testenv.Must(t, err)
	pk := *row.PaymentKey
	_, err = sys.Deps.Store.Transition(ctx, store.Change{OrderID: o.OrderID, Version: row.Version, To: payment.Paid, Action: "test", PaymentKey: &pk})
	testenv.Must(t, err)
	var id string
	testenv.Must(t, sys.DB.DB.Get(&id, `SELECT callback_id FROM callbacks WHERE order_id = $1`, o.OrderID))
	var gen int64
	testenv.Must(t, sys.DB.DB.Get(&gen, `SELECT lane_gen FROM callback_endpoints WHERE merchant_id = $1 AND lane_queued`, m.MerchantID))
	// Strand the lane: its task ID stays taken for an hour.
	insp := asynq.NewInspectorFromRedisClient(sys.Redis.Client)
	taskID := fmt.Sprintf("lane:%s:%d", m.MerchantID, gen)
	testenv.Must(t, insp.DeleteTask(queue.QueueCallbacks, taskID))
	c := asynq.NewClientFromRedisClient(sys.Redis.Client)
	_, err = c.Enqueue(asynq.NewTask(queue.TypeCallbackLane, []byte(fmt.Sprintf(`{"merchantId":%q,"gen":%d}`, m.MerchantID, gen))),
		asynq.TaskID(taskID), asynq.Queue(queue.QueueCallbacks), asynq.ProcessIn(time.Hour))
	testenv.Must(t, err)
	// …and long enough ago that the sweep presumes it lost.
	_, err = sys.DB.DB.Exec(`UPDATE callback_endpoints SET lane_queued_at = now() - interval '1 hour' WHERE merchant_id = $1`, m.MerchantID)
	testenv.Must(t, err)
	sys.StartWorker()
	testenv.Poll(t, 10*time.Second, "the callback to be delivered", func() bool {
		return sys.Count(`SELECT count(*) FROM callbacks WHERE callback_id = $1 AND status = 'DELIVERED'`, id) == 1
	})
	if got.Load() != 1 {
		t.Fatalf("merchant received %d deliveries, want 1", got.Load())
	}
}

// Two runs of one lane turn at once (asynq's lease recovery of a turn that
// was in fact still running) send each callback once: the send claim in
// PostgreSQL decides.
func TestTwoRunsOfOneLaneTurnSendOnce(t *testing.T) {
	t.Parallel()
	var got atomic.Int32
	release := make(chan struct{})
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		<-release // hold the first send open while the second run goes
	}))
	defer sink.Close()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant(sink.URL)
	o := m.CreateOrder(2600)
	m.Confirm(o, sys.Session(o))
	ctx := context.Background()
	row, err := sys.Deps.Store.OrderRowAnyMerchant(ctx, o.OrderID)
	testenv.Must(t, err)
	pk := *row.PaymentKey
	_, err = sys.Deps.Store.Transition(ctx, store.Change{OrderID: o.OrderID, Version: row.Version, To: payment.Paid, Action: "test", PaymentKey: &pk})
	testenv.Must(t, err)
	var id string
	testenv.Must(t, sys.DB.DB.Get(&id, `SELECT callback_id FROM callbacks WHERE order_id = $1`, o.OrderID))
	var gen int64
	testenv.Must(t, sys.DB.DB.Get(&gen, `SELECT lane_gen FROM callback_endpoints WHERE merchant_id = $1`, m.MerchantID))
	w := process.NewWorker(sys.Config, sys.Deps, sys.Log).Handler
	task := asynq.NewTask(queue.TypeCallbackLane, []byte(fmt.Sprintf(`{"merchantId":%q,"gen":%d}`, m.MerchantID, gen)))
	first := make(chan error, 1)
	go func() { first <- w.Callbacks.ProcessTask(ctx, task) }()
	testenv.Poll(t, 5*time.Second, "the first send to reach the merchant", func() bool { return got.Load() == 1 })
	if err := w.Callbacks.ProcessTask(ctx, task); err != nil {
		t.Fatalf("second run: %v", err)
	}
	close(release)
	testenv.Must(t, <-first)
	if n := got.Load(); n != 1 {
		t.Fatalf("merchant received %d sends of one attempt", n)
	}
	if n := sys.Count(`SELECT count(*) FROM callbacks WHERE callback_id = $1 AND status = 'DELIVERED'`, id); n != 1 {
		t.Fatal("callback not delivered")
	}
}
