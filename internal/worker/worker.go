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

// PG is the slice of the PG client the worker uses. Every call answers a
// classified pgclient.Result; none returns an error.
type PG interface {
	Confirm(ctx context.Context, idempotencyKey, paymentKey, orderID string, amount int64) pgclient.Result
	GetPayment(ctx context.Context, paymentKey string) pgclient.Result
	Cancel(ctx context.Context, idempotencyKey, paymentKey, reason string, amount int64, refund *pgclient.RefundAccount) pgclient.Result
}

// Locker runs fn while holding the named lock, for as long as fn runs. It
// returns lock.ErrTaken, without running fn, when another holder has it.
type Locker interface {
	Do(ctx context.Context, key string, fn func(ctx context.Context) error) error
}

// Timing holds the knobs every handler reads.
type Timing struct {
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
	// DepositGrace is how long past a virtual account's due date payrail
	// waits before expiring it on its own clock while the PG still shows it
	// waiting (clock skew; a transfer made at the last second) (0: 10 min).
	DepositGrace time.Duration
}

// DefaultDepositGrace is Timing.DepositGrace's default.
const DefaultDepositGrace = 10 * time.Minute

func (t Timing) depositGrace() time.Duration {
	if t.DepositGrace > 0 {
		return t.DepositGrace
	}
	return DefaultDepositGrace
}

// Env is what every handler shares: the PG, the per-order lock, the clock,
// the log, the hooks and the timing.
type Env struct {
	PG    PG
	Locks Locker
	Log   *slog.Logger
	Now   func() time.Time
	// Hooks observe outcomes (metrics); nil is fine.
	Hooks Hooks
	// Alerts records the PG refusing payrail's own credentials or request
	// for the ops console's banner; nil only logs.
	Alerts Alerts
	Timing
}

// Alerts records operator alerts about the PG; *store.Store implements it.
// An error is logged and otherwise ignored: the alert is advisory, the
// task's own retry carries on regardless.
type Alerts interface {
	NotePGAlert(ctx context.Context, kind, op, code, message string) error
}

// Store is everything the handlers read and write, each through its own
// slice (ConfirmStore, WebhookStore, CancelStore, SweepStore); *store.Store
// is the one implementation.
type Store interface {
	WebhookStore
	CancelStore
	SweepStore
	ReconStore
}

// Queue is every task the handlers enqueue; *queue.Client is the one
// implementation.
type Queue interface {
	ConfirmQueue
	SweepQueue
}

// Worker wires the handlers together and routes tasks to them: confirm and
// reconcile (Confirmer), PG webhooks (Webhooks), cancels and refunds
// (Canceler), the sweep (Sweeper) and merchant callbacks (Callbacks).
type Worker struct {
	Env
	Store Store
	Queue Queue
	// Callbacks delivers merchant callbacks (internal/callback); nil leaves
	// callback:deliver unhandled.
	Callbacks Callbacks
	// Books is the PG's transaction list for reconciliation; nil leaves
	// recon:run unhandled.
	Books Books
}

// Reconciler is the worker's reconciliation with the PG's books.
func (w *Worker) Reconciler() *Reconciler {
	return &Reconciler{Confirmer: w.Confirmer(), Store: w.Store, Books: w.Books}
}

// Callbacks handles callback:lane and wakes the lanes that have due work.
type Callbacks interface {
	asynq.Handler
	EnqueueDue(ctx context.Context) error
}

// Hooks lets metrics observe the worker without the worker importing them.
type Hooks struct {
	PGCall func(op, outcome string, d time.Duration)
	Task   func(typ, outcome string)
}

// Confirmer is the worker's confirm handler.
func (w *Worker) Confirmer() *Confirmer {
	return &Confirmer{Env: &w.Env, Store: w.Store, Queue: w.Queue}
}

// Webhooks is the worker's PG webhook handler.
func (w *Worker) Webhooks() *Webhooks {
	return &Webhooks{Confirmer: w.Confirmer(), Store: w.Store}
}

// Canceler is the worker's cancel and refund handler.
func (w *Worker) Canceler() *Canceler { return &Canceler{Env: &w.Env, Store: w.Store} }

// Sweeper is the worker's maintenance sweep.
func (w *Worker) Sweeper() *Sweeper {
	return &Sweeper{Env: &w.Env, Store: w.Store, Queue: w.Queue, Callbacks: w.Callbacks}
}

// HandleConfirm confirms an order with the PG (Confirmer.HandleConfirm).
func (w *Worker) HandleConfirm(ctx context.Context, t *asynq.Task) error {
	return w.Confirmer().HandleConfirm(ctx, t)
}

// HandleReconcile looks a payment up (Confirmer.HandleReconcile).
func (w *Worker) HandleReconcile(ctx context.Context, t *asynq.Task) error {
	return w.Confirmer().HandleReconcile(ctx, t)
}

// HandleWebhook applies a stored PG event (Webhooks.HandleWebhook).
func (w *Worker) HandleWebhook(ctx context.Context, t *asynq.Task) error {
	return w.Webhooks().HandleWebhook(ctx, t)
}

// HandleCancel sends a merchant's cancel (Canceler.HandleCancel).
func (w *Worker) HandleCancel(ctx context.Context, t *asynq.Task) error {
	return w.Canceler().HandleCancel(ctx, t)
}

// HandleRefund refunds a late approval (Canceler.HandleRefund).
func (w *Worker) HandleRefund(ctx context.Context, t *asynq.Task) error {
	return w.Canceler().HandleRefund(ctx, t)
}

// HandleSweep runs one maintenance tick (Sweeper.HandleSweep).
func (w *Worker) HandleSweep(ctx context.Context, t *asynq.Task) error {
	return w.Sweeper().HandleSweep(ctx, t)
}

// Sweep runs one sweep now (tests, payrailctl).
func (w *Worker) Sweep(ctx context.Context) error { return w.Sweeper().Sweep(ctx) }

// errRetry asks asynq to run the task again later.
var errRetry = errors.New("retry later")

// errDepositReversed: the PG shows a paid virtual account waiting for its
// deposit again. Nothing moves; the caller raises the alert.
var errDepositReversed = errors.New("deposit reversed at the PG")

// errAfterCancel: the PG's record must be read again once payrail's own
// pending cancel of the order has settled (payment.AfterCancel).
var errAfterCancel = fmt.Errorf("the PG shows a cancel while ours is pending: %w", errRetry)

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
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
		mux.Handle(queue.TypeCallbackLane, w.Callbacks)
		mux.Handle(queue.TypeCallback, w.Callbacks)
	}
	mux.HandleFunc(queue.TypeWebhook, w.HandleWebhook)
	mux.HandleFunc(queue.TypeCancel, w.HandleCancel)
	mux.HandleFunc(queue.TypeRefund, w.HandleRefund)
	if w.Books != nil {
		mux.HandleFunc(queue.TypeRecon, func(ctx context.Context, t *asynq.Task) error { return w.Reconciler().HandleRecon(ctx, t) })
	}
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
	case queue.TypeReconcile, queue.TypeRecon:
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

func (e *Env) taskLog(ctx context.Context, orderID string) *slog.Logger {
	id, _ := asynq.GetTaskID(ctx)
	n, _ := asynq.GetRetryCount(ctx)
	return e.Log.With("order_id", orderID, "task_id", id, "attempt", n)
}

func (e *Env) observeTask(typ string, err error) {
	if e.Hooks.Task == nil {
		return
	}
	outcome := "success"
	switch {
	case errors.Is(err, lock.ErrTaken):
		outcome = "lock_taken"
	case err != nil:
		outcome = "retry"
	}
	e.Hooks.Task(typ, outcome)
}

// observePG counts the call and, when the PG refused payrail's own
// credentials or request, raises the operator alert: such a call is retried
// (never a decline), so without the alert it would only look slow.
func (e *Env) observePG(ctx context.Context, op string, res pgclient.Result) {
	if e.Hooks.PGCall != nil {
		e.Hooks.PGCall(op, res.Outcome.String(), res.Latency)
	}
	if res.Outcome != pgclient.Misconfigured {
		return
	}
	msg := res.Message
	if msg == "" && res.Err != nil {
		msg = res.Err.Error()
	}
	e.Log.Error("the PG refused payrail's credentials or request; retrying, operator action needed",
		"op", op, "status", res.HTTPStatus, "code", res.Code, "message", msg)
	if e.Alerts != nil {
		if err := e.Alerts.NotePGAlert(ctx, store.AlertPGMisconfigured, op, res.Code, msg); err != nil {
			e.Log.Warn("recording the PG alert failed", "err", err)
		}
	}
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
