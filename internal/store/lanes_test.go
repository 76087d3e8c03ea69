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
	// A touch (a live turn with no task) between the question and the
	// requeue fences it.
	_, err = db.DB.ExecContext(ctx, `UPDATE callback_endpoints SET lane_queued_at = now() WHERE merchant_id = $1`, m.MerchantID)
	testenv.Must(t, err)
	if _, ok, err := st.RequeueLane(ctx, got[0], now.Add(-3*time.Second)); err != nil || ok {
		t.Fatalf("RequeueLane of a lane heard of meanwhile = %v %v, want refused", ok, err)
	}
	next, ok, err := st.RequeueLane(ctx, got[0], time.Now().Add(time.Second))
	testenv.Must(t, err)
	if !ok || next.Gen != got[0].Gen+1 {
		t.Fatalf("RequeueLane = %+v %v, want generation %d", next, ok, got[0].Gen+1)
	}
	// The old generation's task turning up late finds itself stale, and a
	// second requeue of it is refused.
	if _, err := st.StartLane(ctx, m.MerchantID, got[0].Gen); err != store.ErrStaleLane {
		t.Fatalf("StartLane(old gen) = %v, want ErrStaleLane", err)
	}
	if _, ok, err := st.RequeueLane(ctx, got[0], time.Now().Add(time.Second)); err != nil || ok {
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

// 400 PAIDs of one merchant from 16 goroutines while its lane loops, with
// no sweep: every callback is claimed once and delivered, none stranded.
// Once with task turns only, once with turns started at their wake too (a
// runner with room for one at a time, as a busy worker has).
func TestConcurrentWakesAndTurnsStrandNothing(t *testing.T) {
	t.Parallel()
	for _, inline := range []bool{false, true} {
		t.Run(map[bool]string{false: "task turns", true: "and inline turns"}[inline], func(t *testing.T) {
			t.Parallel()
			strandNothing(t, inline)
		})
	}
}

func strandNothing(t *testing.T, inline bool) {
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
	send := func(batch []store.CallbackDelivery) []store.CallbackOutcome {
		for _, c := range batch {
			if _, seen := delivered.LoadOrStore(c.CallbackID, true); seen {
				dup.Add(1)
			}
		}
		return deliveredAll(m.MerchantID, batch)
	}
	// end ends a turn; a lane that goes on gets its next turn as a task.
	end := func(gen int64, outs []store.CallbackOutcome, full bool) {
		_, next, again, err := st.FinishLaneTurn(ctx, outs, store.LaneEnd{MerchantID: m.MerchantID, Gen: gen, Again: full})
		if errors.Is(err, store.ErrStaleLane) {
			return
		}
		testenv.Must(t, err)
		if again {
			wakes <- next
		}
	}
	r := &fakeRunner{room: 1, slots: 3, play: func(lt store.LaneTurn) { end(lt.Lane.Gen, send(lt.Batch), len(lt.Batch) == 3) }}
	if inline {
		st.InlineTurns(r)
	}
	stop := make(chan struct{})
	var lanes sync.WaitGroup
	lanes.Go(func() { // one task turn at a time, as the generation fence makes asynq run them
		for {
			select {
			case w := <-wakes:
				_, batch, err := st.StartLaneTurn(ctx, w.MerchantID, w.Gen, time.Now().Add(time.Minute), func(store.Lane) int { return 3 })
				if errors.Is(err, store.ErrStaleLane) {
					continue
				}
				testenv.Must(t, err)
				end(w.Gen, send(batch), len(batch) == 3)
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
				c, _ := paidOrder(t, st, m.MerchantID)
				_, err := st.Transition(ctx, c)
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
	r.wg.Wait()
	if n := countRows(t, db, `SELECT count(*) FROM callbacks WHERE status = 'DELIVERED'`); n != writers*each || dup.Load() != 0 {
		t.Fatalf("%d delivered of %d, %d claimed twice", n, writers*each, dup.Load())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if inline && (len(r.turns) == 0 || r.reserved != r.freed) {
		t.Fatalf("%d inline turns, reserved %d freed %d; want some and every reservation back", len(r.turns), r.reserved, r.freed)
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

// fakeRunner is a TurnRunner with room for `room` turns at once, each of
// `slots` sends; play, when set, plays a turn in its own goroutine.
type fakeRunner struct {
	mu              sync.Mutex
	room, running   int
	slots           int
	reserved, freed int
	turns           []store.LaneTurn
	play            func(store.LaneTurn)
	onReserve       func()
	wg              sync.WaitGroup
}

func (f *fakeRunner) Reserve(now time.Time) (int, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running >= f.room {
		return 0, time.Time{}
	}
	f.running++
	f.reserved++
	if f.onReserve != nil {
		f.onReserve()
	}
	return f.slots, now.Add(time.Minute)
}

func (f *fakeRunner) Release(int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running--
	f.freed++
}

func (f *fakeRunner) Run(_ context.Context, t store.LaneTurn) {
	f.mu.Lock()
	f.turns = append(f.turns, t)
	f.mu.Unlock()
	if f.play == nil {
		return
	}
	f.wg.Go(func() {
		f.play(t)
		f.Release(t.Slots)
	})
}

func paidOrder(t *testing.T, st *store.Store, merchantID string) (store.Change, payment.Order) {
	t.Helper()
	ctx := context.Background()
	o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: merchantID, Amount: 1000, Currency: "KRW", OrderName: "i", TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
	testenv.Must(t, err)
	pk := "pk_" + o.OrderID
	c, err := st.Transition(ctx, store.Change{OrderID: o.OrderID, Version: o.Version, To: payment.Confirming, Action: "test", PaymentKey: &pk})
	testenv.Must(t, err)
	return store.Change{OrderID: o.OrderID, Version: c.Version, To: payment.Paid, Action: "test"}, c
}

// A PAID transition that wakes an idle lane starts its turn in the same
// transaction and hands it to the runner: the turn holds the new callback,
// claimed, and no lane task is asked for. A busy runner, an open breaker
// or a rolled-back transaction leave the lane to a task as before, and
// every reservation is given back.
func TestInlineTurnStartsInTheWakingTransaction(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "i", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	var wakes []store.LaneWake
	st.OnLanes(func(_ context.Context, ws []store.LaneWake) { wakes = append(wakes, ws...) })
	r := &fakeRunner{room: 1, slots: 4}
	st.InlineTurns(r)

	// Idle lane, room: a turn, no task.
	c, _ := paidOrder(t, st, m.MerchantID)
	_, err = st.Transition(ctx, c)
	testenv.Must(t, err)
	if len(r.turns) != 1 || len(wakes) != 0 {
		t.Fatalf("turns %d, task wakes %v; want one turn and no task", len(r.turns), wakes)
	}
	turn := r.turns[0]
	if len(turn.Batch) != 1 || turn.Batch[0].OrderID != c.OrderID || turn.Lane.CallbackURL != "https://example.com/cb" || turn.Slots != 4 {
		t.Fatalf("turn = %+v, want the new callback to example.com with 4 slots", turn)
	}
	var claimed, queued, dirty bool
	testenv.Must(t, db.DB.QueryRow(`SELECT sending_until IS NOT NULL FROM callbacks WHERE order_id = $1`, c.OrderID).Scan(&claimed))
	testenv.Must(t, db.DB.QueryRow(`SELECT lane_queued, lane_dirty FROM callback_endpoints WHERE merchant_id = $1`, m.MerchantID).Scan(&queued, &dirty))
	if !claimed || !queued || dirty {
		t.Fatalf("claimed %v, lane queued %v dirty %v; want claimed, queued, clean", claimed, queued, dirty)
	}
	// While that turn is out, another PAID only marks the lane dirty.
	c2, _ := paidOrder(t, st, m.MerchantID)
	_, err = st.Transition(ctx, c2)
	testenv.Must(t, err)
	if len(r.turns) != 1 || len(wakes) != 0 || r.reserved != 1 {
		t.Fatalf("a busy lane's wake: turns %d, wakes %v, reservations %d", len(r.turns), wakes, r.reserved)
	}
	// The turn ends with work left: the next turn is a task.
	now := time.Now()
	out := store.CallbackOutcome{CallbackID: turn.Batch[0].CallbackID, MerchantID: m.MerchantID, StartedAt: now, StatusCode: 204, Status: payment.CallbackDelivered, NextAttempt: now}
	_, next, again, err := st.FinishLaneTurn(ctx, []store.CallbackOutcome{out}, store.LaneEnd{MerchantID: m.MerchantID, Gen: turn.Lane.Gen})
	testenv.Must(t, err)
	r.Release(turn.Slots)
	if !again || next.Gen != turn.Lane.Gen+1 {
		t.Fatalf("end of the inline turn: again %v next %+v; want the next generation for a task", again, next)
	}
	_, batch, err := st.StartLaneTurn(ctx, m.MerchantID, next.Gen, time.Now().Add(time.Minute), func(store.Lane) int { return 8 })
	testenv.Must(t, err)
	_, _, again, err = st.FinishLaneTurn(ctx, deliveredAll(m.MerchantID, batch), store.LaneEnd{MerchantID: m.MerchantID, Gen: next.Gen})
	testenv.Must(t, err)
	if len(batch) != 1 || batch[0].OrderID != c2.OrderID || again {
		t.Fatalf("task turn claimed %d (again %v), want the second callback and the end", len(batch), again)
	}

	// No room: the wake goes to a task.
	r.mu.Lock()
	r.running = r.room
	r.mu.Unlock()
	c3, _ := paidOrder(t, st, m.MerchantID)
	_, err = st.Transition(ctx, c3)
	testenv.Must(t, err)
	if len(r.turns) != 1 || len(wakes) != 1 {
		t.Fatalf("no room: turns %d, task wakes %v; want a task", len(r.turns), wakes)
	}
	r.mu.Lock()
	r.running = 0
	r.mu.Unlock()
	finishTask(t, st, m.MerchantID, wakes[0])

	// Probe due (breaker open, cool-down over): a task, which probes.
	_, err = db.DB.Exec(`UPDATE callback_endpoints SET open_until = now() - interval '1 second', failures = 5 WHERE merchant_id = $1`, m.MerchantID)
	testenv.Must(t, err)
	c4, _ := paidOrder(t, st, m.MerchantID)
	_, err = st.Transition(ctx, c4)
	testenv.Must(t, err)
	if len(r.turns) != 1 || len(wakes) != 2 || r.reserved != r.freed {
		t.Fatalf("probe due: turns %d, wakes %d, reserved %d freed %d; want a task and the reservation back", len(r.turns), len(wakes), r.reserved, r.freed)
	}
	finishTask(t, st, m.MerchantID, wakes[1])
	_, err = db.DB.Exec(`UPDATE callback_endpoints SET open_until = NULL, failures = 0 WHERE merchant_id = $1`, m.MerchantID)
	testenv.Must(t, err)

	// The transaction fails once the turn is reserved (its context ends):
	// the reservation comes back, nothing runs, nothing is written.
	before, wakesBefore := len(r.turns), len(wakes)
	c5, _ := paidOrder(t, st, m.MerchantID)
	cctx, cancel := context.WithCancel(ctx)
	r.onReserve = cancel
	if _, err := st.Transition(cctx, c5); err == nil {
		t.Fatal("the transition succeeded with its context canceled")
	}
	if len(r.turns) != before || len(wakes) != wakesBefore || r.reserved != r.freed {
		t.Fatalf("after a failed transaction: %d turns (was %d), %d wakes (was %d), reserved %d freed %d",
			len(r.turns), before, len(wakes), wakesBefore, r.reserved, r.freed)
	}
	if n := countRows(t, db, `SELECT count(*) FROM callbacks WHERE order_id = '`+c5.OrderID+`'`); n != 0 {
		t.Fatalf("%d callbacks written by a rolled-back transition", n)
	}
}

func deliveredAll(merchantID string, batch []store.CallbackDelivery) []store.CallbackOutcome {
	now := time.Now()
	var outs []store.CallbackOutcome
	for _, c := range batch {
		outs = append(outs, store.CallbackOutcome{CallbackID: c.CallbackID, MerchantID: merchantID, Attempt: c.Attempt,
			StartedAt: now, StatusCode: 204, Status: payment.CallbackDelivered, NextAttempt: now})
	}
	return outs
}

// finishTask plays a lane's task turns until the lane ends.
func finishTask(t *testing.T, st *store.Store, merchantID string, w store.LaneWake) {
	t.Helper()
	ctx := context.Background()
	for {
		_, batch, err := st.StartLaneTurn(ctx, merchantID, w.Gen, time.Now().Add(time.Minute), func(store.Lane) int { return 8 })
		testenv.Must(t, err)
		_, next, again, err := st.FinishLaneTurn(ctx, deliveredAll(merchantID, batch), store.LaneEnd{MerchantID: merchantID, Gen: w.Gen, Again: len(batch) == 8})
		testenv.Must(t, err)
		if !again {
			return
		}
		w = next
	}
}

// A batch of attempts is recorded in one statement with what one attempt
// at a time recorded: the callback moved on (another delivery got there)
// is not recorded and gets no attempt row, a 410 disables its merchant's
// endpoint, and every field lands as given.
func TestRecordCallbackAttemptsBatch(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "b", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: m.MerchantID, Amount: 1000, Currency: "KRW", OrderName: "b", TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
	testenv.Must(t, err)
	_, err = db.DB.ExecContext(ctx, `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload)
SELECT 'msg_b' || g, $1, $2, 'payment.paid', '{}' FROM generate_series(1, 4) g`, m.MerchantID, o.OrderID)
	testenv.Must(t, err)
	_, err = db.DB.ExecContext(ctx, `UPDATE callbacks SET attempt = 1 WHERE callback_id = 'msg_b2'`) // moved on
	testenv.Must(t, err)
	start := time.Date(2026, 12, 7, 12, 0, 0, 123456000, time.UTC)
	next := start.Add(5 * time.Second)
	outs := []store.CallbackOutcome{
		{CallbackID: "msg_b1", MerchantID: m.MerchantID, StartedAt: start, Latency: 42 * time.Millisecond, StatusCode: 204, Response: "ok", Status: payment.CallbackDelivered, NextAttempt: start},
		{CallbackID: "msg_b2", MerchantID: m.MerchantID, StartedAt: start, StatusCode: 204, Status: payment.CallbackDelivered, NextAttempt: start},
		{CallbackID: "msg_b3", MerchantID: m.MerchantID, StartedAt: start, Latency: 7 * time.Millisecond, StatusCode: 410, Error: "gone", Status: payment.CallbackPending, NextAttempt: next, DisableEndpoint: true},
		// No answer (a timeout), the last attempt: DEAD, no status code.
		{CallbackID: "msg_b4", MerchantID: m.MerchantID, StartedAt: start, Latency: 2 * time.Second, Error: "timeout", Status: payment.CallbackDead, NextAttempt: start},
		// The same callback twice: only the first counts, as one at a time.
		{CallbackID: "msg_b1", MerchantID: m.MerchantID, StartedAt: start, StatusCode: 500, Status: payment.CallbackPending, NextAttempt: next},
	}
	recorded, err := st.RecordCallbackAttempts(ctx, outs)
	testenv.Must(t, err)
	if len(recorded) != 5 || !recorded[0] || recorded[1] || !recorded[2] || !recorded[3] || recorded[4] {
		t.Fatalf("recorded = %v, want [true false true true false]", recorded)
	}
	type row struct {
		Status    string     `db:"status"`
		Attempt   int        `db:"attempt"`
		Next      time.Time  `db:"next_attempt_at"`
		Delivered *time.Time `db:"delivered_at"`
		LastError *string    `db:"last_error"`
		Sending   *time.Time `db:"sending_until"`
	}
	var b1, b3 row
	testenv.Must(t, db.DB.Get(&b1, `SELECT status, attempt, next_attempt_at, delivered_at, last_error, sending_until FROM callbacks WHERE callback_id = 'msg_b1'`))
	testenv.Must(t, db.DB.Get(&b3, `SELECT status, attempt, next_attempt_at, delivered_at, last_error, sending_until FROM callbacks WHERE callback_id = 'msg_b3'`))
	if b1.Status != "DELIVERED" || b1.Attempt != 1 || b1.Delivered == nil || !b1.Delivered.Equal(start.Add(42*time.Millisecond)) || b1.LastError != nil || b1.Sending != nil {
		t.Errorf("msg_b1 = %+v", b1)
	}
	if b3.Status != "PENDING" || b3.Attempt != 1 || !b3.Next.Equal(next) || b3.Delivered != nil || b3.LastError == nil || *b3.LastError != "gone" {
		t.Errorf("msg_b3 = %+v", b3)
	}
	var atts []struct {
		ID       string  `db:"callback_id"`
		Attempt  int     `db:"attempt"`
		Code     *int    `db:"status_code"`
		Latency  int     `db:"latency_ms"`
		Error    *string `db:"error"`
		Response *string `db:"response_prefix"`
	}
	testenv.Must(t, db.DB.Select(&atts, `SELECT callback_id, attempt, status_code, latency_ms, error, response_prefix FROM callback_attempts ORDER BY callback_id`))
	if len(atts) != 3 || atts[0].ID != "msg_b1" || atts[0].Attempt != 1 || atts[0].Code == nil || *atts[0].Code != 204 || atts[0].Latency != 42 ||
		atts[0].Error != nil || atts[0].Response == nil || *atts[0].Response != "ok" || atts[1].ID != "msg_b3" || *atts[1].Code != 410 || *atts[1].Error != "gone" ||
		atts[2].ID != "msg_b4" || atts[2].Code != nil || atts[2].Latency != 2000 || atts[2].Error == nil || *atts[2].Error != "timeout" {
		t.Errorf("attempt rows = %+v", atts)
	}
	var b4 row
	testenv.Must(t, db.DB.Get(&b4, `SELECT status, attempt, next_attempt_at, delivered_at, last_error, sending_until FROM callbacks WHERE callback_id = 'msg_b4'`))
	if b4.Status != "DEAD" || b4.Attempt != 1 || b4.Delivered != nil || b4.LastError == nil || *b4.LastError != "timeout" {
		t.Errorf("msg_b4 = %+v", b4)
	}
	var enabled bool
	testenv.Must(t, db.DB.Get(&enabled, `SELECT callback_enabled FROM merchants WHERE merchant_id = $1`, m.MerchantID))
	if enabled {
		t.Error("a 410 in the batch left the endpoint enabled")
	}
}

// A worker that dies while sending a turn started at its wake (no task in
// Redis) loses nothing: its touches stop, the sweep's question about the
// lane comes after LaneCheckAfter, the requeue takes a new generation, and
// once the dead turn's claim lapses the new turn sends the callback. While
// it was alive, a touch kept the requeue away.
func TestInlineTurnOfADeadWorkerIsTakenOver(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "d", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	r := &fakeRunner{room: 1, slots: 4} // Run records the turn and never plays it: the worker died
	st.InlineTurns(r)
	c, _ := paidOrder(t, st, m.MerchantID)
	_, err = st.Transition(ctx, c)
	testenv.Must(t, err)
	if len(r.turns) != 1 {
		t.Fatalf("%d inline turns, want 1", len(r.turns))
	}
	turn := r.turns[0]
	now := time.Now()
	// Alive: touched, so not offered to the requeue.
	if ok, err := st.TouchLane(ctx, m.MerchantID, turn.Lane.Gen); err != nil || !ok {
		t.Fatalf("touch = %v %v", ok, err)
	}
	if got, err := st.QueuedLanes(ctx, now.Add(-3*time.Second), now.Add(-time.Minute), 10); err != nil || len(got) != 0 {
		t.Fatalf("a touched lane is suspect: %+v %v", got, err)
	}
	// Dead: no touch for 10 s.
	_, err = db.DB.ExecContext(ctx, `UPDATE callback_endpoints SET lane_queued_at = now() - interval '10 seconds' WHERE merchant_id = $1`, m.MerchantID)
	testenv.Must(t, err)
	got, err := st.QueuedLanes(ctx, now.Add(-3*time.Second), now.Add(-time.Minute), 10)
	testenv.Must(t, err)
	if len(got) != 1 || got[0].Gen != turn.Lane.Gen {
		t.Fatalf("QueuedLanes = %+v, want the dead turn's lane at gen %d", got, turn.Lane.Gen)
	}
	next, ok, err := st.RequeueLane(ctx, got[0], now.Add(-3*time.Second))
	testenv.Must(t, err)
	if !ok || next.Gen != turn.Lane.Gen+1 {
		t.Fatalf("RequeueLane = %+v %v", next, ok)
	}
	// The dead turn's claim still holds: nothing is sent twice at once.
	_, batch, err := st.StartLaneTurn(ctx, m.MerchantID, next.Gen, time.Now().Add(time.Minute), func(store.Lane) int { return 8 })
	testenv.Must(t, err)
	if len(batch) != 0 {
		t.Fatalf("claimed %d callbacks still claimed by the dead turn", len(batch))
	}
	_, _, again, err := st.FinishLaneTurn(ctx, nil, store.LaneEnd{MerchantID: m.MerchantID, Gen: next.Gen, Again: true})
	testenv.Must(t, err)
	if !again {
		t.Fatal("the lane ended with its callback still pending")
	}
	// The claim lapses; the next turn sends it.
	_, err = db.DB.ExecContext(ctx, `UPDATE callbacks SET sending_until = now() - interval '1 second' WHERE merchant_id = $1`, m.MerchantID)
	testenv.Must(t, err)
	_, batch, err = st.StartLaneTurn(ctx, m.MerchantID, next.Gen+1, time.Now().Add(time.Minute), func(store.Lane) int { return 8 })
	testenv.Must(t, err)
	if len(batch) != 1 || batch[0].OrderID != c.OrderID {
		t.Fatalf("after the claim lapsed: claimed %+v, want the dead turn's callback", batch)
	}
}
