package worker

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

// sweepLockID is the PostgreSQL advisory lock that keeps two sweeps from
// running at once, whichever workers enqueued them.
const sweepLockID = 7316002

// DefaultPGEventRetention keeps settled PG events 30 days (DESIGN.md).
const DefaultPGEventRetention = 30 * 24 * time.Hour

// purgeBatch bounds one sweep's deletes per table: a backlog drains over
// several ticks instead of one long transaction.
const purgeBatch = 1000

// SweepStore is what the maintenance sweep reads and writes.
type SweepStore interface {
	// Exclusive runs fn under a PostgreSQL advisory lock; ran is false when
	// another session holds it.
	Exclusive(ctx context.Context, lockID int64, fn func(ctx context.Context) error) (ran bool, err error)
	ClaimDueConfirms(ctx context.Context, limit int, again time.Duration) ([]store.OrderRef, error)
	// ClaimDueDeposits hands out AWAITING_DEPOSIT orders past their due
	// date (plus the grace), each once per `again`.
	ClaimDueDeposits(ctx context.Context, limit int, again time.Duration) ([]store.OrderRef, error)
	DueExpiries(ctx context.Context, limit int) ([]store.OrderRef, error)
	// Expire returns store.ErrVersionConflict when the order moved first.
	Expire(ctx context.Context, ref store.OrderRef) (payment.Order, error)
	DueRefunds(ctx context.Context, limit int, again time.Duration) ([]store.Refund, error)
	StalePendingCancels(ctx context.Context, age time.Duration, limit int) ([]string, error)
	StaleReceivedEvents(ctx context.Context, age time.Duration, limit int) ([]store.PGEvent, error)
	PurgeExpired(ctx context.Context, eventRetention time.Duration, batch int) (events, keys int64, err error)
	ConfirmStuckAfter() time.Duration
}

// SweepQueue is what the sweep re-enqueues, each under the sweep's
// generation g so a re-enqueue never collides with the task it replaces.
type SweepQueue interface {
	ConfirmAgain(ctx context.Context, orderID string, version int, g int64) error
	ReconcileAgain(ctx context.Context, orderID string, version int, g int64) error
	RefundAgain(ctx context.Context, refundID string, attempt int, g int64) error
	CancelAgain(ctx context.Context, cancelID string, g int64) error
	WebhookAgain(ctx context.Context, provider, eventKey string, g int64) error
}

// Sweeper is the maintenance sweep (maintenance:sweep): it carries on from
// lost or exhausted tasks from the schedule in PostgreSQL, expires stale
// orders and purges what has outlived its retention.
type Sweeper struct {
	*Env
	Store     SweepStore
	Queue     SweepQueue
	Callbacks Callbacks
}

// HandleSweep runs one maintenance tick: re-enqueue confirms whose task was
// lost, reconcile stuck ones, expire stale orders.
func (w *Sweeper) HandleSweep(ctx context.Context, t *asynq.Task) error {
	ran, err := w.Store.Exclusive(ctx, sweepLockID, func(ctx context.Context) error {
		return w.sweep(ctx)
	})
	if err != nil {
		w.Log.Error("sweep", "err", err)
		return nil // the next tick tries again; a sweep task is never retried
	}
	if !ran {
		w.Log.Debug("sweep already running elsewhere")
	}
	w.observeTask(t.Type(), nil)
	return nil
}

// Sweep runs one sweep now (tests, payrailctl).
func (w *Sweeper) Sweep(ctx context.Context) error {
	_, err := w.Store.Exclusive(ctx, sweepLockID, w.sweep)
	return err
}

func (w *Sweeper) sweep(ctx context.Context) error {
	var errs []error
	refs, err := w.Store.ClaimDueConfirms(ctx, 500, w.Store.ConfirmStuckAfter())
	errs = append(errs, err)
	gen := w.now().UnixMilli()
	for _, r := range refs {
		if r.NeedsReconciliation {
			errs = append(errs, w.Queue.ReconcileAgain(ctx, r.OrderID, r.Version, gen))
		} else {
			errs = append(errs, w.Queue.ConfirmAgain(ctx, r.OrderID, r.Version, gen))
		}
	}
	if len(refs) > 0 {
		w.Log.Info("sweep re-enqueued confirms", "count", len(refs))
	}
	deposits, err := w.Store.ClaimDueDeposits(ctx, 500, w.ReconcileBackoffMax)
	errs = append(errs, err)
	for _, r := range deposits {
		// A lookup under the order's lock decides: paid, closed at the PG,
		// or unpaid past its due date (EXPIRED).
		errs = append(errs, w.Queue.ReconcileAgain(ctx, r.OrderID, r.Version, gen))
	}
	if len(deposits) > 0 {
		w.Log.Info("sweep looks up virtual accounts past their due date", "count", len(deposits))
	}
	exp, err := w.Store.DueExpiries(ctx, 500)
	errs = append(errs, err)
	for _, r := range exp {
		if _, err := w.Store.Expire(ctx, r); err != nil && !errors.Is(err, store.ErrVersionConflict) {
			errs = append(errs, err)
		}
	}
	refunds, err := w.Store.DueRefunds(ctx, 200, w.ReconcileBackoffMax)
	errs = append(errs, err)
	for _, r := range refunds {
		errs = append(errs, w.Queue.RefundAgain(ctx, r.RefundID, r.Attempts, gen))
	}
	cancels, err := w.Store.StalePendingCancels(ctx, w.Store.ConfirmStuckAfter(), 200)
	errs = append(errs, err)
	for _, id := range cancels {
		errs = append(errs, w.Queue.CancelAgain(ctx, id, gen))
	}
	events, err := w.Store.StaleReceivedEvents(ctx, w.Store.ConfirmStuckAfter(), 200)
	errs = append(errs, err)
	for _, e := range events {
		errs = append(errs, w.Queue.WebhookAgain(ctx, e.Provider, e.EventKey, gen))
	}
	if w.Callbacks != nil {
		errs = append(errs, w.Callbacks.EnqueueDue(ctx))
	}
	retention := w.PGEventRetention
	if retention <= 0 {
		retention = DefaultPGEventRetention
	}
	purgedEvents, purgedKeys, err := w.Store.PurgeExpired(ctx, retention, purgeBatch)
	errs = append(errs, err)
	if purgedEvents+purgedKeys > 0 {
		w.Log.Info("sweep purged expired rows", "pg_events", purgedEvents, "idempotency_keys", purgedKeys)
	}
	return errors.Join(errs...)
}
