package worker

import (
	"context"
	"errors"
	"fmt"
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
	FinishCancel(ctx context.Context, cancelID string, succeeded bool, code, message string) (ok bool, err error)
	// RecordCancelAttempt notes an attempt whose outcome is not final.
	RecordCancelAttempt(ctx context.Context, c store.Cancel, outcome, code string) error
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
		pctx, cancel := context.WithTimeout(ctx, w.PGTimeout)
		res := w.PG.Cancel(pctx, c.PGIdempotencyKey, *row.PaymentKey, c.Reason, c.Amount)
		cancel()
		w.observePG(ctx, "cancel", res)
		switch res.Outcome {
		case pgclient.Approved:
			_, err := w.Store.FinishCancel(ctx, c.CancelID, true, "", "")
			return err
		case pgclient.Declined:
			log.Warn("PG refused the cancel", "code", res.Code)
			_, err := w.Store.FinishCancel(ctx, c.CancelID, false, res.Code, res.Message)
			return err
		}
		if err := w.Store.RecordCancelAttempt(ctx, c, res.Outcome.String(), res.Code); err != nil {
			return err
		}
		return fmt.Errorf("pg cancel %s: %w", res.Outcome, errRetry)
	})
	w.observeTask(t.Type(), err)
	return finish(ctx, log, err)
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
			res = w.PG.Cancel(pctx, r.PGIdempotencyKey, r.PaymentKey, "payrail: approval arrived after the order expired or failed", 0)
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
