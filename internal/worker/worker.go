// Package worker holds payrail's asynq handlers: it calls the PG under a
// per-order lock and moves orders through the one transition table with
// version-fenced updates. It never trusts a single unknown outcome: it asks
// the PG again (same idempotency key) or looks the payment up.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/lock"
	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/store"
)

// PG is the slice of the PG client the worker uses.
type PG interface {
	Confirm(ctx context.Context, idempotencyKey, paymentKey, orderID string, amount int64) pgclient.Result
	GetPayment(ctx context.Context, paymentKey string) pgclient.Result
	Cancel(ctx context.Context, idempotencyKey, paymentKey, reason string, amount int64) pgclient.Result
}

// Worker runs the payment handlers.
type Worker struct {
	Store *store.Store
	PG    PG
	Locks *lock.Locker
	Queue *queue.Client
	Log   *slog.Logger
	// PGTimeout bounds one PG call; the lock TTL must exceed it.
	PGTimeout time.Duration
	// SessionWindow is how long after the confirm request a confirm may be
	// retried with its idempotency key; after it, only lookups.
	SessionWindow time.Duration
	// ConfirmBackoff and ReconcileBackoff are the first retry delays; each
	// retry doubles up to the matching Max.
	ConfirmBackoff, ConfirmBackoffMax     time.Duration
	ReconcileBackoff, ReconcileBackoffMax time.Duration
	// SweepInterval is the period of the maintenance sweep.
	SweepInterval time.Duration
	// PGEventRetention is how long settled PG events are kept; the sweep
	// purges older ones in batches (0: 30 days).
	PGEventRetention time.Duration
	// PGLagWindow is how long an event that claims more than the PG's
	// record is looked up again before it is rejected (0: 2 minutes).
	PGLagWindow time.Duration
	Now         func() time.Time
	// Hooks observe outcomes (metrics); nil is fine.
	Hooks Hooks
	// Callbacks delivers merchant callbacks (internal/callback); nil leaves
	// callback:deliver unhandled.
	Callbacks Callbacks
}

// Callbacks handles callback:deliver and enqueues the callbacks that are due.
type Callbacks interface {
	asynq.Handler
	EnqueueDue(ctx context.Context) error
}

// Hooks lets metrics observe the worker without the worker importing them.
type Hooks struct {
	PGCall func(op, outcome string, d time.Duration)
	Task   func(typ, outcome string)
}

// errRetry asks asynq to run the task again later.
var errRetry = errors.New("retry later")

func (w *Worker) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

// Mux routes task types to handlers.
func (w *Worker) Mux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.HandleFunc(queue.TypeConfirm, w.HandleConfirm)
	mux.HandleFunc(queue.TypeReconcile, w.HandleReconcile)
	mux.HandleFunc(queue.TypeSweep, w.HandleSweep)
	if w.Callbacks != nil {
		mux.Handle(queue.TypeCallback, w.Callbacks)
	}
	mux.HandleFunc(queue.TypeWebhook, w.HandleWebhook)
	mux.HandleFunc(queue.TypeCancel, w.HandleCancel)
	mux.HandleFunc(queue.TypeRefund, w.HandleRefund)
	return mux
}

// IsFailure tells asynq that a taken lock is not a failure: the retry it
// schedules does not spend the task's retry budget.
func IsFailure(err error) bool { return !errors.Is(err, lock.ErrTaken) }

// RetryDelay is asynq's RetryDelayFunc: soon for a taken lock, exponential
// with jitter for the PG, slower for reconciliation.
func (w *Worker) RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	if errors.Is(err, lock.ErrTaken) {
		return 50*time.Millisecond + time.Duration(rand.Int64N(int64(150*time.Millisecond)))
	}
	switch t.Type() {
	case queue.TypeReconcile:
		return backoff(n, w.ReconcileBackoff, w.ReconcileBackoffMax)
	default:
		return backoff(n, w.ConfirmBackoff, w.ConfirmBackoffMax)
	}
}

// backoff is base·2ⁿ capped at max, with ±25 % jitter so retries of many
// orders do not arrive at the PG together.
func backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	j := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return d + j
}

func (w *Worker) taskLog(ctx context.Context, orderID string) *slog.Logger {
	id, _ := asynq.GetTaskID(ctx)
	n, _ := asynq.GetRetryCount(ctx)
	return w.Log.With("order_id", orderID, "task_id", id, "attempt", n)
}

func (w *Worker) observeTask(typ string, err error) {
	if w.Hooks.Task == nil {
		return
	}
	outcome := "success"
	switch {
	case errors.Is(err, lock.ErrTaken):
		outcome = "lock_taken"
	case err != nil:
		outcome = "retry"
	}
	w.Hooks.Task(typ, outcome)
}

func (w *Worker) observePG(op string, res pgclient.Result) {
	if w.Hooks.PGCall != nil {
		w.Hooks.PGCall(op, res.Outcome.String(), res.Latency)
	}
}

// HandleConfirm confirms an order with the PG.
func (w *Worker) HandleConfirm(ctx context.Context, t *asynq.Task) error {
	var p queue.OrderPayload
	if err := queue.Decode(t, &p); err != nil {
		return err
	}
	log := w.taskLog(ctx, p.OrderID)
	err := w.Locks.Do(ctx, "order:"+p.OrderID, func(ctx context.Context) error {
		return w.confirmLocked(ctx, log, p.OrderID)
	})
	w.observeTask(t.Type(), err)
	return finish(ctx, log, err)
}

// HandleReconcile looks up a payment whose confirm outcome is unknown.
func (w *Worker) HandleReconcile(ctx context.Context, t *asynq.Task) error {
	var p queue.OrderPayload
	if err := queue.Decode(t, &p); err != nil {
		return err
	}
	log := w.taskLog(ctx, p.OrderID)
	err := w.Locks.Do(ctx, "order:"+p.OrderID, func(ctx context.Context) error {
		row, err := w.Store.OrderRow(ctx, "", p.OrderID)
		if err != nil || payment.Status(row.Status) != payment.Confirming {
			return ignoreNotFound(err)
		}
		return w.lookupLocked(ctx, log, row)
	})
	w.observeTask(t.Type(), err)
	return finish(ctx, log, err)
}

// finish turns the handler's error into asynq's answer. A task at its last
// retry returns nil instead of being archived (an archived task keeps its ID
// taken); the PostgreSQL schedule and the sweep carry on from there.
func finish(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil || errors.Is(err, lock.ErrTaken) {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: asynq re-queues the task
	}
	if id, _ := asynq.GetTaskID(ctx); errors.Is(err, errRetry) && queue.IsSweepGeneration(id) {
		// A sweep's re-enqueue (its ID carries the sweep's generation): the
		// schedule is in PostgreSQL and the sweep comes back, so this task
		// does not retry on its own and tasks never pile up during an outage.
		log.Info("not retrying a sweep-generated task; the sweep will come back", "err", err)
		return nil
	}
	n, _ := asynq.GetRetryCount(ctx)
	max, _ := asynq.GetMaxRetry(ctx)
	if n >= max {
		log.Warn("task out of retries; the sweep takes over", "err", err)
		return nil
	}
	if !errors.Is(err, errRetry) {
		log.Error("task failed", "err", err)
	}
	return err
}

func ignoreNotFound(err error) error {
	if payment.ErrorCode(err) == payment.CodeOrderNotFound {
		return nil
	}
	return err
}

func (w *Worker) confirmLocked(ctx context.Context, log *slog.Logger, orderID string) error {
	row, err := w.Store.OrderRow(ctx, "", orderID)
	if err != nil || payment.Status(row.Status) != payment.Confirming {
		return ignoreNotFound(err)
	}
	now := w.now()
	if row.NeedsReconciliation || row.ConfirmRequestedAt == nil || now.Sub(*row.ConfirmRequestedAt) >= w.SessionWindow {
		return w.lookupLocked(ctx, log, row)
	}
	pctx, cancel := context.WithTimeout(ctx, w.PGTimeout)
	res := w.PG.Confirm(pctx, *row.PGIdempotencyKey, *row.PaymentKey, row.OrderID, row.Amount)
	cancel()
	w.observePG("confirm", res)
	attempt := row.ConfirmAttempts + 1
	call := store.PGCall{OrderID: row.OrderID, Version: row.Version, Action: "pg.confirm", Attempt: attempt,
		Outcome: res.Outcome.String(), Code: res.Code, Message: res.Message, Status: res.HTTPStatus, Latency: res.Latency}
	log = log.With("pg_outcome", res.Outcome.String(), "pg_code", res.Code)
	switch res.Outcome {
	case pgclient.Approved:
		call.NextCheckAt = now.Add(w.Store.ConfirmStuckAfter())
		// The call's history row commits with the transition it causes.
		return w.apply(ctx, log, row, res.Payment, "pg.confirm", &call)
	case pgclient.Declined:
		call.NextCheckAt = now.Add(w.Store.ConfirmStuckAfter())
		if err := w.Store.RecordPGCall(ctx, call); err != nil {
			return err
		}
		if row.OutcomeUnknown {
			// An earlier attempt may have gone through: the decline is only
			// believed once a lookup agrees.
			log.Info("decline after an unknown outcome; looking the payment up")
			return w.lookupLocked(ctx, log, row)
		}
		return w.fail(ctx, log, row, res.Code, res.Message, "pg.confirm")
	default: // Retryable, Unknown
		n, _ := asynq.GetRetryCount(ctx)
		delay := backoff(n, w.ConfirmBackoff, w.ConfirmBackoffMax)
		exhausted := now.Add(delay).Sub(*row.ConfirmRequestedAt) >= w.SessionWindow
		call.Unknown = res.Outcome == pgclient.Unknown
		call.NeedsReconciliation = exhausted
		call.NextCheckAt = now.Add(delay + w.Store.ConfirmStuckAfter())
		if err := w.Store.RecordPGCall(ctx, call); err != nil {
			return err
		}
		if exhausted {
			log.Warn("confirm retries exhausted within the PG session window; reconciling by lookup")
			return w.Queue.Reconcile(context.WithoutCancel(ctx), row.OrderID, row.Version, w.ReconcileBackoff)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("pg confirm %s (%s): %w", res.Outcome, res.Code, errRetry)
	}
}

// lookupLocked asks the PG what became of the payment and applies the answer.
func (w *Worker) lookupLocked(ctx context.Context, log *slog.Logger, row store.OrderRow) error {
	pctx, cancel := context.WithTimeout(ctx, w.PGTimeout)
	res := w.PG.GetPayment(pctx, *row.PaymentKey)
	cancel()
	w.observePG("lookup", res)
	now := w.now()
	call := store.PGCall{OrderID: row.OrderID, Version: row.Version, Action: "pg.lookup", Attempt: row.ConfirmAttempts,
		Outcome: res.Outcome.String(), Code: res.Code, Message: res.Message, Status: res.HTTPStatus, Latency: res.Latency,
		NextCheckAt: now.Add(w.ReconcileBackoff + w.Store.ConfirmStuckAfter())}
	if res.Payment != nil {
		call.Message = "pg status " + res.Payment.Status
	}
	switch {
	case res.Outcome == pgclient.Approved && res.Payment != nil && decided(res.Payment.Status):
		return w.apply(ctx, log, row, res.Payment, "pg.lookup", &call)
	case res.Outcome == pgclient.Declined && (res.Code == "NOT_FOUND_PAYMENT" || res.Code == "NOT_FOUND_PAYMENT_SESSION"):
		// The PG has no such payment: nothing was charged.
		if err := w.Store.RecordPGCall(ctx, call); err != nil {
			return err
		}
		return w.fail(ctx, log, row, res.Code, res.Message, "pg.lookup")
	}
	// Still unknown: the PG is down, or the payment is not decided yet.
	pastWindow := row.ConfirmRequestedAt == nil || now.Sub(*row.ConfirmRequestedAt) >= w.SessionWindow
	call.NeedsReconciliation = pastWindow || row.NeedsReconciliation
	if err := w.Store.RecordPGCall(ctx, call); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("pg lookup %s (%s): %w", res.Outcome, res.Code, errRetry)
}

// decided reports whether a PG payment status settles the confirm.
func decided(pgStatus string) bool {
	switch pgStatus {
	case "DONE", "CANCELED", "PARTIAL_CANCELED", "ABORTED", "EXPIRED":
		return true
	}
	return false
}

// apply moves an order to what the PG's payment record says, whatever state
// the order is in, through the transition table. It never moves an order
// backwards: a record that the table refuses is noted, not applied. An
// approval for an order that can no longer be paid is refunded.
//
// call, when set, is the PG call that brought p: it is written in the
// transition's own transaction, or on its own when nothing transitions.
func (w *Worker) apply(ctx context.Context, log *slog.Logger, row store.OrderRow, p *pgclient.Payment, source string, call *store.PGCall) (err error) {
	if call != nil {
		defer func() {
			if call != nil && (err == nil || errors.Is(err, errRetry)) {
				if rerr := w.Store.RecordPGCall(ctx, *call); rerr != nil {
					err = rerr
				}
			}
		}()
	}
	if p == nil {
		return fmt.Errorf("pg answered without a payment: %w", errRetry)
	}
	if p.OrderID != row.OrderID || p.TotalAmount != row.Amount || (row.PaymentKey != nil && p.PaymentKey != *row.PaymentKey && payment.Status(row.Status) != payment.Created && payment.Status(row.Status) != payment.Expired && payment.Status(row.Status) != payment.Failed) {
		// Never guess: an operator must look.
		log.Error("pg payment disagrees with the order", "pg_order_id", p.OrderID, "pg_amount", p.TotalAmount, "pg_payment_key", p.PaymentKey)
		return w.Store.RecordPGCall(ctx, store.PGCall{OrderID: row.OrderID, Version: row.Version, Action: "alert.pg_mismatch",
			Outcome: "mismatch", Message: fmt.Sprintf("pg orderId=%s amount=%d paymentKey=%s status=%s", p.OrderID, p.TotalAmount, p.PaymentKey, p.Status),
			NeedsReconciliation: true, NextCheckAt: w.now().Add(time.Hour)})
	}
	st := payment.Status(row.Status)
	approved := p.Status == "DONE" || p.Status == "PARTIAL_CANCELED" || p.Status == "CANCELED"
	switch {
	case st == payment.Expired || st == payment.Failed:
		if p.Status == "DONE" || p.Status == "PARTIAL_CANCELED" {
			r, created, err := w.Store.CreateRefund(ctx, row.OrderID, p.PaymentKey, p.BalanceAmount, source)
			if err != nil {
				return err
			}
			if created {
				log.Warn("late PG approval for an order that can no longer be paid; refunding", "status", st, "refund_id", r.RefundID)
				if err := w.Queue.Refund(context.WithoutCancel(ctx), r.RefundID, 0); err != nil {
					log.Warn("enqueue refund; the sweep retries", "err", err)
				}
			}
		}
		return nil
	case st == payment.Created:
		return nil // only our own confirm moves an order out of CREATED
	case st != payment.Confirming && !(p.Status == "CANCELED" && (st == payment.Paid || st == payment.PartiallyCanceled)):
		return nil // PAID and later: only a full cancel at the PG moves it
	case !approved && p.Status != "ABORTED" && p.Status != "EXPIRED":
		return fmt.Errorf("pg payment status %s is not final: %w", p.Status, errRetry)
	}
	var c store.Change
	switch p.Status {
	case "DONE", "PARTIAL_CANCELED":
		c = store.Change{To: payment.Paid, Action: "payment.approved", Method: nonEmpty(p.Method), ApprovedAt: parseTime(p.ApprovedAt)}
	case "CANCELED":
		if row.ReservedCancelAmount > 0 {
			return nil // our own cancel is in flight; it settles the amounts
		}
		c = store.Change{To: payment.Canceled, Action: "payment.canceled_at_pg", Method: nonEmpty(p.Method), ApprovedAt: parseTime(p.ApprovedAt),
			CanceledAmountDelta: row.Amount - row.CanceledAmount}
	default: // ABORTED, EXPIRED while confirming
		code, msg := "PG_"+p.Status, "the PG reports the payment "+p.Status
		if p.Failure != nil && p.Failure.Code != "" {
			code, msg = p.Failure.Code, p.Failure.Message
		}
		c.PGCall, call = call, nil
		return w.failWith(ctx, log, row, code, msg, source, c.PGCall)
	}
	c.OrderID, c.Version, c.Actor = row.OrderID, row.Version, "worker"
	c.Details = map[string]any{"source": source, "pgStatus": p.Status, "paymentKey": p.PaymentKey}
	c.PGCall, call = call, nil // now the transition's to write
	o, err := w.Store.Transition(ctx, c)
	if errors.Is(err, store.ErrVersionConflict) {
		log.Info("order moved concurrently; leaving it", "to", c.To)
		return w.recordLostCall(ctx, c.PGCall)
	}
	if err != nil {
		return err
	}
	log.Info("order settled", "status", o.Status, "version", o.Version)
	return nil
}

func (w *Worker) fail(ctx context.Context, log *slog.Logger, row store.OrderRow, code, msg, source string) error {
	return w.failWith(ctx, log, row, code, msg, source, nil)
}

func (w *Worker) failWith(ctx context.Context, log *slog.Logger, row store.OrderRow, code, msg, source string, call *store.PGCall) error {
	if code == "" {
		code = "PG_DECLINED"
	}
	_, err := w.Store.Transition(ctx, store.Change{OrderID: row.OrderID, Version: row.Version, To: payment.Failed, Action: "payment.failed",
		Actor: "worker", FailureCode: &code, FailureMessage: &msg, Details: map[string]any{"source": source, "code": code, "message": msg}, PGCall: call})
	if errors.Is(err, store.ErrVersionConflict) {
		log.Info("order moved concurrently; leaving it", "to", payment.Failed)
		return w.recordLostCall(ctx, call)
	}
	if err == nil {
		log.Info("order failed", "code", code)
	}
	return err
}

// recordLostCall writes the history row of a PG call whose transition lost
// the race, so every call is in the history either way.
func (w *Worker) recordLostCall(ctx context.Context, call *store.PGCall) error {
	if call == nil {
		return nil
	}
	return w.Store.RecordPGCall(ctx, *call)
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
