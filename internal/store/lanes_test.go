package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/payment"
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

// A lane turn is two commits (issue 19): StartLaneTurn claims, and
// FinishLaneTurn records every attempt and ends the turn together. A turn
// whose generation was superseded while it sent still records what it
// sent, and says ErrStaleLane; a stale generation starts nothing.
func TestLaneTurnIsTwoCommitsAndFenced(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "t", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: m.MerchantID, Amount: 1000, Currency: "KRW", OrderName: "t", TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
	testenv.Must(t, err)
	for _, id := range []string{"msg_t1", "msg_t2", "msg_t3"} {
		_, err = db.DB.ExecContext(ctx, `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload) VALUES ($1, $2, $3, 'payment.paid', '{}')`, id, m.MerchantID, o.OrderID)
		testenv.Must(t, err)
	}
	wakes, err := st.WakeDueLanes(ctx, time.Now().Add(-time.Minute), 100)
	testenv.Must(t, err)
	gen := wakes[0].Gen
	if _, _, err := st.StartLaneTurn(ctx, m.MerchantID, gen+1, time.Now().Add(time.Minute), func(store.Lane) int { return 4 }); err != store.ErrStaleLane {
		t.Fatalf("StartLaneTurn(another gen) = %v, want ErrStaleLane", err)
	}
	lane, batch, err := st.StartLaneTurn(ctx, m.MerchantID, gen, time.Now().Add(time.Minute), func(l store.Lane) int {
		if l.CallbackURL != "https://example.com/cb" {
			t.Errorf("limit saw lane %+v", l)
		}
		return 2
	})
	testenv.Must(t, err)
	if lane.Gen != gen || len(batch) != 2 {
		t.Fatalf("turn: lane %+v, %d claimed, want gen %d and 2", lane, len(batch), gen)
	}
	// Meanwhile the sweep decided the lane was lost and took a new generation.
	_, err = db.DB.ExecContext(ctx, `UPDATE callback_endpoints SET lane_gen = lane_gen + 1 WHERE merchant_id = $1`, m.MerchantID)
	testenv.Must(t, err)
	now := time.Now()
	outcomes := []store.CallbackOutcome{
		{CallbackID: batch[0].CallbackID, MerchantID: m.MerchantID, Attempt: batch[0].Attempt, StartedAt: now, StatusCode: 204, Status: payment.CallbackDelivered, NextAttempt: now},
		{CallbackID: batch[1].CallbackID, MerchantID: m.MerchantID, Attempt: batch[1].Attempt + 5, StartedAt: now, StatusCode: 204, Status: payment.CallbackDelivered, NextAttempt: now},
	}
	recorded, _, _, err := st.FinishLaneTurn(ctx, outcomes, store.LaneEnd{MerchantID: m.MerchantID, Gen: gen})
	if err != store.ErrStaleLane {
		t.Fatalf("FinishLaneTurn(superseded) = %v, want ErrStaleLane", err)
	}
	// The first was sent and is recorded; the second names an attempt the
	// callback is not at (another delivery got there first): not written.
	if !recorded[0] || recorded[1] {
		t.Fatalf("recorded = %v, want [true false]", recorded)
	}
	if n := countRows(t, db, `SELECT count(*) FROM callbacks WHERE status = 'DELIVERED'`); n != 1 {
		t.Fatalf("%d delivered, want 1", n)
	}
	if n := countRows(t, db, `SELECT count(*) FROM callback_attempts`); n != 1 {
		t.Fatalf("%d attempt rows, want 1", n)
	}
}

func countRows(t *testing.T, db testenv.Database, q string) int {
	t.Helper()
	var n int
	testenv.Must(t, db.DB.Get(&n, q))
	return n
}
