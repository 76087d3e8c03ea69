package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/store"
)

// CancelStore is what sending cancels and refunds reads and writes.
type CancelStore interface {
	// OrderRowAnyMerchant returns ORDER_NOT_FOUND for an unknown order.
	OrderRowAnyMerchant(ctx context.Context, orderID string) (store.OrderRow, error)
	// CancelAnyMerchant returns CANCEL_NOT_FOUND for an unknown cancel.
	CancelAnyMerchant(ctx context.Context, cancelID string) (store.Cancel, error)
	// FinishCancel settles a PENDING cancel and moves the order, once.
	FinishCancel(ctx context.Context, cancelID string, out store.CancelOutcome) (ok bool, err error)
	// RecordCancelAttempt notes an attempt whose outcome is not final;
	// needsReconciliation flags the cancel for operators (sticky).
	RecordCancelAttempt(ctx context.Context, c store.Cancel, outcome, code string, needsReconciliation bool) error
	// RefundByID returns store.ErrNotFound for an unknown refund.
	RefundByID(ctx context.Context, id string) (store.Refund, error)
	// RecordRefundAttempt notes an attempt that did not settle and when
	// the sweep tries again.
	RecordRefundAttempt(ctx context.Context, r store.Refund, outcome, code string, next time.Time) error
	// CompleteRefund settles a PENDING refund, once.
	CompleteRefund(ctx context.Context, refundID string) (ok bool, err error)
}

// Canceler sends merchants' cancels (payment:cancel) and the refunds of
// late approvals (payment:refund) to the PG under the order's lock, each
// with its own idempotency key.
type Canceler struct {
	*Env
	Store CancelStore
}

// HandleCancel sends a merchant's cancel to the PG under the order's lock,
// with the cancel's own idempotency key, and settles it.
func (w *Canceler) HandleCancel(ctx context.Context, t *asynq.Task) error {
	var p queue.IDPayload
	if err := queue.Decode(t, &p); err != nil {
		return err
	}
	c, err := w.Store.CancelAnyMerchant(ctx, p.ID)
	if err != nil {
		return ignoreNotFound(err)
	}
	log := w.taskLog(ctx, c.OrderID).With("cancel_id", c.CancelID)
	err = w.Locks.Do(ctx, "order:"+c.OrderID, func(ctx context.Context) error {
		c, err := w.Store.CancelAnyMerchant(ctx, p.ID)
		if err != nil || c.Status != payment.CancelPending {
			return err
		}
		row, err := w.Store.OrderRowAnyMerchant(ctx, c.OrderID)
		if err != nil {
			return err
		}
		return w.cancelLocked(ctx, log, c, row)
	})
	w.observeTask(t.Type(), err)
	return finish(ctx, log, err)
}

// cancelLocked sends one PENDING cancel and settles it. A refusal is not
// believed on its own: the payment is looked up first, and a PG record
// showing it fully cancelled (in the PG's console while ours was pending)
// is applied with the refusal. An answer that stays unknown past the PG
// session window flags the cancel for operators and reconciles it by lookup
// before every further attempt (each with the cancel's own idempotency key,
// so a retry can never cancel twice).
func (w *Canceler) cancelLocked(ctx context.Context, log *slog.Logger, c store.Cancel, row store.OrderRow) error {
	overdue := w.now().Sub(c.CreatedAt) >= w.SessionWindow
	if overdue && !c.NeedsReconciliation {
		log.Warn("cancel still pending past the PG session window; flagged for reconciliation")
		if err := w.Store.RecordCancelAttempt(ctx, c, "overdue", "", true); err != nil {
			return err
		}
	}
	if overdue {
		if done, err := w.reconcileCancel(ctx, log, c, row); done || err != nil {
			return err
		}
	}
	pctx, cancel := context.WithTimeout(ctx, w.PGTimeout)
	res := w.PG.Cancel(pctx, c.PGIdempotencyKey, *row.PaymentKey, c.Reason, c.Amount, pgRefundAccount(c.RefundAccount))
	cancel()
	w.observePG(ctx, "cancel", res)
	switch res.Outcome {
	case pgclient.Approved:
		_, err := w.Store.FinishCancel(ctx, c.CancelID, store.CancelOutcome{Succeeded: true})
		return err
	case pgclient.Declined:
		p, ok := w.lookupForCancel(ctx, log, row)
		if !ok {
			// Without the PG's record the refusal is not final: retried.
			if err := w.Store.RecordCancelAttempt(ctx, c, "refused_unverified", res.Code, overdue); err != nil {
				return err
			}
			return fmt.Errorf("pg refused the cancel (%s) and the lookup did not answer: %w", res.Code, errRetry)
		}
		canceled := p.Status == payment.PGCanceled
		log.Warn("PG refused the cancel", "code", res.Code, "pg_status", p.Status, "canceled_at_pg", canceled)
		_, err := w.Store.FinishCancel(ctx, c.CancelID, store.CancelOutcome{Code: res.Code, Message: res.Message, CanceledAtPG: canceled})
		return err
	}
	if err := w.Store.RecordCancelAttempt(ctx, c, res.Outcome.String(), res.Code, overdue); err != nil {
		return err
	}
	return fmt.Errorf("pg cancel %s: %w", res.Outcome, errRetry)
}

// lookupForCancel is the PG's record of row's payment, when the PG gave
// one that is this order's.
func (w *Canceler) lookupForCancel(ctx context.Context, log *slog.Logger, row store.OrderRow) (*pgclient.Payment, bool) {
	lctx, cancel := context.WithTimeout(ctx, w.PGTimeout)
	lr := w.PG.GetPayment(lctx, *row.PaymentKey)
	cancel()
	w.observePG(ctx, "lookup", lr)
	if lr.Outcome != pgclient.Approved || lr.Payment == nil {
		return nil, false
	}
	if p := lr.Payment; p.PaymentKey != *row.PaymentKey || p.OrderID != row.OrderID || p.TotalAmount != row.Amount {
		log.Error("PG record of a cancelled payment is not this order's", "pg_order_id", p.OrderID, "pg_amount", p.TotalAmount)
		return nil, false
	}
	return lr.Payment, true
}

// reconcileCancel settles an overdue cancel from the PG's record when the
// record proves what happened: the balance is exactly what remains after
// this cancel (the only one pending), or the payment is fully cancelled.
// Anything else proves nothing (the cancel may still be on its way), and
// the caller sends it again with its idempotency key.
func (w *Canceler) reconcileCancel(ctx context.Context, log *slog.Logger, c store.Cancel, row store.OrderRow) (done bool, err error) {
	p, ok := w.lookupForCancel(ctx, log, row)
	if !ok {
		return false, nil
	}
	known := row.Amount - row.CanceledAmount // what payrail knows is left, before any pending cancel
	onlyThis := row.ReservedCancelAmount == c.Amount
	switch {
	case onlyThis && p.BalanceAmount == known-c.Amount:
		log.Info("cancel reconciled by lookup: the PG's balance shows it", "balance", p.BalanceAmount)
		_, err := w.Store.FinishCancel(ctx, c.CancelID, store.CancelOutcome{Succeeded: true})
		return true, err
	case p.Status == payment.PGCanceled && onlyThis:
		// Fully cancelled, and not by this cancel alone (it would have left
		// the balance above): cancelled in the PG's console.
		log.Warn("cancel reconciled by lookup: the payment was cancelled at the PG")
		_, err := w.Store.FinishCancel(ctx, c.CancelID, store.CancelOutcome{Code: "CANCELED_AT_PG",
			Message: "the payment was cancelled at the PG while this cancel was pending", CanceledAtPG: true})
		return true, err
	}
	return false, nil
}

// HandleRefund refunds a late approval: a full PG cancel with the refund's
// own idempotency key, retried (by the task, then by the sweep) until the PG
// confirms it. The key makes a retry after a crash harmless. Before any
// cancel the paymentKey is looked up: only an approved payment of this very
// order, for its amount, is ever cancelled, so a refund row that names
// someone else's payment (however it came to be) cancels nothing.
func (w *Canceler) HandleRefund(ctx context.Context, t *asynq.Task) error {
	var p queue.IDPayload
	if err := queue.Decode(t, &p); err != nil {
		return err
	}
	r, err := w.Store.RefundByID(ctx, p.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // unknown refund: nothing to do
	}
	if err != nil {
		return err
	}
	log := w.taskLog(ctx, r.OrderID).With("refund_id", r.RefundID)
	err = w.Locks.Do(ctx, "order:"+r.OrderID, func(ctx context.Context) error {
		r, err := w.Store.RefundByID(ctx, p.ID)
		if err != nil || r.Status != payment.RefundPending {
			return err
		}
		row, err := w.Store.OrderRowAnyMerchant(ctx, r.OrderID)
		if err != nil {
			return err
		}
		lctx, cancel := context.WithTimeout(ctx, w.PGTimeout)
		lr := w.PG.GetPayment(lctx, r.PaymentKey)
		cancel()
		w.observePG(ctx, "lookup", lr)
		next := w.now().Add(backoff(r.Attempts, w.ReconcileBackoff, w.ReconcileBackoffMax))
		if lr.Outcome != pgclient.Approved || lr.Payment == nil {
			return w.Store.RecordRefundAttempt(ctx, r, "lookup_"+lr.Outcome.String(), lr.Code, next)
		}
		if p := lr.Payment; p.PaymentKey != r.PaymentKey || p.OrderID != row.OrderID || p.TotalAmount != row.Amount {
			// Never cancel what is not this order's: an operator must look.
			log.Error("refund names a payment that is not this order's; nothing cancelled", "pg_order_id", p.OrderID, "pg_amount", p.TotalAmount)
			return w.Store.RecordRefundAttempt(ctx, r, "mismatch", "PG_PAYMENT_NOT_THIS_ORDERS", w.now().Add(time.Hour))
		}
		done := lr.Payment.Status == payment.PGCanceled // an earlier attempt, or the PG's console
		if !done && lr.Payment.Status != payment.PGDone && lr.Payment.Status != payment.PGPartialCanceled {
			// Not approved (any more): nothing was charged that we could refund.
			return w.Store.RecordRefundAttempt(ctx, r, "not_approved", "PG_"+string(lr.Payment.Status), w.now().Add(time.Hour))
		}
		var res pgclient.Result
		if !done {
			pctx, cancel := context.WithTimeout(ctx, w.PGTimeout)
			res = w.PG.Cancel(pctx, r.PGIdempotencyKey, r.PaymentKey, "payrail: approval arrived after the order expired or failed", 0, nil)
			cancel()
			w.observePG(ctx, "refund", res)
			done = res.Outcome == pgclient.Approved
		}
		if done {
			_, err := w.Store.CompleteRefund(ctx, r.RefundID)
			if err == nil {
				log.Info("late approval refunded")
			}
			return err
		}
		if err := w.Store.RecordRefundAttempt(ctx, r, res.Outcome.String(), res.Code, next); err != nil {
			return err
		}
		return nil // the sweep retries at next_attempt_at
	})
	w.observeTask(t.Type(), err)
	return finish(ctx, log, err)
}

// pgRefundAccount is a cancel's refund account in the PG client's words.
func pgRefundAccount(a *payment.RefundAccount) *pgclient.RefundAccount {
	if a == nil {
		return nil
	}
	return &pgclient.RefundAccount{Bank: a.Bank, AccountNumber: a.AccountNumber, HolderName: a.HolderName}
}
