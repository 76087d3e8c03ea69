package store_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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

// Many PAID transitions of one merchant at once, while its lane takes turns
// as fast as it can (issue 19: a wake that finds the lane queued and dirty
// only reads it, under the lane lock, instead of updating the row): every
// callback is claimed by some turn, none is left PENDING with no lane out
// (no sweep runs here to rescue one), and each is delivered once.
func TestConcurrentWakesAndTurnsStrandNothing(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "busy", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	wakes := make(chan store.LaneWake, 4096)
	st.OnLanes(func(_ context.Context, ws []store.LaneWake) {
		for _, w := range ws {
			wakes <- w
		}
	})
	var delivered sync.Map
	var dup atomic.Int64
	turn := func(w store.LaneWake) {
		for {
			_, batch, err := st.StartLaneTurn(ctx, w.MerchantID, w.Gen, time.Now().Add(time.Minute), func(store.Lane) int { return 3 })
			if errors.Is(err, store.ErrStaleLane) {
				return
			}
			testenv.Must(t, err)
			now := time.Now()
			var outs []store.CallbackOutcome
			for _, c := range batch {
				if _, seen := delivered.LoadOrStore(c.CallbackID, true); seen {
					dup.Add(1)
				}
				outs = append(outs, store.CallbackOutcome{CallbackID: c.CallbackID, MerchantID: w.MerchantID, Attempt: c.Attempt,
					StartedAt: now, StatusCode: 204, Status: payment.CallbackDelivered, NextAttempt: now})
			}
			_, next, again, err := st.FinishLaneTurn(ctx, outs, store.LaneEnd{MerchantID: w.MerchantID, Gen: w.Gen, Again: len(batch) == 3})
			if errors.Is(err, store.ErrStaleLane) {
				return
			}
			testenv.Must(t, err)
			if !again {
				return
			}
			w = next
		}
	}
	stop := make(chan struct{})
	var lanes sync.WaitGroup
	lanes.Go(func() { // one turn at a time, as the generation fence makes asynq run them
		for {
			select {
			case w := <-wakes:
				turn(w)
			case <-stop:
				return
			}
		}
	})
	const writers, each = 16, 25
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: m.MerchantID, Amount: 1000, Currency: "KRW", OrderName: "busy", TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
				testenv.Must(t, err)
				pk := "pk_" + o.OrderID
				c, err := st.Transition(ctx, store.Change{OrderID: o.OrderID, Version: o.Version, To: payment.Confirming, Action: "test", PaymentKey: &pk})
				testenv.Must(t, err)
				_, err = st.Transition(ctx, store.Change{OrderID: o.OrderID, Version: c.Version, To: payment.Paid, Action: "test"})
				testenv.Must(t, err)
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for countRows(t, db, `SELECT count(*) FROM callbacks WHERE status = 'PENDING'`) > 0 {
		if time.Now().After(deadline) {
			var queued, dirty bool
			testenv.Must(t, db.DB.QueryRow(`SELECT lane_queued, lane_dirty FROM callback_endpoints WHERE merchant_id = $1`, m.MerchantID).Scan(&queued, &dirty))
			t.Fatalf("%d callbacks still PENDING 30 s after the last transition (lane queued=%v dirty=%v): a wake was lost",
				countRows(t, db, `SELECT count(*) FROM callbacks WHERE status = 'PENDING'`), queued, dirty)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	lanes.Wait()
	if n := countRows(t, db, `SELECT count(*) FROM callbacks WHERE status = 'DELIVERED'`); n != writers*each || dup.Load() != 0 {
		t.Fatalf("%d delivered of %d, %d claimed twice", n, writers*each, dup.Load())
	}
}

// The two halves of the lane lock, deterministically. A wake to a lane
// already queued and dirty writes nothing, so it does not wait for a
// transaction holding the merchant's endpoint row (before, every PAID
// transition of a merchant queued on that row); and a turn's start waits
// for a wake still in flight (one holding the lane lock shared), so its
// claim cannot miss that wake's callback.
func TestLaneLockOrdersStartsAfterWakesWithoutSerialisingWakes(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "lock", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	var woke []store.LaneWake
	st.OnLanes(func(_ context.Context, ws []store.LaneWake) { woke = append(woke, ws...) })
	pay := func(ctx context.Context) error {
		o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: m.MerchantID, Amount: 1000, Currency: "KRW", OrderName: "lock", TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
		if err != nil {
			return err
		}
		pk := "pk_" + o.OrderID
		c, err := st.Transition(ctx, store.Change{OrderID: o.OrderID, Version: o.Version, To: payment.Confirming, Action: "test", PaymentKey: &pk})
		if err != nil {
			return err
		}
		_, err = st.Transition(ctx, store.Change{OrderID: o.OrderID, Version: c.Version, To: payment.Paid, Action: "test"})
		return err
	}
	testenv.Must(t, pay(ctx)) // wakes the lane: queued and dirty
	if len(woke) != 1 {
		t.Fatalf("first PAID woke %+v, want the lane", woke)
	}

	// Another transaction holds the endpoint row; a second PAID still commits.
	row, err := db.DB.BeginTx(ctx, nil)
	testenv.Must(t, err)
	_, err = row.ExecContext(ctx, `SELECT 1 FROM callback_endpoints WHERE merchant_id = $1 FOR UPDATE`, m.MerchantID)
	testenv.Must(t, err)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = pay(pctx)
	cancel()
	testenv.Must(t, row.Rollback())
	if err != nil {
		t.Fatalf("PAID beside a held endpoint row: %v (it waited for the row: wakes are serialised again)", err)
	}
	if len(woke) != 1 {
		t.Fatalf("a wake to a queued lane woke %+v", woke[1:])
	}

	// A wake in flight (the lane lock held shared, as wakeLaneTx holds it to
	// its commit): the turn's start waits for it.
	wake, err := db.DB.BeginTx(ctx, nil)
	testenv.Must(t, err)
	_, err = wake.ExecContext(ctx, `SELECT pg_advisory_xact_lock_shared(7316003, hashtext($1))`, m.MerchantID)
	testenv.Must(t, err)
	started := make(chan error, 1)
	go func() {
		_, _, err := st.StartLaneTurn(ctx, m.MerchantID, woke[0].Gen, time.Now().Add(time.Minute), func(store.Lane) int { return 10 })
		started <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for countRows(t, db, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7316003 AND NOT granted`) == 0 {
		select {
		case err := <-started:
			t.Fatalf("the turn started (%v) while a wake held the lane lock", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the turn's start never queued for the lane lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
	testenv.Must(t, wake.Commit())
	testenv.Must(t, <-started)
}

// An operator's "probe now" (and a merchant's new callback URL) write the
// endpoint row and wake the lane; a turn's start takes the lane lock and
// then the row. Taking the row first deadlocked with a start (PostgreSQL
// aborted one after deadlock_timeout); the lane lock now comes first.
func TestProbeNowBesideATurnStartDoesNotDeadlock(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "probe", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	// A start that holds the lane lock and is about to write the row.
	start, err := db.DB.BeginTx(ctx, nil)
	testenv.Must(t, err)
	defer start.Rollback() //nolint:errcheck // after commit, a no-op
	_, err = start.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7316003, hashtext($1))`, m.MerchantID)
	testenv.Must(t, err)
	probed := make(chan error, 1)
	go func() { probed <- st.ProbeNow(ctx, m.MerchantID) }()
	deadline := time.Now().Add(10 * time.Second)
	for countRows(t, db, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7316003 AND NOT granted`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("ProbeNow never queued for the lane lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, err = start.ExecContext(ctx, `SET LOCAL lock_timeout = '5s'`)
	testenv.Must(t, err)
	if _, err := start.ExecContext(ctx, `UPDATE callback_endpoints SET lane_dirty = false WHERE merchant_id = $1`, m.MerchantID); err != nil {
		t.Fatalf("the start could not write the endpoint row: %v (ProbeNow holds it while waiting for the lane lock)", err)
	}
	testenv.Must(t, start.Commit())
	if err := <-probed; err != nil {
		t.Fatalf("ProbeNow: %v", err)
	}
}
