package worker

import (
	"context"
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

// WebhookStore is what applying a PG event reads and writes, on top of
// what confirming does (an event's effect goes through Confirmer.apply).
type WebhookStore interface {
	ConfirmStore
	// PGEventByKey returns store.ErrNotFound for an unknown event.
	PGEventByKey(ctx context.Context, provider, key string) (store.PGEvent, error)
	// OrderRowForEvent finds the order an event names, by paymentKey first;
	// ORDER_NOT_FOUND when there is none.
	OrderRowForEvent(ctx context.Context, paymentKey, orderID string) (store.OrderRow, error)
	// VASecret opens the order's sealed deposit secret; stored is false
	// when the order has none (yet).
	VASecret(row store.OrderRow) (secret string, stored bool, err error)
	// MarkPGEvent settles an event with a note; only an APPLIED one is
	// written to the order's history.
	MarkPGEvent(ctx context.Context, e store.PGEvent, state payment.PGEventState, note, orderID string) error
}

// WebhookBody is the part of a PAYMENT_STATUS_CHANGED event payrail reads.
// A DEPOSIT_CALLBACK is read into the same shape (Data names the order's
// payment and the status the event claims; DepositSecret is the event's
// secret as stored), so both take the one path below.
type WebhookBody struct {
	EventType string           `json:"eventType"`
	CreatedAt string           `json:"createdAt"`
	Data      pgclient.Payment `json:"data"`

	DepositSecret string `json:"-"`
}

// Webhooks applies stored PG events (pg:webhook). No event is believed on
// its word, signed (mockpg) or not (Toss): the payment is looked up and what
// the PG's own record says is applied, and only if it agrees with the event;
// a disagreement is an operator alert (log, metric, the event's row), not a
// transition. Nothing moves an order backwards.
type Webhooks struct {
	*Confirmer
	Store WebhookStore
}

// HandleWebhook applies one stored event under the order's lock.
func (w *Webhooks) HandleWebhook(ctx context.Context, t *asynq.Task) error {
	var p queue.IDPayload
	if err := queue.Decode(t, &p); err != nil {
		return err
	}
	provider, key, _ := strings.Cut(p.ID, ":")
	err := w.handleWebhook(ctx, provider, key)
	w.fairDone(ctx, w.Log, err, p.MerchantID, queue.WebhookMember(provider, key))
	return err
}

func (w *Webhooks) handleWebhook(ctx context.Context, provider, key string) error {
	ev, err := w.Store.PGEventByKey(ctx, provider, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if ev.State != payment.EventReceived {
		return nil
	}
	var body WebhookBody
	var deposit pgclient.DepositEvent
	if err := json.Unmarshal(ev.Body, &deposit); err == nil && deposit.EventType == pgclient.EventDepositCallback {
		body = WebhookBody{EventType: deposit.EventType, CreatedAt: deposit.CreatedAt, DepositSecret: deposit.Secret,
			Data: pgclient.Payment{OrderID: deposit.OrderID, Status: deposit.Status}}
	} else if err := json.Unmarshal(ev.Body, &body); err != nil || body.Data.PaymentKey == "" {
		return w.Store.MarkPGEvent(ctx, ev, payment.EventIgnored, "not a payment event payrail reads", "")
	}
	row, err := w.Store.OrderRowForEvent(ctx, body.Data.PaymentKey, body.Data.OrderID)
	if payment.ErrorCode(err) == payment.CodeOrderNotFound {
		return w.Store.MarkPGEvent(ctx, ev, payment.EventIgnored, "no such order", "")
	}
	if err != nil {
		return err // a database error must not settle the event: retried
	}
	if body.DepositSecret != "" {
		// A deposit names the order, not the payment: it is about the
		// order's own paymentKey, and its amount is the order's.
		if row.PaymentKey == nil {
			return w.Store.MarkPGEvent(ctx, ev, payment.EventIgnored, "deposit for an order with no payment", row.OrderID)
		}
		body.Data.PaymentKey, body.Data.TotalAmount = *row.PaymentKey, row.Amount
		// Stored before the account was known, and known now: checked
		// against the order's own secret before anything else.
		if err := w.checkStoredSecret(ctx, &ev, row, body); err != nil || ev.State != payment.EventReceived {
			return err
		}
	}
	if row.Shows(body.Data.PaymentKey, body.Data.Status) {
		// Nothing could move: no lock, no lookup.
		return w.Store.MarkPGEvent(ctx, ev, payment.EventIgnored,
			"already reflected: order is "+string(row.Status)+", event says "+string(body.Data.Status), row.OrderID)
	}
	log := w.taskLog(ctx, row.OrderID).With("pg_event", key, "pg_status", body.Data.Status)
	err = w.Locks.Do(ctx, "order:"+row.OrderID, func(ctx context.Context) error {
		return w.webhookLocked(ctx, log, ev, body, row.OrderID)
	})
	w.observeTask(queue.TypeWebhook, err)
	return finish(ctx, log, err)
}

func (w *Webhooks) webhookLocked(ctx context.Context, log *slog.Logger, ev store.PGEvent, body WebhookBody, orderID string) error {
	row, err := w.Store.OrderRowAnyMerchant(ctx, orderID)
	if err != nil {
		return ignoreNotFound(err)
	}
	ours := row.PaymentKey != nil && *row.PaymentKey == body.Data.PaymentKey
	if !ours && row.Status != payment.Expired && row.Status != payment.Failed {
		// Another paymentKey (an earlier attempt) than the one this order is
		// confirming or was paid with: recorded, never applied.
		return w.Store.MarkPGEvent(ctx, ev, payment.EventIgnored, "event for another paymentKey than the order's", orderID)
	}
	pctx, cancel := context.WithTimeout(ctx, w.PGTimeout)
	res := w.PG.GetPayment(pctx, body.Data.PaymentKey)
	cancel()
	w.observePG(ctx, "lookup", res)
	if res.Outcome != pgclient.Approved || res.Payment == nil {
		if res.Outcome == pgclient.Declined && res.Code == pgclient.CodeNotFoundPayment {
			w.alertWebhook(log, body.Data.Status, "unknown")
			return w.Store.MarkPGEvent(ctx, ev, payment.EventRejected, "the PG does not know this payment ("+res.Code+")", orderID)
		}
		// Any other refusal (a bad or half-rotated secret key, …) says
		// nothing about the event: settling it now would lose a real one,
		// as the PG's retries come back as duplicates.
		return errRetry
	}
	p := res.Payment
	if body.DepositSecret != "" && !pgclient.SecretMatches(body.DepositSecret, p.Secret) {
		// The door let it in unverified (no account stored yet), and the
		// PG's own record does not know its secret: forged.
		w.alertWebhook(log, body.Data.Status, p.Status)
		return w.Store.MarkPGEvent(ctx, ev, payment.EventRejected, "deposit secret does not match the PG's record of the payment", orderID)
	}
	sameMoney := p.PaymentKey == body.Data.PaymentKey && p.OrderID == body.Data.OrderID && p.TotalAmount == body.Data.TotalAmount
	behind := p.Status.Rank() < body.Data.Status.Rank()
	if sameMoney && behind && w.now().Sub(ev.ReceivedAt) < w.lagWindow() {
		// The PG's API may lag its own webhook (a DONE before the lookup
		// shows it): ask again for a while before calling it forged, or a
		// late approval on a FAILED order would never be refunded.
		return errRetry
	}
	if !sameMoney || behind {
		// The event names another payment, or claims more than the PG's
		// record shows (DONE for a READY payment): forged, or the PG is
		// inconsistent. An operator must look.
		w.alertWebhook(log, body.Data.Status, p.Status)
		return w.Store.MarkPGEvent(ctx, ev, payment.EventRejected,
			"event says "+string(body.Data.Status)+", the PG says "+string(p.Status), orderID)
	}
	// The PG's record is at or past what the event says (a stale or
	// reordered event, e.g. DONE after a console cancel): what the record
	// says is applied, through the transition table.
	before := row.Version
	if err := w.apply(ctx, log, row, p, "webhook:"+ev.Provider, nil); errors.Is(err, errAfterCancel) {
		// Kept RECEIVED, not settled: once payrail's pending cancel has
		// settled, this news is read again (the task's retry, else the
		// sweep), so a cancel made in the PG's console is never dropped.
		log.Info("PG shows the payment cancelled while our cancel is pending; reading it again after that cancel settles")
		return err
	} else if errors.Is(err, errDepositReversed) {
		w.alertWebhook(log, body.Data.Status, p.Status)
		return w.Store.MarkPGEvent(ctx, ev, payment.EventRejected,
			"deposit reversed: the PG shows "+string(p.Status)+" for an order that is "+string(row.Status)+"; not applied, an operator must look", orderID)
	} else if err != nil && !errors.Is(err, errRetry) {
		return err
	}
	after, err := w.Store.OrderRowAnyMerchant(ctx, orderID)
	if err != nil {
		return err
	}
	state, note := payment.EventApplied, "applied: order "+string(after.Status)
	if after.Version == before {
		state, note = payment.EventIgnored, "no transition: order is "+string(after.Status)+", event says "+string(p.Status)
	}
	return w.Store.MarkPGEvent(ctx, ev, state, note, orderID)
}

// checkStoredSecret settles (REJECTED) a deposit whose secret is not the
// one the order holds; ev.State tells the caller whether it did. An event
// stored before the account was known is checked here once it is.
func (w *Webhooks) checkStoredSecret(ctx context.Context, ev *store.PGEvent, row store.OrderRow, body WebhookBody) error {
	want, stored, err := w.Store.VASecret(row)
	if err != nil || !stored || pgclient.SecretMatches(body.DepositSecret, want) {
		return err
	}
	w.alertWebhook(w.taskLog(ctx, row.OrderID), body.Data.Status, "secret mismatch")
	ev.State = payment.EventRejected
	return w.Store.MarkPGEvent(ctx, *ev, payment.EventRejected, "deposit secret does not match the order's", row.OrderID)
}

// alertWebhook reports an event the PG's record contradicts: someone posted
// a forged event, or the PG's webhook and its API disagree. Operators see it
// in the log, the metric and the event's REJECTED row.
func (w *Webhooks) alertWebhook(log *slog.Logger, eventStatus, pgStatus payment.PGStatus) {
	log.Error("webhook disagrees with the PG's record; not applied", "event_status", eventStatus, "pg_status", pgStatus)
	if w.Hooks.Task != nil {
		w.Hooks.Task("pg:webhook", "disagrees")
	}
}

// DefaultPGLagWindow is how long an event the PG's record is behind is
// looked up again before it is rejected.
const DefaultPGLagWindow = 2 * time.Minute

func (w *Webhooks) lagWindow() time.Duration {
	if w.PGLagWindow > 0 {
		return w.PGLagWindow
	}
	return DefaultPGLagWindow
}
