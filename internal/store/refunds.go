package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/payrail/payrail/internal/payment"
)

// Refund is the automatic refund of a PG approval that arrived for an order
// that can no longer be paid (EXPIRED or FAILED).
type Refund struct {
	RefundID         string               `json:"refundId" db:"refund_id"`
	OrderID          string               `json:"orderId" db:"order_id"`
	PaymentKey       string               `json:"paymentKey" db:"payment_key"`
	Amount           int64                `json:"amount" db:"amount"`
	Status           payment.RefundStatus `json:"status" db:"status"`
	PGIdempotencyKey string               `json:"-" db:"pg_idempotency_key"`
	Attempts         int                  `json:"attempts" db:"attempts"`
	LastError        *string              `json:"lastError" db:"last_error"`
	NextAttemptAt    time.Time            `json:"nextAttemptAt" db:"next_attempt_at"`
	CreatedAt        time.Time            `json:"createdAt" db:"created_at"`
	UpdatedAt        time.Time            `json:"updatedAt" db:"updated_at"`
}

const refundColumns = `refund_id, order_id, payment_key, amount, status, pg_idempotency_key, attempts, last_error, next_attempt_at, created_at, updated_at`

const sqlCreateRefundInsertRefunds = `INSERT INTO refunds (refund_id, order_id, payment_key, amount, pg_idempotency_key, next_attempt_at)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (payment_key) DO NOTHING`

const sqlCreateRefundSelectRefunds = `SELECT ` + refundColumns + ` FROM refunds WHERE payment_key = $1`

// CreateRefund records (once per paymentKey) that an approval must be
// refunded, with a history row. created is false when it already existed.
func (s *Store) CreateRefund(ctx context.Context, orderID, paymentKey string, amount int64, source string) (r Refund, created bool, err error) {
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		id := NewID("rfd_", 20)
		res, err := tx.ExecContext(ctx, sqlCreateRefundInsertRefunds, id, orderID, paymentKey, amount, payment.CancelIdempotencyKey(id), s.now())
		if err != nil {
			return fmt.Errorf("insert refund: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			created = true
			if err := appendLogTx(ctx, tx, orderID, "refund.scheduled", nil, nil, "worker", map[string]any{"refundId": id, "paymentKey": paymentKey, "amount": amount, "source": source, "reason": "PG approval arrived for an order that can no longer be paid"}); err != nil {
				return err
			}
		}
		return tx.GetContext(ctx, &r, sqlCreateRefundSelectRefunds, paymentKey)
	})
	return r, created, err
}

const sqlRefundByID = `SELECT ` + refundColumns + ` FROM refunds WHERE refund_id = $1`

// RefundByID returns a refund; ErrNotFound when absent.
func (s *Store) RefundByID(ctx context.Context, id string) (Refund, error) {
	var r Refund
	err := s.db.GetContext(ctx, &r, sqlRefundByID, id)
	return r, notFound(err)
}

const sqlRefundsOfOrder = `SELECT ` + refundColumns + ` FROM refunds WHERE order_id = $1 ORDER BY created_at`

// RefundsOfOrder lists an order's refunds.
func (s *Store) RefundsOfOrder(ctx context.Context, orderID string) ([]Refund, error) {
	var rs []Refund
	err := s.db.SelectContext(ctx, &rs, sqlRefundsOfOrder, orderID)
	return rs, err
}

const sqlRecordRefundAttempt = `UPDATE refunds SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3, updated_at = now() WHERE refund_id = $1 AND (status = 'PENDING') IS TRUE` // by primary key only (package doc)

// RecordRefundAttempt notes a refund attempt that did not settle and when
// the sweep should try again.
func (s *Store) RecordRefundAttempt(ctx context.Context, r Refund, outcome, code string, next time.Time) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		msg := outcome + " " + code
		if _, err := tx.ExecContext(ctx, sqlRecordRefundAttempt, r.RefundID, msg, next); err != nil {
			return err
		}
		return appendLogTx(ctx, tx, r.OrderID, "pg.refund", nil, nil, "worker", map[string]any{"refundId": r.RefundID, "outcome": outcome, "code": code})
	})
}

const sqlCompleteRefundSelectRefunds = `SELECT ` + refundColumns + ` FROM refunds WHERE refund_id = $1 FOR UPDATE`

const sqlCompleteRefundUpdateRefunds = `UPDATE refunds SET status = 'SUCCEEDED', attempts = attempts + 1, updated_at = now() WHERE refund_id = $1`

const sqlCompleteRefundUpdateOrders = `UPDATE orders SET version = version + 1, updated_at = now() WHERE order_id = $1 AND version = $2 RETURNING ` + orderColumns

// CompleteRefund marks a refund done, with its history row and the
// payment.refunded_late_approval callback, in one transaction. ok is false
// when it was already done.
func (s *Store) CompleteRefund(ctx context.Context, refundID string) (ok bool, err error) {
	err = s.inOutboxTx(ctx, func(tx *sqlx.Tx, ob *outbox) error {
		var r Refund
		if err := tx.GetContext(ctx, &r, sqlCompleteRefundSelectRefunds, refundID); err != nil {
			return err
		}
		if r.Status != payment.RefundPending {
			return nil
		}
		ok = true
		if _, err := tx.ExecContext(ctx, sqlCompleteRefundUpdateRefunds, refundID); err != nil {
			return err
		}
		// The refund is a change of the order: a new version, so a merchant
		// that drops callbacks with version <= the last it saw still gets
		// payment.refunded_late_approval after the payment.failed/expired
		// that came before it.
		cur, err := s.orderRow(ctx, tx, anyMerchant, r.OrderID, true)
		if err != nil {
			return err
		}
		var row OrderRow
		// Fenced like every versioned change; the row lock above holds it.
		if err := tx.GetContext(ctx, &row, sqlCompleteRefundUpdateOrders,
			r.OrderID, cur.Version); errors.Is(err, sql.ErrNoRows) {
			return ErrVersionConflict
		} else if err != nil {
			return fmt.Errorf("refund %s: bump order version: %w", refundID, err)
		}
		if err := appendLogTx(ctx, tx, r.OrderID, "refund.succeeded", nil, nil, "worker",
			map[string]any{"refundId": refundID, "paymentKey": r.PaymentKey, "amount": r.Amount, "version": row.Version}); err != nil {
			return err
		}
		o := row.Order()
		return insertCallbackTx(ctx, tx, ob, s.now(), o, o.Status, payment.EventRefundedLateApproval)
	})
	return ok, err
}

const sqlDueRefunds = `UPDATE refunds SET next_attempt_at = $3 WHERE refund_id IN (
    SELECT refund_id FROM refunds WHERE status = 'PENDING' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING ` + refundColumns

// DueRefunds returns PENDING refunds whose next attempt is due, pushing it
// back by `again` so one sweep hands each out once.
func (s *Store) DueRefunds(ctx context.Context, limit int, again time.Duration) ([]Refund, error) {
	var rs []Refund
	err := s.db.SelectContext(ctx, &rs, sqlDueRefunds, s.now(), limit, s.now().Add(again))
	return rs, err
}
