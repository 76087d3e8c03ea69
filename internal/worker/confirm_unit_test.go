package worker

// Fast tests of the confirm decisions against in-memory fakes of the
// worker's own small interfaces (ConfirmStore, PG, Locker, ConfirmQueue).
// The real store, queue and PG are exercised by the system tests; these pin
// down, path by path, what is written: exactly one PG-call row per PG call,
// with the transition when there is one.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/store"
)

type fakeConfirmStore struct {
	row         store.OrderRow
	conflict    bool // Transition answers ErrVersionConflict
	transitions []store.Change
	calls       []store.PGCall // written on their own
	refunds     []string
	reads       int
	accepted    *store.OrderRow // what OpenAccepted opens
}

func (f *fakeConfirmStore) OrderRowAnyMerchant(_ context.Context, id string) (store.OrderRow, error) {
	f.reads++
	if id != f.row.OrderID {
		return store.OrderRow{}, payment.Errorf(payment.CodeOrderNotFound, "order not found")
	}
	return f.row, nil
}

// fakeSealed is the fake's sealed snapshot of its row at version v.
func fakeSealed(orderID string, v int) string { return "fake." + orderID + "@" + strconv.Itoa(v) }

// OpenAccepted opens what fakeSealed sealed: the row as it was accepted.
func (f *fakeConfirmStore) OpenAccepted(orderID, _ string, version int, token string) (store.OrderRow, error) {
	if token != fakeSealed(orderID, version) || f.accepted == nil {
		return store.OrderRow{}, errors.New("does not open")
	}
	return *f.accepted, nil
}

func (f *fakeConfirmStore) Transition(_ context.Context, c store.Change) (payment.Order, error) {
	if f.conflict || c.Version != f.row.Version {
		return payment.Order{}, store.ErrVersionConflict
	}
	if c.FenceUnknown && f.row.OutcomeUnknown {
		return payment.Order{}, store.ErrOutcomeUnknownConflict
	}
	if !payment.CanTransition(f.row.Status, c.To) {
		return payment.Order{}, payment.Errorf(payment.CodeIllegalTransition, "illegal")
	}
	f.transitions = append(f.transitions, c)
	f.row.Status, f.row.Version = c.To, f.row.Version+1
	return f.row.Order(), nil
}

func (f *fakeConfirmStore) RecordPGCall(_ context.Context, c store.PGCall) error {
	f.calls = append(f.calls, c)
	return nil
}

func (f *fakeConfirmStore) CreateRefund(_ context.Context, orderID, paymentKey string, amount int64, source string) (store.Refund, bool, error) {
	for _, k := range f.refunds {
		if k == paymentKey {
			return store.Refund{RefundID: "r-" + k}, false, nil
		}
	}
	f.refunds = append(f.refunds, paymentKey)
	return store.Refund{RefundID: "r-" + paymentKey, OrderID: orderID, PaymentKey: paymentKey}, true, nil
}

func (f *fakeConfirmStore) ConfirmStuckAfter() time.Duration { return time.Minute }

// pgCalls is every PG-call row written, with a transition or alone.
func (f *fakeConfirmStore) pgCalls() []store.PGCall {
	out := append([]store.PGCall{}, f.calls...)
	for _, c := range f.transitions {
		if c.PGCall != nil {
			out = append(out, *c.PGCall)
		}
	}
	return out
}

type fakePG struct {
	confirm, lookup []pgclient.Result // answered in turn; the last repeats
	confirms, looks int
}

func next(rs []pgclient.Result, n int) pgclient.Result {
	if n >= len(rs) {
		n = len(rs) - 1
	}
	return rs[n]
}

func (p *fakePG) Confirm(context.Context, string, string, string, int64) pgclient.Result {
	p.confirms++
	return next(p.confirm, p.confirms-1)
}

func (p *fakePG) GetPayment(context.Context, string) pgclient.Result {
	p.looks++
	return next(p.lookup, p.looks-1)
}

func (p *fakePG) Cancel(context.Context, string, string, string, int64, *pgclient.RefundAccount) pgclient.Result {
	return pgclient.Result{Outcome: pgclient.Retryable}
}

type fakeQueue struct{ reconciles, refunds, done []string }

func (q *fakeQueue) FairDone(_ context.Context, _, member string) error {
	q.done = append(q.done, member)
	return nil
}

func (q *fakeQueue) Reconcile(_ context.Context, id string, _ int, _ time.Duration) error {
	q.reconciles = append(q.reconciles, id)
	return nil
}

func (q *fakeQueue) Refund(_ context.Context, id string, _ int) error {
	q.refunds = append(q.refunds, id)
	return nil
}

type fakeLocks struct{}

func (fakeLocks) Do(ctx context.Context, _ string, fn func(context.Context) error) error {
	return fn(ctx)
}

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func confirmingRow() store.OrderRow {
	key, idem, req := "pk_1", "idem_1", t0.Add(-time.Second)
	return store.OrderRow{OrderID: "ord_1", MerchantID: "m1", Amount: 15000, Status: payment.Confirming, Version: 3,
		PaymentKey: &key, PGIdempotencyKey: &idem, ConfirmRequestedAt: &req}
}

func paid(status payment.PGStatus) pgclient.Result {
	return pgclient.Result{Outcome: pgclient.Approved, Payment: &pgclient.Payment{PaymentKey: "pk_1", OrderID: "ord_1",
		TotalAmount: 15000, BalanceAmount: 15000, Status: status, Method: "카드", ApprovedAt: "2026-12-03T21:00:00+09:00"}}
}

func newConfirmer(st *fakeConfirmStore, pg *fakePG, q *fakeQueue) *Confirmer {
	return &Confirmer{Env: &Env{PG: pg, Locks: fakeLocks{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return t0 },
		Timing: Timing{PGTimeout: time.Second, SessionWindow: 10 * time.Minute, ConfirmBackoff: time.Second,
			ConfirmBackoffMax: time.Minute, ReconcileBackoff: time.Second, ReconcileBackoffMax: time.Minute}},
		Store: st, Queue: q}
}

func TestConfirmPaths(t *testing.T) {
	declined := pgclient.Result{Outcome: pgclient.Declined, Code: "REJECT_CARD_COMPANY", Message: "no"}
	cases := []struct {
		name     string
		row      func(*store.OrderRow)
		conflict bool
		confirm  []pgclient.Result
		lookup   []pgclient.Result
		wantTo   payment.Status // "" when no transition
		wantErr  bool           // errRetry
		calls    int            // PG-call rows, with the transition or alone
		refunds  int
		reconcs  int
		alert    bool // one extra row: the mismatch alert
	}{
		{name: "approved", confirm: []pgclient.Result{paid(payment.PGDone)}, wantTo: payment.Paid, calls: 1},
		{name: "declined", confirm: []pgclient.Result{declined}, wantTo: payment.Failed, calls: 1},
		{name: "declined after unknown is looked up and believed on the lookup",
			row:     func(r *store.OrderRow) { r.OutcomeUnknown = true },
			confirm: []pgclient.Result{declined}, lookup: []pgclient.Result{paid(payment.PGDone)}, wantTo: payment.Paid, calls: 2},
		{name: "retryable asks again", confirm: []pgclient.Result{{Outcome: pgclient.Retryable, Code: "PROVIDER_ERROR"}}, wantErr: true, calls: 1},
		{name: "unknown asks again", confirm: []pgclient.Result{{Outcome: pgclient.Unknown}}, wantErr: true, calls: 1},
		{name: "retry past the session window reconciles",
			row: func(r *store.OrderRow) {
				req := t0.Add(-10*time.Minute + time.Millisecond)
				r.ConfirmRequestedAt = &req
			},
			confirm: []pgclient.Result{{Outcome: pgclient.Retryable}}, calls: 1, reconcs: 1},
		{name: "needs reconciliation: lookup only", row: func(r *store.OrderRow) { r.NeedsReconciliation = true },
			lookup: []pgclient.Result{paid(payment.PGDone)}, wantTo: payment.Paid, calls: 1},
		{name: "lookup: not found fails", row: func(r *store.OrderRow) { r.NeedsReconciliation = true },
			lookup: []pgclient.Result{{Outcome: pgclient.Declined, Code: pgclient.CodeNotFoundPayment}}, wantTo: payment.Failed, calls: 1},
		{name: "lookup: in progress asks again", row: func(r *store.OrderRow) { r.NeedsReconciliation = true },
			lookup: []pgclient.Result{paid(payment.PGInProgress)}, wantErr: true, calls: 1},
		{name: "lookup: aborted fails", row: func(r *store.OrderRow) { r.NeedsReconciliation = true },
			lookup: []pgclient.Result{paid(payment.PGAborted)}, wantTo: payment.Failed, calls: 1},
		{name: "lookup: PG down", row: func(r *store.OrderRow) { r.NeedsReconciliation = true },
			lookup: []pgclient.Result{{Outcome: pgclient.Retryable}}, wantErr: true, calls: 1},
		{name: "lost race: the call is still recorded", conflict: true,
			confirm: []pgclient.Result{paid(payment.PGDone)}, calls: 1},
		{name: "approval of another amount is an alert, not a payment",
			confirm: []pgclient.Result{func() pgclient.Result { r := paid(payment.PGDone); r.Payment.TotalAmount = 1; return r }()},
			calls:   2, alert: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := &fakeConfirmStore{row: confirmingRow(), conflict: c.conflict}
			if c.row != nil {
				c.row(&st.row)
			}
			pg, q := &fakePG{confirm: c.confirm, lookup: c.lookup}, &fakeQueue{}
			err := newConfirmer(st, pg, q).confirmRead(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), "ord_1")
			if c.wantErr != errors.Is(err, errRetry) || (err != nil && !errors.Is(err, errRetry)) {
				t.Fatalf("err = %v, want retry=%v", err, c.wantErr)
			}
			switch {
			case c.wantTo == "" && len(st.transitions) != 0:
				t.Fatalf("want no transition, got %+v", st.transitions)
			case c.wantTo != "" && (len(st.transitions) != 1 || st.transitions[0].To != c.wantTo):
				t.Fatalf("want one transition to %s, got %+v", c.wantTo, st.transitions)
			case c.wantTo != "" && st.transitions[0].PGCall == nil:
				t.Fatal("the transition must carry the PG call that caused it")
			}
			if got := len(st.pgCalls()); got != c.calls {
				t.Fatalf("PG-call rows = %d, want %d: %+v", got, c.calls, st.pgCalls())
			}
			alerts := 0
			for _, r := range st.pgCalls() {
				if r.Action == "alert.pg_mismatch" {
					alerts++
				}
			}
			if alerts != boolInt(c.alert) || pg.confirms+pg.looks != len(st.pgCalls())-alerts {
				t.Fatalf("%d PG calls but %d rows", pg.confirms+pg.looks, len(st.pgCalls()))
			}
			if len(q.refunds) != c.refunds || len(q.reconciles) != c.reconcs {
				t.Fatalf("refunds %d (want %d), reconciles %d (want %d)", len(q.refunds), c.refunds, len(q.reconciles), c.reconcs)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A late approval for an order that can no longer be paid is refunded
// once, however many times it is read.
func TestLateApprovalRefundedOnce(t *testing.T) {
	st := &fakeConfirmStore{row: confirmingRow()}
	st.row.Status = payment.Expired
	q := &fakeQueue{}
	c := newConfirmer(st, &fakePG{}, q)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for range 5 {
		if err := c.apply(context.Background(), log, st.row, paid(payment.PGDone).Payment, "webhook:toss", nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(st.refunds) != 1 || len(q.refunds) != 1 || len(st.transitions) != 0 {
		t.Fatalf("refunds %v enqueued %v transitions %d: want one refund, no transition", st.refunds, q.refunds, len(st.transitions))
	}
}

// An order no longer CONFIRMING (settled by a webhook, or unknown) is left
// alone: the PG is not called.
func TestConfirmSkipsSettledOrders(t *testing.T) {
	for _, s := range payment.AllStatuses {
		if s == payment.Confirming {
			continue
		}
		st := &fakeConfirmStore{row: confirmingRow()}
		st.row.Status = s
		pg := &fakePG{confirm: []pgclient.Result{paid(payment.PGDone)}}
		c := newConfirmer(st, pg, &fakeQueue{})
		if err := c.confirmRead(context.Background(), c.Log, "ord_1"); err != nil || pg.confirms+pg.looks != 0 {
			t.Fatalf("%s: err %v, %d PG calls", s, err, pg.confirms+pg.looks)
		}
		if err := c.confirmRead(context.Background(), c.Log, "ord_missing"); err != nil {
			t.Fatalf("unknown order: %v", err)
		}
	}
}

// The confirm the accept enqueued runs first on the order as the accept
// left it (no read); an order that moved meanwhile (settled from the PG's
// record) is left alone, and one whose earlier attempt's outcome is
// unknown (bookkeeping the version does not fence) gets nothing written
// and the task retries, reading it. A retry, a task without
// a snapshot (a sweep's), one whose snapshot does not open (altered,
// another order's or version's), and one older than ConfirmStuckAfter
// read.
func TestFirstRunConfirmsOnTheAcceptedSnapshot(t *testing.T) {
	sealed := func(r store.OrderRow) string { return fakeSealed(r.OrderID, r.Version) }
	declined := pgclient.Result{Outcome: pgclient.Declined, Code: "REJECT_CARD_COMPANY", Message: "no"}
	for _, c := range []struct {
		name      string
		sealed    func(r store.OrderRow) string
		retried   int
		row       func(*store.OrderRow) // the order as PostgreSQL has it now
		conflict  bool
		confirm   pgclient.Result
		wantReads int
		wantRetry bool
		wantTo    payment.Status
	}{
		{name: "accepted snapshot: no read", sealed: sealed, wantTo: payment.Paid},
		{name: "accepted snapshot, declined: failed", sealed: sealed, confirm: declined, wantTo: payment.Failed},
		{name: "the order moved (settled from the PG's record): left alone", sealed: sealed, conflict: true},
		{name: "an earlier attempt's outcome unknown: a decline fails nothing, retry with a read", sealed: sealed,
			row: func(r *store.OrderRow) { r.OutcomeUnknown = true }, confirm: declined, wantRetry: true},
		{name: "a retry reads", sealed: sealed, retried: 1, wantReads: 1, wantTo: payment.Paid},
		{name: "an accept older than ConfirmStuckAfter: read", sealed: sealed, wantReads: 1, wantTo: payment.Paid,
			row: func(r *store.OrderRow) { at := t0.Add(-2 * time.Minute); r.ConfirmRequestedAt = &at }},
		{name: "no snapshot: read", sealed: func(store.OrderRow) string { return "" }, wantReads: 1, wantTo: payment.Paid},
		{name: "another version's snapshot: read", wantReads: 1, wantTo: payment.Paid,
			sealed: func(r store.OrderRow) string { return fakeSealed(r.OrderID, r.Version-1) }},
		{name: "another order's snapshot: read", wantReads: 1, wantTo: payment.Paid,
			sealed: func(r store.OrderRow) string { return fakeSealed("ord_other", r.Version) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := &fakeConfirmStore{row: confirmingRow(), conflict: c.conflict}
			if c.row != nil {
				c.row(&st.row)
			}
			acc := st.row
			acc.OutcomeUnknown = false // the snapshot is the accept's
			st.accepted = &acc
			answer := paid(payment.PGDone)
			if c.confirm.Outcome != 0 {
				answer = c.confirm
			}
			pg, q := &fakePG{confirm: []pgclient.Result{answer}, lookup: []pgclient.Result{paid(payment.PGDone)}}, &fakeQueue{}
			p := queue.OrderPayload{OrderID: st.row.OrderID, Version: st.row.Version, MerchantID: st.row.MerchantID, Accepted: c.sealed(st.row)}
			cf := newConfirmer(st, pg, q)
			err := cf.confirmTask(context.Background(), cf.Log, p, c.retried)
			if c.wantRetry != errors.Is(err, errRetry) || (err != nil && !errors.Is(err, errRetry)) {
				t.Fatalf("err = %v, want retry=%v", err, c.wantRetry)
			}
			if st.reads != c.wantReads || pg.confirms != 1 {
				t.Fatalf("%d reads, %d PG confirms; want %d reads, 1 confirm", st.reads, pg.confirms, c.wantReads)
			}
			if c.wantTo == "" {
				if len(st.transitions) != 0 {
					t.Fatalf("transitions %+v, want none", st.transitions)
				}
			} else if len(st.transitions) != 1 || st.transitions[0].To != c.wantTo {
				t.Fatalf("transitions %+v, want one to %s", st.transitions, c.wantTo)
			}
			if len(st.pgCalls()) != 1 {
				t.Fatalf("PG-call rows %d, want 1 (recorded with the transition or alone)", len(st.pgCalls()))
			}
		})
	}
}
