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

// Issue 19's review: a lane turn writes its batch's answers with the
// turn's end, but an answer does not wait for a slow neighbour in the
// batch: three callbacks the merchant answered are DELIVERED while the
// fourth still hangs (a crash now would re-send only that one), and the
// fourth is recorded when it is answered.
func TestHungCallbackDoesNotHoldItsBatch(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var hung atomic.Int32
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("webhook-id") == "msg_batch_slow" {
			hung.Add(1)
			<-release
		}
		w.WriteHeader(204)
	}))
	defer sink.Close()
	defer close(release)
	sys := systest.Start(t, systest.Options{Env: map[string]string{"PAYRAIL_CALLBACK_TIMEOUT": "20s"}})
	m := sys.NewMerchant(sink.URL)
	o := m.CreateOrder(2700)
	for _, id := range []string{"msg_batch_slow", "msg_batch_1", "msg_batch_2", "msg_batch_3"} {
		testenv.Must(t, sys.Exec(`INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload) VALUES ($1, $2, $3, 'payment.paid', '{"type":"payment.paid"}')`,
			id, m.MerchantID, o.OrderID))
	}
	testenv.Must(t, sys.Deps.Store.WakeLane(context.Background(), m.MerchantID))
	sys.StartWorker()
	testenv.Poll(t, 15*time.Second, "the three answered callbacks DELIVERED while the fourth hangs", func() bool {
		return sys.Count(`SELECT count(*) FROM callbacks WHERE callback_id LIKE 'msg_batch_%' AND callback_id <> 'msg_batch_slow' AND status = 'DELIVERED'`) == 3
	})
	if hung.Load() != 1 {
		t.Fatalf("the slow callback was sent %d times so far, want 1 (still hanging)", hung.Load())
	}
	if n := sys.Count(`SELECT count(*) FROM callbacks WHERE callback_id = 'msg_batch_slow' AND status = 'PENDING' AND attempt = 0`); n != 1 {
		t.Fatalf("the hanging callback is not PENDING at attempt 0")
	}
	release <- struct{}{}
	testenv.Poll(t, 15*time.Second, "the fourth recorded once answered", func() bool {
		return sys.Count(`SELECT count(*) FROM callbacks WHERE callback_id = 'msg_batch_slow' AND status = 'DELIVERED'`) == 1
	})
	if n := sys.Count(`SELECT count(*) FROM callback_attempts WHERE callback_id LIKE 'msg_batch_%'`); n != 4 {
		t.Fatalf("%d attempt rows, want 4", n)
	}
}
