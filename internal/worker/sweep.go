package worker

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"

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

// HandleSweep runs one maintenance tick: re-enqueue confirms whose task was
// lost, reconcile stuck ones, expire stale orders.
func (w *Worker) HandleSweep(ctx context.Context, t *asynq.Task) error {
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
func (w *Worker) Sweep(ctx context.Context) error {
	_, err := w.Store.Exclusive(ctx, sweepLockID, w.sweep)
	return err
}

func (w *Worker) sweep(ctx context.Context) error {
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
