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

// ConfirmStore is what confirming an order reads and writes.
type ConfirmStore interface {
	// OrderRowAnyMerchant returns ORDER_NOT_FOUND (a payment.Error) for an
	// unknown order.
	OrderRowAnyMerchant(ctx context.Context, orderID string) (store.OrderRow, error)
	// OpenAccepted is the row a confirm task's snapshot sealed for orderID
	// at version; an error when it does not open (altered, or another
	// order's or version's).
	OpenAccepted(orderID, merchantID string, version int, token string) (store.OrderRow, error)
	// Transition moves the order and writes c.PGCall's history row in the
	// same transaction; store.ErrVersionConflict (nothing written) when
	// the order is no longer at c.Version.
	Transition(ctx context.Context, c store.Change) (payment.Order, error)
	// RecordPGCall writes a PG call's history row and the order's retry
	// bookkeeping, fenced on the call's version.
	RecordPGCall(ctx context.Context, c store.PGCall) error
	// CreateRefund records the refund of a late approval once per order and
	// paymentKey; created is false when it already exists.
	CreateRefund(ctx context.Context, orderID, paymentKey string, amount int64, source string) (r store.Refund, created bool, err error)
	// ConfirmStuckAfter is how long a confirm may go unanswered before the
	// sweep re-enqueues it.
	ConfirmStuckAfter() time.Duration
}

// ConfirmQueue is what confirming enqueues.
type ConfirmQueue interface {
	Reconcile(ctx context.Context, orderID string, version int, delay time.Duration) error
	Refund(ctx context.Context, refundID string, attempt int) error
	// FairDone ends a finished confirm's or webhook's fair-share entry
	// (queue.Fair).
	FairDone(ctx context.Context, merchantID, member string) error
}

// Confirmer confirms orders with the PG (payment:confirm) and looks up the
// ones whose outcome is unknown (payment:reconcile), under the order's lock.
// Whatever the PG's record says is applied through payment.Reading.
type Confirmer struct {
	*Env
	Store ConfirmStore
	Queue ConfirmQueue
}

// HandleConfirm confirms an order with the PG.
func (c *Confirmer) HandleConfirm(ctx context.Context, t *asynq.Task) error {
	var p queue.OrderPayload
	if err := queue.Decode(t, &p); err != nil {
		return err
	}
	log := c.taskLog(ctx, p.OrderID)
	err := c.Locks.Do(ctx, "order:"+p.OrderID, func(ctx context.Context) error {
		n, _ := asynq.GetRetryCount(ctx)
		return c.confirmTask(ctx, log, p, n)
	})
	c.observeTask(t.Type(), err)
	err = finish(ctx, log, err)
	c.fairDone(ctx, log, err, p.MerchantID, p.OrderID)
	return err
}

// confirmTask runs a confirm task under the order's lock; retried is
// asynq's retry count. Its first run (retried 0, which a lock-taken retry
// and a shutdown's requeue keep) works on the accept's snapshot when the
// task carries one that opens and the accept is younger than
// ConfirmStuckAfter; otherwise it reads the order.
func (c *Confirmer) confirmTask(ctx context.Context, log *slog.Logger, p queue.OrderPayload, retried int) error {
	if retried == 0 && p.Accepted != "" {
		row, err := c.Store.OpenAccepted(p.OrderID, p.MerchantID, p.Version, p.Accepted)
		switch {
		case err != nil:
			log.Warn("the confirm task's snapshot does not open; reading the order", "err", err)
		case c.now().Sub(*row.ConfirmRequestedAt) < c.Store.ConfirmStuckAfter():
			return c.confirmAccepted(ctx, log, row)
		}
	}
	return c.confirmRead(ctx, log, p.OrderID)
}

// confirmAccepted is the first run of the confirm the accept enqueued, on
// the order as the accept left it (store.SealAccepted), not read again.
//
// Why that is safe: within ConfirmStuckAfter of the accept no sweep has
// re-enqueued the order, and its PG call is the one a read would have
// made (the same key, amount and idempotency key; a repeat is answered
// from the PG's idempotency record). Every transition is fenced on the
// accepted version, which every transition bumps. What the version does
// not fence is the bookkeeping a PG call without a transition writes
// (RecordPGCall): an earlier run of this very task that met an unknown
// outcome and was then requeued by a shutdown (retry count still 0)
// leaves outcome_unknown set, which the snapshot does not show, and a
// decline must then not be believed without a lookup (DESIGN rule 4). So
// the transitions are also fenced on that (Change.FenceUnknown), and such
// a conflict sends the task back to read the order. A version conflict
// needs nothing more: every version change takes an order out of
// CONFIRMING, from the PG's record, and a read-path run that loses that
// race during its PG call leaves the order alone too.
func (c *Confirmer) confirmAccepted(ctx context.Context, log *slog.Logger, row store.OrderRow) error {
	fenced := &acceptedStore{ConfirmStore: c.Store}
	cc := *c
	cc.Store = fenced
	err := cc.confirmLocked(ctx, log, row)
	if err == nil && fenced.unknown {
		return fmt.Errorf("an earlier PG attempt's outcome is unknown (not in the accepted snapshot): %w", errRetry)
	}
	return err
}

// acceptedStore is the ConfirmStore of a run on an accepted snapshot: its
// transitions are fenced on outcome_unknown too, and it notes when that
// fence refused one.
type acceptedStore struct {
	ConfirmStore
	unknown bool
}

func (s *acceptedStore) Transition(ctx context.Context, c store.Change) (payment.Order, error) {
	c.FenceUnknown = true
	o, err := s.ConfirmStore.Transition(ctx, c)
	if errors.Is(err, store.ErrOutcomeUnknownConflict) {
		s.unknown = true
	}
	return o, err
}

// fairDone ends a finished task's place in its merchant's fair share; a
// retrying task keeps it.
func (c *Confirmer) fairDone(ctx context.Context, log *slog.Logger, err error, merchantID, member string) {
	if err != nil || merchantID == "" {
		return
	}
	if derr := c.Queue.FairDone(context.WithoutCancel(ctx), merchantID, member); derr != nil {
		log.Warn("fair share: ending the outstanding task failed; it lapses on its own", "err", derr)
	}
}

// HandleReconcile looks up a payment whose confirm outcome is unknown.
func (c *Confirmer) HandleReconcile(ctx context.Context, t *asynq.Task) error {
	var p queue.OrderPayload
	if err := queue.Decode(t, &p); err != nil {
		return err
	}
	log := c.taskLog(ctx, p.OrderID)
	err := c.Locks.Do(ctx, "order:"+p.OrderID, func(ctx context.Context) error {
		row, err := c.Store.OrderRowAnyMerchant(ctx, p.OrderID)
		if err != nil || (row.Status != payment.Confirming && row.Status != payment.AwaitingDeposit) {
			return ignoreNotFound(err)
		}
		err = c.lookupLocked(ctx, log, row)
		if errors.Is(err, errDepositReversed) {
			return nil // an awaiting order cannot be reversed; only paid ones
		}
		return err
	})
	c.observeTask(t.Type(), err)
	return finish(ctx, log, err)
}

// confirmRead confirms the order as PostgreSQL has it now; one no longer
// CONFIRMING (settled by a webhook or an earlier run) is left alone.
func (c *Confirmer) confirmRead(ctx context.Context, log *slog.Logger, orderID string) error {
	row, err := c.Store.OrderRowAnyMerchant(ctx, orderID)
	if err != nil || row.Status != payment.Confirming {
		return ignoreNotFound(err)
	}
	return c.confirmLocked(ctx, log, row)
}

// confirmLocked confirms row, a CONFIRMING order, with the PG.
func (c *Confirmer) confirmLocked(ctx context.Context, log *slog.Logger, row store.OrderRow) error {
	now := c.now()
	if row.NeedsReconciliation || row.ConfirmRequestedAt == nil || now.Sub(*row.ConfirmRequestedAt) >= c.SessionWindow {
		return c.lookupLocked(ctx, log, row)
	}
	pctx, cancel := context.WithTimeout(ctx, c.PGTimeout)
	res := c.PG.Confirm(pctx, *row.PGIdempotencyKey, *row.PaymentKey, row.OrderID, row.Amount)
	cancel()
	c.observePG(ctx, "confirm", res)
	call := pgCall(row, "pg.confirm", row.ConfirmAttempts+1, res)
	log = log.With("pg_outcome", res.Outcome.String(), "pg_code", res.Code)
	switch res.Outcome {
	case pgclient.Approved:
		call.NextCheckAt = now.Add(c.Store.ConfirmStuckAfter())
		return c.apply(ctx, log, row, res.Payment, "pg.confirm", &call)
	case pgclient.Declined:
		call.NextCheckAt = now.Add(c.Store.ConfirmStuckAfter())
		if row.OutcomeUnknown {
			// An earlier attempt may have gone through: the decline is only
			// believed once a lookup agrees.
			if err := c.commit(ctx, log, nil, &call); err != nil {
				return err
			}
			log.Info("decline after an unknown outcome; looking the payment up")
			return c.lookupLocked(ctx, log, row)
		}
		return c.commit(ctx, log, failed(row, res.Code, res.Message, "pg.confirm"), &call)
	default: // Retryable, Unknown
		n, _ := asynq.GetRetryCount(ctx)
		delay := backoff(n, c.ConfirmBackoff, c.ConfirmBackoffMax)
		exhausted := now.Add(delay).Sub(*row.ConfirmRequestedAt) >= c.SessionWindow
		call.Unknown = res.Outcome == pgclient.Unknown
		call.NeedsReconciliation = exhausted
		call.NextCheckAt = now.Add(delay + c.Store.ConfirmStuckAfter())
		if err := c.commit(ctx, log, nil, &call); err != nil {
			return err
		}
		if exhausted {
			log.Warn("confirm retries exhausted within the PG session window; reconciling by lookup")
			return c.Queue.Reconcile(context.WithoutCancel(ctx), row.OrderID, row.Version, c.ReconcileBackoff)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("pg confirm %s (%s): %w", res.Outcome, res.Code, errRetry)
	}
}

// pgCall is the history row of one PG call about row.
func pgCall(row store.OrderRow, action string, attempt int, res pgclient.Result) store.PGCall {
	return store.PGCall{OrderID: row.OrderID, Version: row.Version, Action: action, Attempt: attempt,
		Outcome: res.Outcome.String(), Code: res.Code, Message: res.Message, Status: res.HTTPStatus, Latency: res.Latency}
}

// lookupLocked asks the PG what became of the payment and applies the answer.
func (c *Confirmer) lookupLocked(ctx context.Context, log *slog.Logger, row store.OrderRow) error {
	pctx, cancel := context.WithTimeout(ctx, c.PGTimeout)
	res := c.PG.GetPayment(pctx, *row.PaymentKey)
	cancel()
	c.observePG(ctx, "lookup", res)
	now := c.now()
	call := pgCall(row, "pg.lookup", row.ConfirmAttempts, res)
	call.NextCheckAt = now.Add(c.ReconcileBackoff + c.Store.ConfirmStuckAfter())
	if res.Payment != nil {
		call.Message = "pg status " + string(res.Payment.Status)
	}
	switch {
	case res.Outcome == pgclient.Approved && res.Payment != nil && res.Payment.Status.Decided():
		return c.apply(ctx, log, row, res.Payment, "pg.lookup", &call)
	case res.Outcome == pgclient.Declined && row.Status == payment.Confirming && (res.Code == pgclient.CodeNotFoundPayment || res.Code == pgclient.CodeNotFoundPaymentSession):
		// The PG has no such payment: nothing was charged.
		return c.commit(ctx, log, failed(row, res.Code, res.Message, "pg.lookup"), &call)
	}
	// Still unknown: the PG is down, or the payment is not decided yet.
	pastWindow := row.ConfirmRequestedAt == nil || now.Sub(*row.ConfirmRequestedAt) >= c.SessionWindow
	call.NeedsReconciliation = pastWindow || row.NeedsReconciliation
	if row.Status == payment.AwaitingDeposit {
		// A due-date check the PG did not answer: asked again, nothing to
		// reconcile (the account is known, and waiting is its normal state).
		call.NeedsReconciliation = row.NeedsReconciliation
	}
	if err := c.commit(ctx, log, nil, &call); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("pg lookup %s (%s): %w", res.Outcome, res.Code, errRetry)
}

// apply moves an order to what the PG's payment record says, whatever state
// the order is in, as payment.Reading decides: it never moves an order
// backwards, and an approval for an order that can no longer be paid is
// refunded. call, when set, is the PG call that brought p; commit writes
// it, with the transition or on its own.
func (c *Confirmer) apply(ctx context.Context, log *slog.Logger, row store.OrderRow, p *pgclient.Payment, source string, call *store.PGCall) error {
	if p == nil {
		if err := c.commit(ctx, log, nil, call); err != nil {
			return err
		}
		return fmt.Errorf("pg answered without a payment: %w", errRetry)
	}
	if p.OrderID != row.OrderID && row.Status == payment.Confirming && row.PaymentKey != nil && p.PaymentKey == *row.PaymentKey {
		// The key is another order's (a merchant confirmed with a key it
		// does not own): nothing was charged to this order. It fails the way
		// an unknown key fails, with the PG's not-found code, so the merchant
		// learns nothing about whose key it was, and FAILED frees the key.
		log.Warn("paymentKey belongs to another order at the PG; failing this order as not found")
		return c.commit(ctx, log, failed(row, pgclient.CodeNotFoundPayment, "존재하지 않는 결제 정보 입니다.", source), call)
	}
	if p.OrderID != row.OrderID || p.TotalAmount != row.Amount || (row.PaymentKey != nil && p.PaymentKey != *row.PaymentKey && row.Status != payment.Created && row.Status != payment.Expired && row.Status != payment.Failed) {
		// Never guess: an operator must look.
		log.Error("pg payment disagrees with the order", "pg_order_id", p.OrderID, "pg_amount", p.TotalAmount, "pg_payment_key", p.PaymentKey)
		if err := c.Store.RecordPGCall(ctx, store.PGCall{OrderID: row.OrderID, Version: row.Version, Action: "alert.pg_mismatch",
			Outcome: "mismatch", Message: fmt.Sprintf("pg orderId=%s amount=%d paymentKey=%s status=%s", p.OrderID, p.TotalAmount, p.PaymentKey, p.Status),
			NeedsReconciliation: true, NextCheckAt: c.now().Add(time.Hour)}); err != nil {
			return err
		}
		return c.commit(ctx, log, nil, call)
	}
	var change *store.Change
	switch effect := payment.Reading(p.Status, row.Status, row.ReservedCancelAmount > 0); effect {
	case payment.NoEffect:
		if c.depositOverdue(row, p) {
			// The PG still shows the account waiting, past its due date and
			// the grace: unpaid. A transfer the PG reports after this is a
			// late approval, refunded like any other.
			change = &store.Change{To: payment.Expired, Action: "payment.expired", Details: map[string]any{"reason": "virtual account due date passed unpaid", "dueDate": row.VADueDate}}
		}
	case payment.DepositReversed:
		log.Error("the PG shows a paid virtual account waiting for its deposit again (reversed by the bank); not applied", "pg_status", p.Status)
		if err := c.Store.RecordPGCall(ctx, store.PGCall{OrderID: row.OrderID, Version: row.Version, Action: "alert.deposit_reversed",
			Outcome: "deposit_reversed", Message: "the PG shows the deposit reversed: status " + string(p.Status) + "; the order stays " + string(row.Status),
			NeedsReconciliation: true, NextCheckAt: c.now().Add(time.Hour)}); err != nil {
			return err
		}
		if err := c.commit(ctx, log, nil, call); err != nil {
			return err
		}
		return errDepositReversed
	case payment.AwaitDeposit:
		va, err := virtualAccount(p)
		if err != nil {
			// Never guess an account the buyer would pay into: asked again.
			log.Error("the PG's virtual account is unreadable", "err", err)
			if err := c.commit(ctx, log, nil, call); err != nil {
				return err
			}
			return fmt.Errorf("virtual account: %v: %w", err, errRetry)
		}
		next := va.DueDate.Add(c.depositGrace())
		change = &store.Change{To: payment.AwaitingDeposit, Action: "payment.awaiting_deposit", Method: nonEmpty(p.Method),
			VirtualAccount: va, VASecret: p.Secret, NextCheckAt: &next}
	case payment.ExpireAtPG:
		change = &store.Change{To: payment.Expired, Action: "payment.expired_at_pg"}
	case payment.AskAgain:
		if err := c.commit(ctx, log, nil, call); err != nil {
			return err
		}
		return fmt.Errorf("pg payment status %s is not final: %w", p.Status, errRetry)
	case payment.AfterCancel:
		if err := c.commit(ctx, log, nil, call); err != nil {
			return err
		}
		return errAfterCancel
	case payment.Refund:
		if err := c.refund(ctx, log, row, p, source); err != nil {
			return err
		}
	case payment.Approve:
		change = &store.Change{To: payment.Paid, Action: "payment.approved", Method: nonEmpty(p.Method), ApprovedAt: parseTime(p.ApprovedAt)}
		if row.Status == payment.AwaitingDeposit {
			change.Action = "payment.deposited"
		} else if p.VirtualAccount != nil && row.VAAccountNumber == nil {
			// The deposit was seen before the confirm's answer was applied:
			// the account is kept all the same.
			if va, err := virtualAccount(p); err == nil {
				change.VirtualAccount, change.VASecret = va, p.Secret
			}
		}
	case payment.CancelAtPG:
		change = &store.Change{To: payment.Canceled, Action: "payment.canceled_at_pg", Method: nonEmpty(p.Method), ApprovedAt: parseTime(p.ApprovedAt),
			CanceledAmountDelta: row.Amount - row.CanceledAmount}
	case payment.FailAtPG:
		code, msg := "PG_"+string(p.Status), "the PG reports the payment "+string(p.Status)
		if p.Failure != nil && p.Failure.Code != "" {
			code, msg = p.Failure.Code, p.Failure.Message
		}
		change = failed(row, code, msg, source)
	default:
		return fmt.Errorf("payment.Reading: unhandled effect %s", effect)
	}
	if change != nil && change.Action != "payment.failed" {
		change.OrderID, change.Version, change.Actor = row.OrderID, row.Version, "worker"
		d := map[string]any{"source": source, "pgStatus": p.Status, "paymentKey": p.PaymentKey}
		for k, v := range change.Details {
			d[k] = v
		}
		if change.VirtualAccount != nil {
			d["virtualAccount"] = map[string]any{"bankCode": change.VirtualAccount.BankCode,
				"accountNumber": payment.MaskDigits(change.VirtualAccount.AccountNumber), "dueDate": change.VirtualAccount.DueDate}
		}
		change.Details = d
	}
	return c.commit(ctx, log, change, call)
}

// refund records (once) and enqueues the refund of an approval the order
// can no longer take.
func (c *Confirmer) refund(ctx context.Context, log *slog.Logger, row store.OrderRow, p *pgclient.Payment, source string) error {
	r, created, err := c.Store.CreateRefund(ctx, row.OrderID, p.PaymentKey, p.BalanceAmount, source)
	if err != nil || !created {
		return err
	}
	log.Warn("late PG approval for an order that can no longer be paid; refunding", "status", row.Status, "refund_id", r.RefundID)
	if err := c.Queue.Refund(context.WithoutCancel(ctx), r.RefundID, 0); err != nil {
		log.Warn("enqueue refund; the sweep retries", "err", err)
	}
	return nil
}

// failed is the change that fails row with the PG's code and message.
func failed(row store.OrderRow, code, msg, source string) *store.Change {
	if code == "" {
		code = "PG_DECLINED"
	}
	return &store.Change{OrderID: row.OrderID, Version: row.Version, To: payment.Failed, Action: "payment.failed",
		Actor: "worker", FailureCode: &code, FailureMessage: &msg, Details: map[string]any{"source": source, "code": code, "message": msg}}
}

// commit is the one place a PG call's history row is written: with the
// transition it caused, in the transition's transaction, or on its own when
// there is no transition or the transition lost a race (so every call is in
// the history either way). Either may be nil.
func (c *Confirmer) commit(ctx context.Context, log *slog.Logger, change *store.Change, call *store.PGCall) error {
	if change == nil {
		if call == nil {
			return nil
		}
		return c.Store.RecordPGCall(ctx, *call)
	}
	ch := *change
	ch.PGCall = call
	o, err := c.Store.Transition(ctx, ch)
	if errors.Is(err, store.ErrVersionConflict) {
		log.Info("order moved concurrently; leaving it", "to", ch.To)
		return c.commit(ctx, log, nil, call)
	}
	if err != nil {
		return err
	}
	if ch.To == payment.Failed {
		log.Info("order failed", "code", *ch.FailureCode)
	} else {
		log.Info("order settled", "status", o.Status, "version", o.Version)
	}
	return nil
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func parseTime(s string) *time.Time {
	if s == "" {
		return nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return &t
		}
	}
	return nil
}

// depositOverdue reports whether row is a virtual account the PG still
// shows waiting, past its due date and the grace (payrail's clock).
func (c *Confirmer) depositOverdue(row store.OrderRow, p *pgclient.Payment) bool {
	return row.Status == payment.AwaitingDeposit && p.Status == payment.PGWaitingForDeposit &&
		row.VADueDate != nil && !c.now().Before(row.VADueDate.Add(c.depositGrace()))
}

// virtualAccount reads the PG's issued account; an account without a
// number, a secret or a due date is refused rather than shown to a buyer.
func virtualAccount(p *pgclient.Payment) (*payment.VirtualAccount, error) {
	v := p.VirtualAccount
	if v == nil || v.AccountNumber == "" || v.BankCode == "" || p.Secret == "" {
		return nil, errors.New("the PG answered WAITING_FOR_DEPOSIT without an account number, bank or secret")
	}
	due := parseTime(v.DueDate)
	if due == nil {
		return nil, fmt.Errorf("due date %.40q is not a time", v.DueDate)
	}
	return &payment.VirtualAccount{AccountNumber: v.AccountNumber, BankCode: v.BankCode, CustomerName: v.CustomerName, DueDate: due.UTC()}, nil
}
