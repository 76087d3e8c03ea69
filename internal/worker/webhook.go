package worker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"

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

// HandleWebhook applies a stored PG webhook under the order's lock. Events
// from mockpg were authenticated by signature at the ingress; Toss payment
// events are unsigned, so the payment is looked up and the event believed
// only if the PG agrees. A negative event for a confirming order is always
// checked by a lookup, and nothing moves an order backwards.
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
	if err != nil {
		return w.Store.MarkPGEvent(ctx, ev, "IGNORED", "no such order", "")
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
	trusted := &body.Data
	negative := body.Data.Status == "ABORTED" || body.Data.Status == "EXPIRED"
	if ev.Provider != "mockpg" || (negative && st == payment.Confirming) {
		pctx, cancel := context.WithTimeout(ctx, w.PGTimeout)
		res := w.PG.GetPayment(pctx, body.Data.PaymentKey)
		cancel()
		w.observePG("lookup", res)
		if res.Outcome != pgclient.Approved || res.Payment == nil {
			if res.Outcome == pgclient.Declined {
				return w.Store.MarkPGEvent(ctx, ev, "REJECTED", "the PG does not know this payment ("+res.Code+")", orderID)
			}
			return errRetry
		}
		if res.Payment.Status != body.Data.Status || res.Payment.OrderID != body.Data.OrderID || res.Payment.TotalAmount != body.Data.TotalAmount {
			log.Error("webhook disagrees with the PG's record; not applied", "event_status", body.Data.Status, "pg_status", res.Payment.Status)
			if w.Hooks.Task != nil {
				w.Hooks.Task("pg:webhook", "disagrees")
			}
			return w.Store.MarkPGEvent(ctx, ev, "REJECTED", "event says "+body.Data.Status+", the PG says "+res.Payment.Status, orderID)
		}
		trusted = res.Payment
	}
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
