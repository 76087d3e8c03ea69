package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/lock"
	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/store"
)

// ReconStore is what reconciliation reads and writes, on top of what
// confirming does (repairs go through Confirmer.apply and the store's
// fenced Transition).
type ReconStore interface {
	ConfirmStore
	CreateReconRun(ctx context.Context, from, to time.Time, trigger, by string) (store.ReconRun, bool, error)
	ReconSucceededFor(ctx context.Context, from, to time.Time) (bool, error)
	// StartReconRun returns store.ErrReconBusy (running elsewhere) or
	// store.ErrNotFound (finished, absent).
	StartReconRun(ctx context.Context, runID string) (store.ReconRun, error)
	StageReconRows(ctx context.Context, runID string, rows []store.ReconPGRow) error
	// AnalyzeReconRows refreshes the staging table's statistics.
	AnalyzeReconRows(ctx context.Context) error
	ReconHeartbeat(ctx context.Context, runID string) error
	ReconApprovalDisagreements(ctx context.Context, runID, cursor string, limit int) ([]store.ReconApproval, error)
	CountReconApprovalsMatched(ctx context.Context, runID string) (int64, error)
	ReconPaidWithoutApproval(ctx context.Context, runID string, from, to time.Time, cursor string, limit int) ([]store.OrderRow, error)
	ReconCancelCandidates(ctx context.Context, runID string, from, to time.Time, cursor string, limit int) ([]store.ReconCancelCandidate, error)
	RefundedAmount(ctx context.Context, orderID, paymentKey string) (amount int64, pending bool, err error)
	// AddReconItem is idempotent per run, class and paymentKey.
	AddReconItem(ctx context.Context, it store.ReconItem) (bool, error)
	FinishReconRun(ctx context.Context, runID string, matched int64, runErr error) (store.ReconRun, error)
	AppendLog(ctx context.Context, orderID, action, actor string, details map[string]any) error
}

// Books is the PG's transaction list (pgclient.Client).
type Books interface {
	Transactions(ctx context.Context, from, to time.Time, startingAfter string, limit int) pgclient.TransactionsPage
}

// Reconciler compares a window of the PG's books with payrail's records
// (recon:run) and repairs what the PG's own record proves, through the
// same locked, fenced, logged path as every worker change: a missing
// approval is applied or refunded (payment.Reading), a missing cancel is
// applied through the transition table (history recon.applied, the
// merchant's callback), and anything else is flagged, never guessed.
//
// The PG's rows are staged in PostgreSQL page by page and compared there,
// so a window of a million rows costs the worker one page of memory.
type Reconciler struct {
	*Confirmer
	Store ReconStore
	Books Books
	// PageSize is the PG list's page (default 5000, Toss's largest).
	PageSize int
}

// reconBatch bounds each comparison query's page.
const reconBatch = 500

// HandleRecon runs a recorded run, or records and runs the daily window.
// A run's failure is recorded on its row, not returned: a re-run is an
// operator's (or the next day's tick's) decision.
func (r *Reconciler) HandleRecon(ctx context.Context, t *asynq.Task) error {
	var p queue.ReconPayload
	if err := queue.Decode(t, &p); err != nil {
		return err
	}
	if p.RunID == "" {
		done, err := r.Store.ReconSucceededFor(ctx, p.From, p.To)
		if err != nil || done {
			return err
		}
		// A live run of the window is joined: Run takes it over when its
		// worker died (no heartbeat), else leaves it to its worker. The
		// daily task never fails (its ID must free up after retention): a
		// day still not reconciled is offered again then.
		run, _, err := r.Store.CreateReconRun(ctx, p.From, p.To, p.Trigger, "scheduler")
		if err != nil {
			return err
		}
		if _, err := r.Run(ctx, run.RunID); err != nil && !errors.Is(err, errReconBusy) {
			return err
		}
		return nil
	}
	_, err := r.Run(ctx, p.RunID)
	return err
}

// errReconBusy: the run is RUNNING elsewhere with a live heartbeat. A
// requested run's task is retried (asynq), so a run whose worker was
// killed is taken over once its heartbeat is stale.
var errReconBusy = errors.New("reconciliation run is running elsewhere")

// Run runs one recorded run to its end and returns it settled. A run
// already finished is left alone (zero run, nil); one running elsewhere
// answers errReconBusy.
func (r *Reconciler) Run(ctx context.Context, runID string) (store.ReconRun, error) {
	run, err := r.Store.StartReconRun(ctx, runID)
	if errors.Is(err, store.ErrNotFound) {
		return store.ReconRun{}, nil
	}
	if errors.Is(err, store.ErrReconBusy) {
		return store.ReconRun{}, errReconBusy
	}
	if err != nil {
		return store.ReconRun{}, err
	}
	log := r.Log.With("recon_run", runID, "from", run.From, "to", run.To)
	log.Info("reconciliation started")
	start := r.now()
	matched, runErr := r.reconcile(ctx, log, run)
	done, err := r.Store.FinishReconRun(context.WithoutCancel(ctx), runID, matched, runErr)
	if err != nil {
		return done, err
	}
	lvl := slog.LevelInfo
	if runErr != nil || done.Flagged > 0 {
		lvl = slog.LevelError
	}
	log.Log(ctx, lvl, "reconciliation finished", "status", done.Status, "pg_rows", done.PGRows, "matched", done.Matched,
		"repaired", done.Repaired, "flagged", done.Flagged, "elapsed", r.now().Sub(start), "err", runErr)
	if r.Hooks.Task != nil {
		r.Hooks.Task(queue.TypeRecon, done.Status)
	}
	return done, nil
}

func (r *Reconciler) pageSize() int {
	if r.PageSize > 0 && r.PageSize <= pgclient.MaxTransactionsPage {
		return r.PageSize
	}
	return pgclient.MaxTransactionsPage
}

func (r *Reconciler) reconcile(ctx context.Context, log *slog.Logger, run store.ReconRun) (int64, error) {
	if err := r.stage(ctx, log, run); err != nil {
		return 0, err
	}
	if err := r.Store.AnalyzeReconRows(ctx); err != nil {
		return 0, err
	}
	matched, err := r.Store.CountReconApprovalsMatched(ctx, run.RunID)
	if err != nil {
		return 0, err
	}
	heartbeat := func() error { return r.Store.ReconHeartbeat(ctx, run.RunID) }
	err = eachPage(heartbeat,
		func(cursor string) ([]store.ReconApproval, error) {
			return r.Store.ReconApprovalDisagreements(ctx, run.RunID, cursor, reconBatch)
		},
		func(a store.ReconApproval) string { return a.PaymentKey },
		func(a store.ReconApproval) (bool, error) { return false, r.missingHere(ctx, log, run, a) }, &matched)
	if err != nil {
		return matched, err
	}
	err = eachPage(heartbeat,
		func(cursor string) ([]store.OrderRow, error) {
			return r.Store.ReconPaidWithoutApproval(ctx, run.RunID, run.From, run.To, cursor, reconBatch)
		},
		func(o store.OrderRow) string { return o.OrderID },
		func(o store.OrderRow) (bool, error) { return r.missingAtPG(ctx, log, run, o) }, &matched)
	if err != nil {
		return matched, err
	}
	err = eachPage(heartbeat,
		func(cursor string) ([]store.ReconCancelCandidate, error) {
			return r.Store.ReconCancelCandidates(ctx, run.RunID, run.From, run.To, cursor, reconBatch)
		},
		func(c store.ReconCancelCandidate) string { return c.PaymentKey },
		func(c store.ReconCancelCandidate) (bool, error) { return r.cancels(ctx, log, run, c) }, &matched)
	return matched, err
}

// eachPage walks a keyset-paged comparison: fetch a page after cursor,
// beat the run's heartbeat (a stale run is taken over by another worker),
// check each item (counting the matched ones), and go on from the last
// key until a short page.
func eachPage[T any](heartbeat func() error, fetch func(cursor string) ([]T, error), key func(T) string, check func(T) (bool, error), matched *int64) error {
	for cursor := ""; ; {
		page, err := fetch(cursor)
		if err != nil {
			return err
		}
		if err := heartbeat(); err != nil {
			return err
		}
		for _, it := range page {
			ok, err := check(it)
			if err != nil {
				return err
			}
			if ok {
				*matched++
			}
		}
		if len(page) < reconBatch {
			return nil
		}
		cursor = key(page[len(page)-1])
	}
}

// reconPageTries bounds the attempts at one page of the PG's list.
const reconPageTries = 8

// stage reads the PG's list for the window page by page, each page retried
// with backoff (the list has no side effect), into the run's staging rows.
func (r *Reconciler) stage(ctx context.Context, log *slog.Logger, run store.ReconRun) error {
	size := r.pageSize()
	for after, pages := "", 0; ; pages++ {
		var page pgclient.TransactionsPage
		for try := 0; ; try++ {
			pctx, cancel := context.WithTimeout(ctx, max(r.PGTimeout, 30*time.Second))
			page = r.Books.Transactions(pctx, run.From, run.To, after, size)
			cancel()
			if page.Outcome == pgclient.Approved {
				break
			}
			if try+1 >= reconPageTries || ctx.Err() != nil {
				return fmt.Errorf("the PG's transaction list (page %d) answered %s %s: %v", pages+1, page.Outcome, page.Code, page.Err)
			}
			log.Warn("the PG's transaction list did not answer; trying again", "page", pages+1, "outcome", page.Outcome.String(), "code", page.Code)
			if err := sleepCtx(ctx, backoff(try, r.ReconcileBackoff, r.ReconcileBackoffMax)); err != nil {
				return err
			}
		}
		rows := make([]store.ReconPGRow, 0, len(page.Transactions))
		for _, t := range page.Transactions {
			at, err := pgclient.ParseTransactionTime(t.TransactionAt)
			if err != nil {
				return fmt.Errorf("transaction %s: time %q: %w", t.TransactionKey, t.TransactionAt, err)
			}
			rows = append(rows, store.ReconPGRow{TransactionKey: t.TransactionKey, PaymentKey: t.PaymentKey, OrderID: t.OrderID,
				IsCancel: t.IsCancel(), Amount: t.Amount, At: at})
		}
		if len(rows) > 0 {
			if err := r.Store.StageReconRows(ctx, run.RunID, rows); err != nil {
				return err
			}
		} else if err := r.Store.ReconHeartbeat(ctx, run.RunID); err != nil {
			return err
		}
		if len(page.Transactions) < size {
			return nil
		}
		after = page.Transactions[len(page.Transactions)-1].TransactionKey
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// item records a finding once per run.
func (r *Reconciler) item(ctx context.Context, log *slog.Logger, run store.ReconRun, it store.ReconItem) error {
	it.RunID = run.RunID
	added, err := r.Store.AddReconItem(ctx, it)
	if err != nil || !added {
		return err
	}
	lvl := slog.LevelWarn
	if it.NeedsAttention {
		lvl = slog.LevelError
	}
	log.Log(ctx, lvl, "reconciliation finding", "class", it.Class, "order_id", it.OrderID, "payment_key", it.PaymentKey,
		"action", it.Action, "needs_attention", it.NeedsAttention, "detail", it.Detail)
	// A repair wrote its own history (the transition, recon.applied, or
	// the refund); a flag is written here so the order shows it.
	if it.NeedsAttention && it.OrderID != "" && it.MerchantID != "" {
		return r.Store.AppendLog(ctx, it.OrderID, "recon.flagged", "recon", map[string]any{"runId": run.RunID, "class": it.Class, "detail": it.Detail})
	}
	return nil
}

// locked runs fn under the order's lock, waiting out a worker that holds
// it (a confirm or webhook in progress) for up to half a minute.
func (r *Reconciler) locked(ctx context.Context, orderID string, fn func(ctx context.Context) error) error {
	deadline := r.now().Add(30 * time.Second)
	for {
		err := r.Locks.Do(ctx, "order:"+orderID, fn)
		if !errors.Is(err, lock.ErrTaken) || r.now().After(deadline) {
			return err
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// missingHere handles a PG approval payrail does not show as paid: the
// order is looked up under its lock and what the PG's record proves is
// applied (CONFIRMING or AWAITING_DEPOSIT → PAID; EXPIRED or FAILED → the
// late-approval refund). An approval for another amount or key, or for an
// order payrail never saw, is flagged.
func (r *Reconciler) missingHere(ctx context.Context, log *slog.Logger, run store.ReconRun, a store.ReconApproval) error {
	pg := a.PGAmount
	it := store.ReconItem{Class: store.ReconMissingHere, PaymentKey: a.PaymentKey, OrderID: a.OrderID, MerchantID: a.MerchantID, PGAmount: &pg}
	switch {
	case a.OurOrderID == "":
		it.Action, it.NeedsAttention = "none", true
		it.Detail = "the PG approved orderId " + a.OrderID + ", for which payrail has no order"
		it.OrderID = ""
		return r.item(ctx, log, run, it)
	case a.Status == payment.Paid || a.Status == payment.PartiallyCanceled || a.Status == payment.Canceled:
		ours := a.OurAmount
		it.Class, it.OurAmount, it.Action, it.NeedsAttention = store.ReconAmountMismatch, &ours, "none", true
		it.Detail = fmt.Sprintf("the PG approved %d with paymentKey %s; payrail's order is %s for %d with paymentKey %s", a.PGAmount, a.PaymentKey, a.Status, a.OurAmount, a.OurPaymentKey)
		return r.item(ctx, log, run, it)
	}
	before := a.Status
	err := r.locked(ctx, a.OurOrderID, func(ctx context.Context) error {
		row, err := r.Store.OrderRowAnyMerchant(ctx, a.OurOrderID)
		if err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, r.PGTimeout)
		res := r.PG.GetPayment(pctx, a.PaymentKey)
		cancel()
		r.observePG(ctx, "lookup", res)
		if res.Outcome == pgclient.Declined {
			return nil // the PG lists it but does not know it: flagged below
		}
		if res.Outcome != pgclient.Approved || res.Payment == nil {
			// Without the PG's record nothing is proved: the run fails
			// rather than flag what a re-run would repair.
			return fmt.Errorf("lookup of %s: %s %s %v", a.PaymentKey, res.Outcome, res.Code, res.Err)
		}
		call := pgCall(row, "pg.lookup", row.ConfirmAttempts, res)
		call.Message = "recon: pg status " + string(res.Payment.Status)
		call.NextCheckAt = r.now().Add(r.Store.ConfirmStuckAfter())
		if err := r.apply(ctx, log, row, res.Payment, "recon", &call); err != nil && !errors.Is(err, errRetry) && !errors.Is(err, errAfterCancel) {
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	after, err := r.Store.OrderRowAnyMerchant(ctx, a.OurOrderID)
	if err != nil {
		return err
	}
	refunded, refundPending, err := r.Store.RefundedAmount(ctx, a.OurOrderID, a.PaymentKey)
	if err != nil {
		return err
	}
	switch {
	case after.Status == payment.Paid || after.Status == payment.PartiallyCanceled || after.Status == payment.Canceled:
		it.Action = "applied: " + string(before) + " → " + string(after.Status)
	case refundPending || refunded > 0:
		it.Action = "refund_scheduled"
	default:
		it.Action, it.NeedsAttention = "none", true
		it.Detail = fmt.Sprintf("the PG approved it; payrail's order is %s and the PG's record did not prove a transition", after.Status)
	}
	return r.item(ctx, log, run, it)
}

// missingAtPG handles an order paid here whose approval is not in the PG's
// list: matched when the PG's record shows it approved outside the window
// (an edge); otherwise an alert, never an automatic change.
func (r *Reconciler) missingAtPG(ctx context.Context, log *slog.Logger, run store.ReconRun, o store.OrderRow) (matched bool, err error) {
	if o.PaymentKey == nil {
		return false, nil
	}
	pctx, cancel := context.WithTimeout(ctx, r.PGTimeout)
	res := r.PG.GetPayment(pctx, *o.PaymentKey)
	cancel()
	r.observePG(ctx, "lookup", res)
	ours := o.Amount
	it := store.ReconItem{Class: store.ReconMissingAtPG, PaymentKey: *o.PaymentKey, OrderID: o.OrderID, MerchantID: o.MerchantID, OurAmount: &ours,
		Action: "alert", NeedsAttention: true}
	if res.Outcome == pgclient.Approved && res.Payment != nil {
		p := res.Payment
		at := parseTime(p.ApprovedAt)
		if p.OrderID == o.OrderID && p.TotalAmount == o.Amount && (p.Status.Charged() || p.Status == payment.PGCanceled) && at != nil &&
			(at.Before(run.From) || !at.Before(run.To)) {
			return true, nil // approved, just not in this window
		}
		it.Detail = fmt.Sprintf("payrail shows it %s; the PG's record says %s for order %s amount %d, and its list has no approval in the window", o.Status, p.Status, p.OrderID, p.TotalAmount)
	} else {
		it.Detail = fmt.Sprintf("payrail shows it %s; the PG does not know the payment (%s %s)", o.Status, res.Outcome, res.Code)
		if res.Outcome != pgclient.Declined {
			return false, fmt.Errorf("lookup of %s: %s %s %v", *o.PaymentKey, res.Outcome, res.Code, res.Err)
		}
	}
	return false, r.item(ctx, log, run, it)
}

// cancels compares what the PG's record shows cancelled of a payment with
// what payrail recorded (cancels and late-approval refunds). A cancel the
// PG made and payrail missed (its console, a lost webhook) is applied
// through the transition table; payrail showing more than the PG is
// flagged. A payment with a cancel or refund still in flight is left for
// the next run.
func (r *Reconciler) cancels(ctx context.Context, log *slog.Logger, run store.ReconRun, c store.ReconCancelCandidate) (matched bool, err error) {
	var it *store.ReconItem
	err = r.locked(ctx, c.OrderID, func(ctx context.Context) error {
		row, err := r.Store.OrderRowAnyMerchant(ctx, c.OrderID)
		if payment.ErrorCode(err) == payment.CodeOrderNotFound {
			it = &store.ReconItem{Class: store.ReconCancelMismatch, PaymentKey: c.PaymentKey, Action: "none", NeedsAttention: true,
				Detail: "the PG cancelled a payment of orderId " + c.OrderID + ", for which payrail has no order"}
			return nil
		}
		if err != nil {
			return err
		}
		refunded, refundPending, err := r.Store.RefundedAmount(ctx, row.OrderID, c.PaymentKey)
		if err != nil {
			return err
		}
		if row.ReservedCancelAmount > 0 || refundPending {
			return nil // in flight: its own path settles it
		}
		pctx, cancel := context.WithTimeout(ctx, r.PGTimeout)
		res := r.PG.GetPayment(pctx, c.PaymentKey)
		cancel()
		r.observePG(ctx, "lookup", res)
		if res.Outcome == pgclient.Declined {
			it = &store.ReconItem{Class: store.ReconCancelMismatch, PaymentKey: c.PaymentKey, OrderID: row.OrderID, MerchantID: row.MerchantID,
				Action: "none", NeedsAttention: true, Detail: fmt.Sprintf("payrail shows %d cancelled; the PG does not know the payment (%s)", row.CanceledAmount+refunded, res.Code)}
			return nil
		}
		if res.Outcome != pgclient.Approved || res.Payment == nil {
			return fmt.Errorf("lookup of %s: %s %s %v", c.PaymentKey, res.Outcome, res.Code, res.Err)
		}
		p := res.Payment
		pgCanceled := p.TotalAmount - p.BalanceAmount
		ours := row.CanceledAmount + refunded
		if row.PaymentKey == nil || *row.PaymentKey != c.PaymentKey {
			ours = refunded // a late approval of another key: only its refund counts
		}
		base := store.ReconItem{Class: store.ReconCancelMismatch, PaymentKey: c.PaymentKey, OrderID: row.OrderID, MerchantID: row.MerchantID,
			PGAmount: &pgCanceled, OurAmount: &ours}
		paid := row.Status == payment.Paid || row.Status == payment.PartiallyCanceled
		switch {
		case pgCanceled == ours:
			matched = true
			return nil
		case pgCanceled > ours && paid && row.PaymentKey != nil && *row.PaymentKey == c.PaymentKey && p.OrderID == row.OrderID && p.TotalAmount == row.Amount:
			delta := pgCanceled - ours
			to := payment.PartiallyCanceled
			if row.CanceledAmount+delta >= row.Amount {
				to = payment.Canceled
			}
			if _, err := r.Store.Transition(ctx, store.Change{OrderID: row.OrderID, Version: row.Version, To: to, Action: "recon.applied", Actor: "recon",
				CanceledAmountDelta: delta, Details: map[string]any{"runId": run.RunID, "pgCanceled": pgCanceled, "ours": ours, "pgStatus": p.Status}}); err != nil {
				return err
			}
			base.Action = fmt.Sprintf("applied: cancel of %d the PG made → %s", delta, to)
		default:
			base.Action, base.NeedsAttention = "none", true
			base.Detail = fmt.Sprintf("the PG shows %d cancelled (status %s); payrail shows %d on an order that is %s", pgCanceled, p.Status, ours, row.Status)
		}
		it = &base
		return nil
	})
	if err != nil {
		return false, err
	}
	if it != nil {
		return false, r.item(ctx, log, run, *it)
	}
	return matched, nil
}
