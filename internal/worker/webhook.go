package worker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/store"
)

// WebhookBody is the part of a PAYMENT_STATUS_CHANGED event payrail reads.
type WebhookBody struct {
	EventType string           `json:"eventType"`
	CreatedAt string           `json:"createdAt"`
	Data      pgclient.Payment `json:"data"`
}

// HandleWebhook applies a stored PG webhook under the order's lock. No
// event is believed on its word, signed (mockpg) or not (Toss): the payment
// is looked up and what the PG's own record says is applied, and only if it
// agrees with the event; a disagreement is an operator alert (log, metric,
// the event's row), not a transition. Nothing moves an order backwards.
func (w *Worker) HandleWebhook(ctx context.Context, t *asynq.Task) error {
	var p queue.IDPayload
	if err := queue.Decode(t, &p); err != nil {
		return err
	}
	provider, key, _ := strings.Cut(p.ID, ":")
	ev, err := w.Store.PGEventByKey(ctx, provider, key)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if ev.State != "RECEIVED" {
		return nil
	}
	var body WebhookBody
	if err := json.Unmarshal(ev.Body, &body); err != nil || body.Data.PaymentKey == "" {
		return w.Store.MarkPGEvent(ctx, ev, "IGNORED", "not a payment event payrail reads", "")
	}
	row, err := w.Store.OrderRowForEvent(ctx, body.Data.PaymentKey, body.Data.OrderID)
	if payment.ErrorCode(err) == payment.CodeOrderNotFound {
		return w.Store.MarkPGEvent(ctx, ev, "IGNORED", "no such order", "")
	}
	if err != nil {
		return err // a database error must not settle the event: retried
	}
	if reflected(row, body.Data) {
		// Nothing could move: no lock, no lookup (most webhooks merely
		// confirm what the confirm already applied).
		return w.Store.MarkPGEvent(ctx, ev, "IGNORED", "already reflected: order is "+row.Status+", event says "+body.Data.Status, row.OrderID)
	}
	log := w.taskLog(ctx, row.OrderID).With("pg_event", key, "pg_status", body.Data.Status)
	err = w.Locks.Do(ctx, "order:"+row.OrderID, func(ctx context.Context) error {
		return w.webhookLocked(ctx, ev, body, row.OrderID)
	})
	w.observeTask(t.Type(), err)
	return finish(ctx, log, err)
}

func (w *Worker) webhookLocked(ctx context.Context, ev store.PGEvent, body WebhookBody, orderID string) error {
	log := w.taskLog(ctx, orderID)
	row, err := w.Store.OrderRow(ctx, "", orderID)
	if err != nil {
		return ignoreNotFound(err)
	}
	st := payment.Status(row.Status)
	ours := row.PaymentKey != nil && *row.PaymentKey == body.Data.PaymentKey
	if !ours && st != payment.Expired && st != payment.Failed {
		// Another paymentKey (an earlier attempt) than the one this order is
		// confirming or was paid with: recorded, never applied.
		return w.Store.MarkPGEvent(ctx, ev, "IGNORED", "event for another paymentKey than the order's", orderID)
	}
	pctx, cancel := context.WithTimeout(ctx, w.PGTimeout)
	res := w.PG.GetPayment(pctx, body.Data.PaymentKey)
	cancel()
	w.observePG("lookup", res)
	if res.Outcome != pgclient.Approved || res.Payment == nil {
		if res.Outcome == pgclient.Declined && res.Code == pgclient.CodeNotFoundPayment {
			w.alertWebhook(log, body.Data.Status, "unknown")
			return w.Store.MarkPGEvent(ctx, ev, "REJECTED", "the PG does not know this payment ("+res.Code+")", orderID)
		}
		// Any other refusal (a bad or half-rotated secret key, …) says
		// nothing about the event: settling it now would lose a real one,
		// as the PG's retries come back as duplicates.
		return errRetry
	}
	p := res.Payment
	sameMoney := p.PaymentKey == body.Data.PaymentKey && p.OrderID == body.Data.OrderID && p.TotalAmount == body.Data.TotalAmount
	if sameMoney && statusRank(p.Status) < statusRank(body.Data.Status) && w.now().Sub(ev.ReceivedAt) < w.lagWindow() {
		// The PG's API may lag its own webhook (a DONE before the lookup
		// shows it): ask again for a while before calling it forged, or a
		// late approval on a FAILED order would never be refunded.
		return errRetry
	}
	if !sameMoney || statusRank(p.Status) < statusRank(body.Data.Status) {
		// The event names another payment, or claims more than the PG's
		// record shows (DONE for a READY payment): forged, or the PG is
		// inconsistent. An operator must look.
		w.alertWebhook(log, body.Data.Status, p.Status)
		return w.Store.MarkPGEvent(ctx, ev, "REJECTED", "event says "+body.Data.Status+", the PG says "+p.Status, orderID)
	}
	// The PG's record is at or past what the event says (a stale or
	// reordered event, e.g. DONE after a console cancel): what the record
	// says is applied, through the transition table.
	trusted := res.Payment
	before := row.Version
	if err := w.apply(ctx, log, row, trusted, "webhook:"+ev.Provider, nil); err != nil && !errors.Is(err, errRetry) {
		return err
	}
	after, err := w.Store.OrderRow(ctx, "", orderID)
	if err != nil {
		return err
	}
	note := "applied: order " + after.Status
	state := "APPLIED"
	if after.Version == before {
		state, note = "IGNORED", "no transition: order is "+after.Status+", event says "+trusted.Status
	}
	return w.Store.MarkPGEvent(ctx, ev, state, note, orderID)
}

// alertWebhook reports an event the PG's record contradicts: someone posted
// a forged event, or the PG's webhook and its API disagree. Operators see it
// in the log, the metric and the event's REJECTED row.
func (w *Worker) alertWebhook(log *slog.Logger, eventStatus, pgStatus string) {
	log.Error("webhook disagrees with the PG's record; not applied", "event_status", eventStatus, "pg_status", pgStatus)
	if w.Hooks.Task != nil {
		w.Hooks.Task("pg:webhook", "disagrees")
	}
}

// DefaultPGLagWindow is how long an event the PG's record is behind is
// looked up again before it is rejected.
const DefaultPGLagWindow = 2 * time.Minute

func (w *Worker) lagWindow() time.Duration {
	if w.PGLagWindow > 0 {
		return w.PGLagWindow
	}
	return DefaultPGLagWindow
}

// statusRank orders the PG's statuses by how far a payment has gone, so an
// event that says less than the PG's record is merely stale.
func statusRank(s string) int {
	switch s {
	case pgclient.StatusDone, pgclient.StatusAborted, pgclient.StatusExpired:
		return 1
	case pgclient.StatusPartialCanceled:
		return 2
	case pgclient.StatusCanceled:
		return 3
	}
	return 0 // READY, IN_PROGRESS, WAITING_FOR_DEPOSIT
}

// reflected reports whether the order already shows what the event says for
// its own paymentKey, so applying the event could change nothing.
func reflected(row store.OrderRow, p pgclient.Payment) bool {
	if row.PaymentKey == nil || *row.PaymentKey != p.PaymentKey {
		return false
	}
	switch st := payment.Status(row.Status); p.Status {
	case "DONE":
		return st == payment.Paid || st == payment.PartiallyCanceled || st == payment.Canceled
	case "PARTIAL_CANCELED":
		return st == payment.PartiallyCanceled || st == payment.Canceled
	case "CANCELED":
		return st == payment.Canceled
	}
	return false
}
