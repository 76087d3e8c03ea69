// Package queue defines payrail's asynq tasks in one place: their type names,
// payloads, task IDs (which carry a generation, DESIGN rule 7) and queues.
// It owns enqueueing; it never decides payment state.
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Task types.
const (
	TypeConfirm   = "payment:confirm"
	TypeReconcile = "payment:reconcile"
	TypeCancel    = "payment:cancel"
	TypeRefund    = "payment:refund"
	TypeWebhook   = "pg:webhook"
	// TypeCallbackLane is one turn of a merchant's delivery lane.
	TypeCallbackLane = "callback:lane"
	// TypeCallback is the per-callback trigger of releases before lanes;
	// a worker drops any still queued (the sweep wakes their lanes).
	TypeCallback = "callback:deliver"
	TypeSweep    = "sweep:tick"
	// TypeRecon reconciles one window with the PG's books.
	TypeRecon = "recon:run"
)

// Queues, by priority. Confirm work never waits behind callbacks.
const (
	QueuePayments = "payments"
	// QueuePaymentsBulk holds a merchant's confirms beyond its fair share
	// of QueuePayments (see Fair).
	QueuePaymentsBulk = "payments_bulk"
	// QueuePaymentsFlood holds a merchant's tasks beyond FloodFactor × its
	// share: served after bulk.
	QueuePaymentsFlood = "payments_flood"
	QueueCallbacks     = "callbacks"
	QueueMaintenance   = "maintenance"
)

// Priorities are asynq's weighted queue priorities.
var Priorities = map[string]int{QueuePayments: 6, QueueCallbacks: 3, QueuePaymentsBulk: 2, QueuePaymentsFlood: 1, QueueMaintenance: 1}

// PaymentQueues are the queues a merchant's confirms and PG webhooks wait
// in (see Fair), most favoured first.
var PaymentQueues = []string{QueuePayments, QueuePaymentsBulk, QueuePaymentsFlood}

// OrderPayload names an order at a version.
type OrderPayload struct {
	OrderID string `json:"orderId"`
	Version int    `json:"version"`
	// MerchantID is set on a merchant's confirm, whose outstanding entry
	// (Fair) the worker ends.
	MerchantID string `json:"merchantId,omitempty"`
	// Accepted is set on the confirm the accept enqueues: the order as it
	// left it, sealed by the store (store.SealAccepted), which the task's
	// first run reads instead of PostgreSQL.
	Accepted string `json:"accepted,omitempty"`
}

// IDPayload names one row (a cancel, refund, webhook event or callback).
type IDPayload struct {
	ID      string `json:"id"`
	Attempt int    `json:"attempt,omitempty"`
	// MerchantID is set on a PG webhook whose fair-share entry the worker ends.
	MerchantID string `json:"merchantId,omitempty"`
}

// SweepPayload names one tick of the periodic sweep.
type SweepPayload struct {
	Tick int64 `json:"tick"`
}

// Decode unmarshals a payload; an undecodable one can never succeed, so it
// is wrapped in asynq.SkipRetry.
func Decode(t *asynq.Task, v any) error {
	if err := json.Unmarshal(t.Payload(), v); err != nil {
		return fmt.Errorf("decode %s payload: %v: %w", t.Type(), err, asynq.SkipRetry)
	}
	return nil
}

// Client enqueues tasks.
type Client struct {
	c *asynq.Client
	// MaxRetry bounds asynq's own retries; payrail keeps the real retry
	// budget in PostgreSQL, so this is only a backstop.
	MaxRetry int
	// Fair, when set, orders confirms fairly across merchants.
	Fair *Fair
	// Inspector, when set, answers LaneTaskLost.
	Inspector *asynq.Inspector
	// Redis, when set, answers LanesWaiting.
	Redis redis.UniversalClient
	// Wake, when set, is called after each enqueue (a PUBLISH on
	// WakeChannel, for idle workers' IdleGate).
	Wake func(ctx context.Context, queue string)
}

// NewClient wraps an asynq client.
func NewClient(c *asynq.Client) *Client { return &Client{c: c, MaxRetry: 1000} }

// Close closes the underlying client.
func (c *Client) Close() error { return c.c.Close() }

func (c *Client) enqueue(ctx context.Context, typ, id, queue string, payload any, opts ...asynq.Option) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	opts = append([]asynq.Option{asynq.TaskID(id), asynq.Queue(queue), asynq.MaxRetry(c.MaxRetry)}, opts...)
	_, err = c.c.EnqueueContext(ctx, asynq.NewTask(typ, b), opts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		// The same generation is already queued: that is the goal.
		return nil
	}
	if err != nil {
		return fmt.Errorf("enqueue %s: %w", id, err)
	}
	if c.Wake != nil {
		c.Wake(ctx, queue)
	}
	return nil
}

// Confirm enqueues the confirm of merchantID's order that entered CONFIRMING
// at version (as accepted, when set, says): in QueuePayments while the
// merchant is within its fair share, else in QueuePaymentsBulk (see Fair;
// Redis failing to count means QueuePayments).
func (c *Client) Confirm(ctx context.Context, merchantID, orderID string, version int, accepted string) error {
	q, _ := c.Fair.queueFor(ctx, merchantID, orderID)
	return c.enqueue(ctx, TypeConfirm, "confirm:"+orderID+":"+strconv.Itoa(version), q, OrderPayload{OrderID: orderID, Version: version, MerchantID: merchantID, Accepted: accepted})
}

// FairDone ends the outstanding entry of a finished confirm (member: the
// order) or PG webhook (member: WebhookMember); a no-op without Fair or
// for a task the sweep re-enqueued (no merchant).
func (c *Client) FairDone(ctx context.Context, merchantID, member string) error {
	return c.Fair.done(ctx, merchantID, member)
}

// WebhookMember is a PG webhook's entry in its merchant's fair share.
func WebhookMember(provider, eventKey string) string { return "webhook:" + provider + ":" + eventKey }

// ConfirmAgain re-enqueues a confirm the sweep found stuck. gen (the sweep's
// tick) makes a new task ID, so an orphaned task of a killed worker, whose ID
// asynq keeps until its lease expires, does not block the retry. The lock, the
// version fence and the PG idempotency key make a second run harmless.
func (c *Client) ConfirmAgain(ctx context.Context, orderID string, version int, g int64) error {
	return c.enqueue(ctx, TypeConfirm, "confirm:"+orderID+":"+strconv.Itoa(version)+gen(g), QueuePayments, OrderPayload{OrderID: orderID, Version: version})
}

// ReconcileAgain is ConfirmAgain for lookups.
func (c *Client) ReconcileAgain(ctx context.Context, orderID string, version int, g int64) error {
	return c.enqueue(ctx, TypeReconcile, "reconcile:"+orderID+":"+strconv.Itoa(version)+gen(g), QueuePayments, OrderPayload{OrderID: orderID, Version: version})
}

// Reconcile enqueues a PG lookup for an order whose confirm outcome is unknown.
func (c *Client) Reconcile(ctx context.Context, orderID string, version int, delay time.Duration) error {
	return c.enqueue(ctx, TypeReconcile, "reconcile:"+orderID+":"+strconv.Itoa(version), QueuePayments, OrderPayload{OrderID: orderID, Version: version}, asynq.ProcessIn(delay))
}

// Cancel enqueues a merchant cancel.
func (c *Client) Cancel(ctx context.Context, cancelID string) error {
	return c.enqueue(ctx, TypeCancel, "cancel:"+cancelID, QueuePayments, IDPayload{ID: cancelID})
}

// CancelAgain re-enqueues a cancel the sweep found stale.
func (c *Client) CancelAgain(ctx context.Context, cancelID string, g int64) error {
	return c.enqueue(ctx, TypeCancel, "cancel:"+cancelID+gen(g), QueuePayments, IDPayload{ID: cancelID})
}

// WebhookAgain re-enqueues a stored webhook whose enqueue was lost.
func (c *Client) WebhookAgain(ctx context.Context, provider, eventKey string, g int64) error {
	return c.enqueue(ctx, TypeWebhook, "webhook:"+provider+":"+eventKey+gen(g), QueuePayments, IDPayload{ID: provider + ":" + eventKey})
}

// Refund enqueues the automatic refund of a late approval, one per attempt.
func (c *Client) Refund(ctx context.Context, refundID string, attempt int) error {
	return c.enqueue(ctx, TypeRefund, "refund:"+refundID+":"+strconv.Itoa(attempt), QueuePayments, IDPayload{ID: refundID, Attempt: attempt})
}

// RefundAgain re-enqueues a refund the sweep found due, under a new
// generation: a killed worker's task keeps the plain ID until asynq's lease
// recovery, which would hold the refund back; the order lock, the lookup and
// the refund's PG idempotency key make a second run harmless.
func (c *Client) RefundAgain(ctx context.Context, refundID string, attempt int, g int64) error {
	return c.enqueue(ctx, TypeRefund, "refund:"+refundID+":"+strconv.Itoa(attempt)+gen(g), QueuePayments, IDPayload{ID: refundID, Attempt: attempt})
}

// Webhook enqueues the application of a stored PG webhook event about one of
// merchantID's orders. It shares the merchant's fair share with its
// confirms: the PG announces every payment, so a merchant's flood of
// payments is as many webhooks, which must not queue ahead of another
// merchant's confirm either.
func (c *Client) Webhook(ctx context.Context, merchantID, provider, eventKey string) error {
	q, _ := c.Fair.queueFor(ctx, merchantID, WebhookMember(provider, eventKey))
	return c.enqueue(ctx, TypeWebhook, "webhook:"+provider+":"+eventKey, q, IDPayload{ID: provider + ":" + eventKey, MerchantID: merchantID})
}

// LanePayload names one turn (generation) of a merchant's delivery lane.
type LanePayload struct {
	MerchantID string `json:"merchantId"`
	Gen        int64  `json:"gen"`
}

// CallbackLane enqueues turn gen of a merchant's delivery lane. There is at
// most one live generation per merchant (PostgreSQL's callback_endpoints),
// so the callbacks queue holds at most one lane task per merchant.
func (c *Client) CallbackLane(ctx context.Context, merchantID string, gen int64) error {
	return c.enqueue(ctx, TypeCallbackLane, "lane:"+merchantID+":"+strconv.FormatInt(gen, 10), QueueCallbacks, LanePayload{merchantID, gen})
}

// LaneTaskLost reports whether Redis holds no task for the lane's
// generation in any state (pending, active, scheduled, retry). Without an
// Inspector it cannot tell, and says not lost.
func (c *Client) LaneTaskLost(ctx context.Context, merchantID string, gen int64) (bool, error) {
	if c.Inspector == nil {
		return false, nil
	}
	_, err := c.Inspector.GetTaskInfo(QueueCallbacks, "lane:"+merchantID+":"+strconv.FormatInt(gen, 10))
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return true, nil
	}
	return false, fmt.Errorf("inspect lane task: %w", err)
}

// LanesWaiting reports whether lane tasks are waiting in the callbacks
// queue for a worker (one LLEN, against the ~18 commands of a task's
// enqueue, dequeue and completion). Without Redis it says yes, so a lane
// never holds on to its task.
func (c *Client) LanesWaiting(ctx context.Context) (bool, error) {
	if c.Redis == nil {
		return true, nil
	}
	n, err := c.Redis.LLen(ctx, "asynq:{"+QueueCallbacks+"}:pending").Result()
	if err != nil {
		return true, fmt.Errorf("lanes waiting: %w", err)
	}
	return n > 0, nil
}

// Sweep enqueues one tick of the periodic sweep. The tick's task ID is kept
// (retention) for a while, so two workers enqueueing the same tick run it once.
func (c *Client) Sweep(ctx context.Context, tick int64, retention time.Duration) error {
	return c.enqueue(ctx, TypeSweep, "sweep:"+strconv.FormatInt(tick, 10), QueueMaintenance, SweepPayload{Tick: tick},
		asynq.Retention(retention), asynq.MaxRetry(0))
}

// ReconPayload names a reconciliation: a run already recorded (RunID,
// from the admin API or the console), or the daily window to record and
// run (From, To, no RunID).
type ReconPayload struct {
	RunID   string    `json:"runId,omitempty"`
	From    time.Time `json:"from,omitempty"`
	To      time.Time `json:"to,omitempty"`
	Trigger string    `json:"trigger,omitempty"`
}

// reconTimeout bounds one run (a million PG rows take minutes).
const reconTimeout = 2 * time.Hour

// Recon enqueues a recorded run. Asking again while its task is queued is
// one task (the ID); once that task is gone (no retention) it enqueues a
// new one, which takes the run over if its worker died. A task finding the
// run busy elsewhere is retried with the reconcile backoff, enough times
// to outlast store.ReconStale.
func (c *Client) Recon(ctx context.Context, runID string) error {
	return c.enqueue(ctx, TypeRecon, "recon:"+runID, QueueMaintenance, ReconPayload{RunID: runID},
		asynq.Timeout(reconTimeout), asynq.MaxRetry(10))
}

// ReconDaily enqueues the daily run of the UTC day starting at day. Its
// task ID is the day and is kept for retention, so the workers' ticks
// enqueue it once per retention; the handler records the run only if that
// day has no successful or live one, so a failed day is tried again at the
// next retention.
func (c *Client) ReconDaily(ctx context.Context, day time.Time, retention time.Duration) error {
	day = day.UTC().Truncate(24 * time.Hour)
	return c.enqueue(ctx, TypeRecon, "recon:daily:"+day.Format("2006-01-02"), QueueMaintenance,
		ReconPayload{From: day, To: day.Add(24 * time.Hour), Trigger: "daily"},
		asynq.Timeout(reconTimeout), asynq.MaxRetry(0), asynq.Retention(retention))
}

// gen renders a sweep generation as a task-ID suffix.
func gen(g int64) string { return ":g" + strconv.FormatInt(g, 10) }

// IsSweepGeneration reports whether a task ID was made by a sweep's
// re-enqueue (it ends in ":g<number>").
func IsSweepGeneration(taskID string) bool {
	i := strings.LastIndex(taskID, ":g")
	if i < 0 || i+2 == len(taskID) {
		return false
	}
	for _, c := range taskID[i+2:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
