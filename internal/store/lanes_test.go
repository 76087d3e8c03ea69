package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// A merchant created after migration 00008 has its endpoint row from the
// start, so the sweep wakes its lane for due work that no wake announced
// (a lost wake, or callbacks written by another path). Before, the row
// only appeared with the first announced callback and such a backlog
// waited forever.
func TestSweepWakesANewMerchantsDueWork(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "w", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: m.MerchantID, Amount: 1000, Currency: "KRW", OrderName: "w", TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
	testenv.Must(t, err)
	_, err = db.DB.ExecContext(ctx, `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload) VALUES ('msg_unannounced', $1, $2, 'payment.paid', '{}')`, m.MerchantID, o.OrderID)
	testenv.Must(t, err)

	wakes, err := st.WakeDueLanes(ctx, time.Now().Add(-time.Minute), 100)
	testenv.Must(t, err)
	if len(wakes) != 1 || wakes[0].MerchantID != m.MerchantID {
		t.Fatalf("WakeDueLanes = %+v, want the new merchant's lane", wakes)
	}
	// Woken once: a second sweep while the lane is out adds nothing.
	if again, err := st.WakeDueLanes(ctx, time.Now().Add(-time.Minute), 100); err != nil || len(again) != 0 {
		t.Fatalf("second sweep woke %+v (%v), want nothing while the lane is out", again, err)
	}
}

// A lane out longer than LaneCheckAfter is offered to the sweep's "does
// Redis still hold it?" question, and RequeueLane is fenced by the
// generation: a lane whose late task did run is not requeued on top of it.
func TestQueuedLanesAndRequeueAreFenced(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "q", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: m.MerchantID, Amount: 1000, Currency: "KRW", OrderName: "q", TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
	testenv.Must(t, err)
	_, err = db.DB.ExecContext(ctx, `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload) VALUES ('msg_q', $1, $2, 'payment.paid', '{}')`, m.MerchantID, o.OrderID)
	testenv.Must(t, err)
	wakes, err := st.WakeDueLanes(ctx, time.Now().Add(-time.Minute), 100)
	testenv.Must(t, err)
	if len(wakes) != 1 {
		t.Fatalf("woke %+v", wakes)
	}
	now := time.Now()
	if got, err := st.QueuedLanes(ctx, now.Add(-3*time.Second), now.Add(-time.Minute), 10); err != nil || len(got) != 0 {
		t.Fatalf("a lane just queued is suspect: %+v %v", got, err)
	}
	_, err = db.DB.ExecContext(ctx, `UPDATE callback_endpoints SET lane_queued_at = now() - interval '10 seconds' WHERE merchant_id = $1`, m.MerchantID)
	testenv.Must(t, err)
	got, err := st.QueuedLanes(ctx, now.Add(-3*time.Second), now.Add(-time.Minute), 10)
	testenv.Must(t, err)
	if len(got) != 1 || got[0] != wakes[0] {
		t.Fatalf("QueuedLanes = %+v, want %+v", got, wakes)
	}
	next, ok, err := st.RequeueLane(ctx, got[0])
	testenv.Must(t, err)
	if !ok || next.Gen != got[0].Gen+1 {
		t.Fatalf("RequeueLane = %+v %v, want generation %d", next, ok, got[0].Gen+1)
	}
	// The old generation's task turning up late finds itself stale, and a
	// second requeue of it is refused.
	if _, err := st.StartLane(ctx, m.MerchantID, got[0].Gen); err != store.ErrStaleLane {
		t.Fatalf("StartLane(old gen) = %v, want ErrStaleLane", err)
	}
	if _, ok, err := st.RequeueLane(ctx, got[0]); err != nil || ok {
		t.Fatalf("second RequeueLane = %v %v, want refused", ok, err)
	}
	// Requeued now: not suspect again until LaneCheckAfter has passed.
	if again, err := st.QueuedLanes(ctx, time.Now().Add(-3*time.Second), time.Now().Add(-time.Minute), 10); err != nil || len(again) != 0 {
		t.Fatalf("requeued lane still suspect: %+v %v", again, err)
	}
}
