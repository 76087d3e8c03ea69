package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/payrail/payrail/internal/payment"
)

// This file holds what the operator console (internal/ops) and the metrics
// collectors read: cross-merchant searches, an order's whole timeline, the
// lists that need a person, and operator accounts. None of it is reachable
// by a merchant.

// Operator is a console account. PasswordHash is a bcrypt hash.
type Operator struct {
	OperatorID   string `db:"operator_id" json:"operatorId"`
	Name         string `db:"name" json:"name"`
	PasswordHash string `db:"password_hash" json:"-"`
	// Status is ACTIVE or SUSPENDED; a suspended operator cannot sign in
	// and their sessions end.
	Status    string    `db:"status" json:"status"`
	CreatedAt time.Time `db:"created_at" json:"createdAt"`
}

const operatorColumns = `operator_id, name, password_hash, status, created_at`

const sqlCreateOperator = `INSERT INTO operators (operator_id, name, password_hash) VALUES ($1, $2, $3)
RETURNING ` + operatorColumns

// CreateOperator stores a new operator; OPERATOR_ALREADY_EXISTS when the
// name is taken. The caller hashes the password.
func (s *Store) CreateOperator(ctx context.Context, name, passwordHash string) (Operator, error) {
	var op Operator
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		err := tx.GetContext(ctx, &op, sqlCreateOperator, NewID("opr_", 20), name, passwordHash)
		if isUniqueViolation(err, "") {
			return payment.Errorf(payment.CodeOperatorExists, "operator %q already exists", name)
		}
		if err != nil {
			return fmt.Errorf("insert operator: %w", err)
		}
		return s.auditTx(ctx, tx, "operator.created", "operator:"+name, nil, op)
	})
	return op, err
}

const sqlOperatorByName = `SELECT ` + operatorColumns + ` FROM operators WHERE name = $1`

// OperatorByName returns an operator; OPERATOR_NOT_FOUND when absent.
func (s *Store) OperatorByName(ctx context.Context, name string) (Operator, error) {
	var op Operator
	err := s.db.GetContext(ctx, &op, sqlOperatorByName, name)
	if errors.Is(err, sql.ErrNoRows) {
		return op, payment.Errorf(payment.CodeOperatorNotFound, "operator not found")
	}
	if err != nil {
		return op, fmt.Errorf("select operator: %w", err)
	}
	return op, nil
}

const sqlOperatorActive = `SELECT count(*) FROM operators WHERE operator_id = $1 AND status = 'ACTIVE'`

// OperatorActive reports whether the operator exists and is ACTIVE: the
// console asks on every request, so suspending or deleting an operator
// ends their sessions at once on every replica.
func (s *Store) OperatorActive(ctx context.Context, operatorID string) (bool, error) {
	var n int
	if err := s.db.GetContext(ctx, &n, sqlOperatorActive, operatorID); err != nil {
		return false, fmt.Errorf("operator status: %w", err)
	}
	return n == 1, nil
}

const sqlSetOperatorStatusSelectOperators = `SELECT status FROM operators WHERE name = $1 FOR UPDATE`

const sqlSetOperatorStatusUpdateOperators = `UPDATE operators SET status = $2 WHERE name = $1 RETURNING ` + operatorColumns

// SetOperatorStatus suspends (SUSPENDED) or reinstates (ACTIVE) an
// operator; OPERATOR_NOT_FOUND when absent.
func (s *Store) SetOperatorStatus(ctx context.Context, name, status string) (Operator, error) {
	var op Operator
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		var before string
		if err := tx.GetContext(ctx, &before, sqlSetOperatorStatusSelectOperators, name); errors.Is(err, sql.ErrNoRows) {
			return payment.Errorf(payment.CodeOperatorNotFound, "operator not found")
		} else if err != nil {
			return fmt.Errorf("select operator: %w", err)
		}
		if err := tx.GetContext(ctx, &op, sqlSetOperatorStatusUpdateOperators, name, status); err != nil {
			return fmt.Errorf("update operator: %w", err)
		}
		return s.auditTx(ctx, tx, "operator.status", "operator:"+name, map[string]string{"status": before}, map[string]string{"status": status})
	})
	return op, err
}

const sqlDeleteOperator = `DELETE FROM operators WHERE name = $1 RETURNING ` + operatorColumns

// DeleteOperator removes an operator; OPERATOR_NOT_FOUND when absent. The
// history rows they wrote keep their name.
func (s *Store) DeleteOperator(ctx context.Context, name string) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		var op Operator
		err := tx.GetContext(ctx, &op, sqlDeleteOperator, name)
		if errors.Is(err, sql.ErrNoRows) {
			return payment.Errorf(payment.CodeOperatorNotFound, "operator not found")
		}
		if err != nil {
			return fmt.Errorf("delete operator: %w", err)
		}
		return s.auditTx(ctx, tx, "operator.deleted", "operator:"+name, op, nil)
	})
}

// OrderSearch narrows SearchOrders. Query matches an orderId, a
// merchantOrderId or a paymentKey exactly.
type OrderSearch struct {
	Query          string
	Status         string
	MerchantID     string
	NeedsReconcile bool
	Limit          int
	// Before is a seq cursor (0 = newest).
	Before int64
}

const sqlSearchOrders = planPerCall + `SELECT ` + orderColumns + ` FROM orders
WHERE ($1 = '' OR order_id = $1 OR merchant_order_id = $1 OR payment_key = $1)
  AND ($2 = '' OR status = $2) AND ($3 = '' OR merchant_id = $3) AND (NOT $4 OR needs_reconciliation)
  AND ($5 = 0 OR seq < $5)
ORDER BY seq DESC LIMIT $6`

// SearchOrders returns every merchant's orders matching f, newest first.
func (s *Store) SearchOrders(ctx context.Context, f OrderSearch) ([]OrderRow, error) {
	if f.Limit <= 0 || f.Limit > 200 {
		f.Limit = 50
	}
	var rows []OrderRow
	if err := s.db.SelectContext(ctx, &rows, sqlSearchOrders, f.Query, f.Status, f.MerchantID, f.NeedsReconcile, f.Before, f.Limit); err != nil {
		return nil, fmt.Errorf("search orders: %w", err)
	}
	return rows, nil
}

// TimelineMaxLog bounds the history entries one timeline shows.
const TimelineMaxLog = 2000

// TimelineEntry is one line of an order's timeline.
type TimelineEntry struct {
	At time.Time
	// Kind is log, callback, attempt, cancel or refund.
	Kind   string
	Action string
	Actor  string
	From   string
	To     string
	// Ref names the row (callback, cancel or refund id) when there is one.
	Ref     string
	Details map[string]any
}

const sqlOrderTimelineSelectCallbacks = `SELECT callback_id, event_type, status, attempt, last_error, created_at, delivered_at
FROM callbacks WHERE order_id = $1 ORDER BY seq`

const sqlOrderTimelineSelectCallbackAttempts = `SELECT a.callback_id, a.attempt, a.started_at, a.status_code, a.latency_ms, a.error
FROM callback_attempts a JOIN callbacks c USING (callback_id) WHERE c.order_id = $1 ORDER BY a.id`

// OrderTimeline merges an order's payment_log (transitions, PG calls,
// operator actions), callbacks and each delivery attempt, cancels and
// refunds, oldest first.
func (s *Store) OrderTimeline(ctx context.Context, orderID string) ([]TimelineEntry, error) {
	var out []TimelineEntry
	// The order's history, page by page through the merchant's own reader
	// (operators keep their names here), up to TimelineMaxLog entries.
	var after int64
	for len(out) < TimelineMaxLog {
		page, next, err := s.historyPage(ctx, orderID, after, HistoryPageSize, false)
		if err != nil {
			return nil, fmt.Errorf("timeline: %w", err)
		}
		for _, l := range page {
			e := TimelineEntry{At: l.At, Kind: "log", Action: l.Action, Actor: l.Actor, Details: l.Details}
			if l.From != nil {
				e.From = string(*l.From)
			}
			if l.To != nil {
				e.To = string(*l.To)
			}
			out = append(out, e)
		}
		if next == "" {
			break
		}
		after, _ = strconv.ParseInt(next, 10, 64)
	}

	var cbs []struct {
		ID          string     `db:"callback_id"`
		Event       string     `db:"event_type"`
		Status      string     `db:"status"`
		Attempt     int        `db:"attempt"`
		LastError   *string    `db:"last_error"`
		CreatedAt   time.Time  `db:"created_at"`
		DeliveredAt *time.Time `db:"delivered_at"`
	}
	if err := s.db.SelectContext(ctx, &cbs, sqlOrderTimelineSelectCallbacks, orderID); err != nil {
		return nil, fmt.Errorf("timeline callbacks: %w", err)
	}
	for _, c := range cbs {
		d := map[string]any{"event": c.Event, "status": c.Status, "attempt": c.Attempt}
		if c.LastError != nil {
			d["lastError"] = *c.LastError
		}
		out = append(out, TimelineEntry{At: c.CreatedAt, Kind: "callback", Action: "callback." + c.Event, Actor: "system", Ref: c.ID, Details: d})
	}

	var atts []struct {
		CallbackID string    `db:"callback_id"`
		Attempt    int       `db:"attempt"`
		StartedAt  time.Time `db:"started_at"`
		StatusCode *int      `db:"status_code"`
		LatencyMS  int       `db:"latency_ms"`
		Error      *string   `db:"error"`
	}
	if err := s.db.SelectContext(ctx, &atts, sqlOrderTimelineSelectCallbackAttempts, orderID); err != nil {
		return nil, fmt.Errorf("timeline attempts: %w", err)
	}
	for _, a := range atts {
		d := map[string]any{"attempt": a.Attempt, "latencyMs": a.LatencyMS}
		if a.StatusCode != nil {
			d["httpStatus"] = *a.StatusCode
		}
		if a.Error != nil {
			d["error"] = *a.Error
		}
		out = append(out, TimelineEntry{At: a.StartedAt, Kind: "attempt", Action: "callback.attempt", Actor: "worker", Ref: a.CallbackID, Details: d})
	}

	cancels, err := s.CancelsOfOrder(ctx, orderID)
	if err != nil {
		return nil, fmt.Errorf("timeline cancels: %w", err)
	}
	for _, c := range cancels {
		d := map[string]any{"amount": c.Amount, "reason": c.Reason, "status": c.Status, "attempts": c.Attempts, "updatedAt": c.UpdatedAt.UTC()}
		if c.FailureCode != nil {
			d["failureCode"] = *c.FailureCode
		}
		out = append(out, TimelineEntry{At: c.CreatedAt, Kind: "cancel", Action: "cancel", Actor: "merchant", Ref: c.CancelID, Details: d})
	}

	refunds, err := s.RefundsOfOrder(ctx, orderID)
	if err != nil {
		return nil, fmt.Errorf("timeline refunds: %w", err)
	}
	for _, r := range refunds {
		d := map[string]any{"amount": r.Amount, "status": r.Status, "attempts": r.Attempts, "updatedAt": r.UpdatedAt.UTC()}
		if r.LastError != nil {
			d["lastError"] = *r.LastError
		}
		out = append(out, TimelineEntry{At: r.CreatedAt, Kind: "refund", Action: "refund", Actor: "system", Ref: r.RefundID, Details: d})
	}

	// The PG events a lookup contradicted: the operator's alert (forged,
	// or the PG's webhook and API disagree). The latest few suffice.
	var alerts []struct {
		Key        string    `db:"event_key"`
		Provider   string    `db:"provider"`
		Note       *string   `db:"note"`
		ReceivedAt time.Time `db:"received_at"`
	}
	if err := s.db.SelectContext(ctx, &alerts, timelineAlertsSQL, orderID); err != nil {
		return nil, fmt.Errorf("timeline alerts: %w", err)
	}
	for _, a := range alerts {
		out = append(out, TimelineEntry{At: a.ReceivedAt, Kind: "alert", Action: "alert.webhook_disagrees", Actor: "pg:" + a.Provider,
			Ref: a.Key, Details: map[string]any{"note": deref(a.Note)}})
	}

	slices.SortStableFunc(out, func(a, b TimelineEntry) int { return a.At.Compare(b.At) })
	for i := range out {
		out[i].At = out[i].At.UTC()
	}
	return out, nil
}

const timelineAlertsSQL = `SELECT event_key, provider, note, received_at FROM pg_events
WHERE order_id = $1 AND state = 'REJECTED' ORDER BY received_at DESC LIMIT 20`

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// CallbackRow is a callback as operators see it.
type CallbackRow struct {
	CallbackID    string    `db:"callback_id"`
	MerchantID    string    `db:"merchant_id"`
	OrderID       string    `db:"order_id"`
	EventType     string    `db:"event_type"`
	Status        string    `db:"status"`
	Attempt       int       `db:"attempt"`
	NextAttemptAt time.Time `db:"next_attempt_at"`
	LastError     *string   `db:"last_error"`
	CreatedAt     time.Time `db:"created_at"`
}

const sqlFailingCallbacks = `SELECT callback_id, merchant_id, order_id, event_type, status, attempt, next_attempt_at, last_error, created_at
FROM callbacks WHERE status = 'DEAD' OR (status = 'PENDING' AND last_error IS NOT NULL)
ORDER BY seq DESC LIMIT $1`

// FailingCallbacks returns DEAD callbacks and PENDING ones that have failed
// at least once, newest first.
func (s *Store) FailingCallbacks(ctx context.Context, limit int) ([]CallbackRow, error) {
	var rows []CallbackRow
	err := s.db.SelectContext(ctx, &rows, sqlFailingCallbacks, limit)
	if err != nil {
		return nil, fmt.Errorf("failing callbacks: %w", err)
	}
	return rows, nil
}

const sqlRedeliverCallbackAsOperator = `SELECT status, attempt FROM callbacks WHERE callback_id = $1 FOR UPDATE`

// RedeliverCallbackAsOperator makes a callback due now, as
// RedeliverCallback does for a merchant (a DEAD or DELIVERED callback
// becomes PENDING in a new attempt generation, a PENDING one is only made
// due), and records who asked in the order's history in the same
// transaction. It returns the callback with the attempt to enqueue after
// commit. CALLBACK_NOT_FOUND when absent.
func (s *Store) RedeliverCallbackAsOperator(ctx context.Context, callbackID, actor string) (CallbackRow, error) {
	var row CallbackRow
	err := s.inOutboxTx(ctx, func(tx *sqlx.Tx, ob *outbox) error {
		var prev struct {
			Status  string `db:"status"`
			Attempt int    `db:"attempt"`
		}
		err := tx.GetContext(ctx, &prev, sqlRedeliverCallbackAsOperator, callbackID)
		if errors.Is(err, sql.ErrNoRows) {
			return payment.Errorf(payment.CodeCallbackNotFound, "callback not found")
		}
		if err != nil {
			return fmt.Errorf("select callback: %w", err)
		}
		err = tx.GetContext(ctx, &row, sqlRedeliverCallback+`RETURNING callback_id, merchant_id, order_id, event_type, status, attempt, next_attempt_at, last_error, created_at`,
			callbackID, "", s.now(), CallbackGeneration)
		if err != nil {
			return fmt.Errorf("redeliver callback: %w", err)
		}
		if err := wakeLaneTx(ctx, tx, ob, row.MerchantID, s.now()); err != nil {
			return err
		}
		if err := s.auditTx(ctx, tx, "callback.redelivered", callbackID, map[string]any{"status": prev.Status, "attempt": prev.Attempt},
			map[string]any{"status": row.Status, "attempt": row.Attempt, "orderId": row.OrderID, "merchantId": row.MerchantID}); err != nil {
			return err
		}
		return appendLogTx(ctx, tx, row.OrderID, "ops.callback_redeliver", nil, nil, actor, map[string]any{
			"callbackId": callbackID, "event": row.EventType, "previousStatus": prev.Status, "previousAttempt": prev.Attempt, "attempt": row.Attempt})
	})
	return row, err
}

const sqlStuckConfirms = `SELECT ` + orderColumns + ` FROM orders
WHERE status = 'CONFIRMING' AND (needs_reconciliation OR next_check_at < $1)
ORDER BY confirm_requested_at LIMIT $2`

// StuckConfirms returns CONFIRMING orders flagged for reconciliation or
// overdue for their next check, oldest first.
func (s *Store) StuckConfirms(ctx context.Context, limit int) ([]OrderRow, error) {
	var rows []OrderRow
	err := s.db.SelectContext(ctx, &rows, sqlStuckConfirms, s.now(), limit)
	if err != nil {
		return nil, fmt.Errorf("stuck confirms: %w", err)
	}
	return rows, nil
}

// PendingRefund is an automatic refund or a merchant cancel still waiting
// for the PG.
type PendingRefund struct {
	Kind      string    `db:"kind"` // refund or cancel
	ID        string    `db:"id"`
	OrderID   string    `db:"order_id"`
	Amount    int64     `db:"amount"`
	Attempts  int       `db:"attempts"`
	LastError *string   `db:"last_error"`
	CreatedAt time.Time `db:"created_at"`
	// NeedsReconciliation: a cancel whose PG outcome stayed unknown past
	// the session window; its amount stays held until the lookup decides.
	NeedsReconciliation bool `db:"needs_reconciliation"`
}

const sqlPendingRefunds = `
SELECT 'refund' AS kind, refund_id AS id, order_id, amount, attempts, last_error, created_at, false AS needs_reconciliation FROM refunds WHERE status = 'PENDING'
UNION ALL
SELECT 'cancel', cancel_id, order_id, amount, attempts, failure_message, created_at, needs_reconciliation FROM cancels WHERE status = 'PENDING'
ORDER BY needs_reconciliation DESC, created_at LIMIT $1`

// PendingRefunds lists refunds and cancels not yet confirmed by the PG,
// those flagged for reconciliation first, then oldest first.
func (s *Store) PendingRefunds(ctx context.Context, limit int) ([]PendingRefund, error) {
	var rows []PendingRefund
	err := s.db.SelectContext(ctx, &rows, sqlPendingRefunds, limit)
	if err != nil {
		return nil, fmt.Errorf("pending refunds: %w", err)
	}
	return rows, nil
}

// MerchantTotal is one merchant's paid orders since a moment.
type MerchantTotal struct {
	MerchantID      string `db:"merchant_id"`
	Name            string `db:"name"`
	Status          string `db:"status"`
	CallbackEnabled bool   `db:"callback_enabled"`
	CallbackURL     string `db:"callback_url"`
	PaidCount       int64  `db:"paid_count"`
	PaidAmount      int64  `db:"paid_amount"`
}

const sqlMerchantTotalsSince = `
SELECT m.merchant_id, m.name, m.status, m.callback_enabled, m.callback_url,
       count(o.order_id) AS paid_count, COALESCE(sum(o.amount), 0)::bigint AS paid_amount
FROM merchants m
LEFT JOIN orders o ON o.merchant_id = m.merchant_id AND o.approved_at >= $1
    AND o.status IN ('PAID', 'PARTIALLY_CANCELED', 'CANCELED')
GROUP BY m.merchant_id
ORDER BY paid_amount DESC, m.name`

// MerchantTotalsSince returns every merchant with the count and sum of its
// orders approved by the PG since `since` (PAID, including those canceled
// since), busiest first.
func (s *Store) MerchantTotalsSince(ctx context.Context, since time.Time) ([]MerchantTotal, error) {
	var rows []MerchantTotal
	err := s.db.SelectContext(ctx, &rows, sqlMerchantTotalsSince, since)
	if err != nil {
		return nil, fmt.Errorf("merchant totals: %w", err)
	}
	return rows, nil
}

// StateCounts are the rows in the states an operator watches: orders not
// yet settled (CREATED, CONFIRMING, AWAITING_DEPOSIT) and callbacks not delivered (PENDING,
// DEAD). Settled orders and delivered callbacks are not counted: they are
// business volume, grow without bound, and no partial index serves them.
type StateCounts struct {
	Orders    map[string]int64
	Callbacks map[string]int64
	// Breakers counts endpoints with an open breaker ("open") and with
	// failing attempts ("failing", open or not).
	Breakers map[string]int64
	// PendingByMerchant is the PENDING backlog of the 20 merchants with the
	// most (bounded label cardinality).
	PendingByMerchant map[string]int64
	// Recon is the last successful reconciliation: "last_success" (Unix
	// seconds, 0 when none) and its items as "CLASS:repaired" or
	// "CLASS:attention".
	Recon map[string]int64
}

// countInFlight is served by partial indexes only (orders_created_expiry,
// orders_confirming, orders_awaiting_deposit, callbacks_due,
// callbacks_dead), never a table scan; the reconciliation rows are one
// run's (recon_runs is a row a day).
const countInFlight = `
SELECT 'orders', 'CREATED', count(*) FROM orders WHERE status = 'CREATED'
UNION ALL SELECT 'orders', 'CONFIRMING', count(*) FROM orders WHERE status = 'CONFIRMING'
UNION ALL SELECT 'orders', 'AWAITING_DEPOSIT', count(*) FROM orders WHERE status = 'AWAITING_DEPOSIT'
UNION ALL SELECT 'callbacks', 'PENDING', count(*) FROM callbacks WHERE status = 'PENDING'
UNION ALL SELECT 'callbacks', 'DEAD', count(*) FROM callbacks WHERE status = 'DEAD'
UNION ALL SELECT 'breakers', 'open', count(*) FROM callback_endpoints WHERE open_until IS NOT NULL
UNION ALL SELECT 'breakers', 'failing', count(*) FROM callback_endpoints WHERE failing_since IS NOT NULL
UNION ALL (SELECT 'merchant_pending', merchant_id, count(*) FROM callbacks WHERE status = 'PENDING' GROUP BY merchant_id ORDER BY 3 DESC LIMIT 20)
UNION ALL SELECT 'recon', 'last_success', COALESCE(EXTRACT(EPOCH FROM max(finished_at)), 0)::bigint FROM recon_runs WHERE status = 'SUCCEEDED'
UNION ALL (SELECT 'recon', class || CASE WHEN needs_attention THEN ':attention' ELSE ':repaired' END, count(*) FROM recon_items
    WHERE run_id = (SELECT run_id FROM recon_runs WHERE status = 'SUCCEEDED' ORDER BY finished_at DESC LIMIT 1) GROUP BY 2)`

// CountInFlight returns the StateCounts in one read-only statement on one
// connection, cut off after timeout (statement_timeout) so a slow count
// never holds a pool connection for long. Errors are the database's.
func (s *Store) CountInFlight(ctx context.Context, timeout time.Duration) (StateCounts, error) {
	out := StateCounts{Orders: map[string]int64{}, Callbacks: map[string]int64{}, Breakers: map[string]int64{}, PendingByMerchant: map[string]int64{}, Recon: map[string]int64{}}
	tx, err := s.db.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return out, fmt.Errorf("count in flight: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`SET LOCAL statement_timeout = %d`, max(1, timeout.Milliseconds()))); err != nil {
		return out, fmt.Errorf("count in flight: %w", err)
	}
	rows, err := tx.QueryContext(ctx, countInFlight)
	if err != nil {
		return out, fmt.Errorf("count in flight: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, status string
		var n int64
		if err := rows.Scan(&kind, &status, &n); err != nil {
			return out, fmt.Errorf("count in flight: %w", err)
		}
		switch kind {
		case "orders":
			out.Orders[status] = n
		case "callbacks":
			out.Callbacks[status] = n
		case "breakers":
			out.Breakers[status] = n
		case "recon":
			out.Recon[status] = n
		default:
			out.PendingByMerchant[status] = n
		}
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("count in flight: %w", err)
	}
	return out, tx.Commit()
}

// DeliveryAttempt is one callback attempt as metrics see it.
type DeliveryAttempt struct {
	ID         int64      `db:"id"`
	StatusCode *int       `db:"status_code"`
	Error      *string    `db:"error"`
	StartedAt  time.Time  `db:"started_at"`
	LatencyMS  int        `db:"latency_ms"`
	EventType  string     `db:"event_type"`
	ApprovedAt *time.Time `db:"approved_at"`
}

// Delivered reports whether the merchant answered 2xx.
func (a DeliveryAttempt) Delivered() bool {
	return a.StatusCode != nil && *a.StatusCode >= 200 && *a.StatusCode < 300
}

// AckedAt is when the merchant's answer arrived.
func (a DeliveryAttempt) AckedAt() time.Time {
	return a.StartedAt.Add(time.Duration(a.LatencyMS) * time.Millisecond)
}

const sqlCallbackAttemptsAfter = `SELECT a.id, a.status_code, a.error, a.started_at, a.latency_ms, c.event_type, o.approved_at
FROM callback_attempts a JOIN callbacks c USING (callback_id) JOIN orders o ON o.order_id = c.order_id
WHERE a.id > $1 ORDER BY a.id LIMIT $2`

// CallbackAttemptsAfter returns up to limit callback attempts with id >
// afterID, oldest first, with the approval time of their order. Rows of
// transactions that commit out of id order can be skipped: this feeds
// metrics, not money.
func (s *Store) CallbackAttemptsAfter(ctx context.Context, afterID int64, limit int) ([]DeliveryAttempt, error) {
	var rows []DeliveryAttempt
	err := s.db.SelectContext(ctx, &rows, sqlCallbackAttemptsAfter, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("callback attempts: %w", err)
	}
	return rows, nil
}

const sqlLastCallbackAttemptID = `SELECT COALESCE(max(id), 0) FROM callback_attempts`

// LastCallbackAttemptID is the newest attempt id (0 when none), where a
// metrics cursor starts.
func (s *Store) LastCallbackAttemptID(ctx context.Context) (int64, error) {
	var id int64
	err := s.db.GetContext(ctx, &id, sqlLastCallbackAttemptID)
	return id, err
}
