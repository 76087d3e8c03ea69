package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/payrail/payrail/internal/payment"
)

// PGCall records one call to the PG about a confirming order.
type PGCall struct {
	OrderID string
	Version int
	Action  string // pg.confirm, pg.lookup
	Attempt int
	Outcome string
	Code    string
	Message string
	Status  int
	Latency time.Duration
	// Unknown marks that the PG may have acted without our knowing: any
	// later decline must be checked by a lookup.
	Unknown bool
	// NeedsReconciliation flags the order for operators.
	NeedsReconciliation bool
	// NextCheckAt is when the sweep may look at the order again.
	NextCheckAt time.Time
}

const sqlRecordPGCall = `UPDATE orders SET
    confirm_attempts = confirm_attempts + CASE WHEN $3 = 'pg.confirm' THEN 1 ELSE 0 END,
    outcome_unknown = outcome_unknown OR $4,
    needs_reconciliation = needs_reconciliation OR $5,
    next_check_at = $6
WHERE order_id = $1 AND version = $2 AND (status IN ('CONFIRMING', 'AWAITING_DEPOSIT')) IS TRUE` // by primary key only (package doc)

// RecordPGCall writes the call to the order's history and updates the
// order's retry bookkeeping, fenced on version and CONFIRMING (or
// AWAITING_DEPOSIT, for the due-date lookups) so a moved
// order is never touched. It does not change the status.
func (s *Store) RecordPGCall(ctx context.Context, c PGCall) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := appendLogTx(ctx, tx, c.OrderID, c.Action, nil, nil, "worker", c.details()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, sqlRecordPGCall, c.OrderID, c.Version, c.Action, c.Unknown, c.NeedsReconciliation, c.NextCheckAt)
		if err != nil {
			return fmt.Errorf("record pg call: %w", err)
		}
		return nil
	})
}

func (c *PGCall) details() map[string]any {
	details := map[string]any{"attempt": c.Attempt, "outcome": c.Outcome, "latencyMs": c.Latency.Milliseconds()}
	if c.Code != "" {
		details["code"] = c.Code
		details["message"] = c.Message
	}
	if c.Status != 0 {
		details["httpStatus"] = c.Status
	}
	if c.NeedsReconciliation {
		details["needsReconciliation"] = true
	}
	return details
}

// confirmDelta is how much a call adds to the order's confirm attempts.
func (c *PGCall) confirmDelta() int {
	if c != nil && c.Action == "pg.confirm" {
		return 1
	}
	return 0
}

// OrderRef names an order at a version.
type OrderRef struct {
	OrderID             string `db:"order_id"`
	Version             int    `db:"version"`
	NeedsReconciliation bool   `db:"needs_reconciliation"`
}

const sqlClaimDueConfirms = `UPDATE orders SET next_check_at = $3
WHERE order_id IN (
    SELECT order_id FROM orders WHERE status = 'CONFIRMING' AND next_check_at <= $1
    ORDER BY next_check_at LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING order_id, version, needs_reconciliation`

// ClaimDueConfirms returns CONFIRMING orders whose next check is due (their
// task may have been lost with Redis, or a worker crashed) and pushes their
// next check back by `again`, so one sweep hands each out once.
func (s *Store) ClaimDueConfirms(ctx context.Context, limit int, again time.Duration) ([]OrderRef, error) {
	var refs []OrderRef
	err := s.db.SelectContext(ctx, &refs, sqlClaimDueConfirms, s.now(), limit, s.now().Add(again))
	if err != nil {
		return nil, fmt.Errorf("claim due confirms: %w", err)
	}
	return refs, nil
}

const sqlDueExpiries = `SELECT order_id, version, false AS needs_reconciliation FROM orders
WHERE status = 'CREATED' AND expires_at <= $1 ORDER BY expires_at LIMIT $2`

// DueExpiries returns CREATED orders past their expiry.
func (s *Store) DueExpiries(ctx context.Context, limit int) ([]OrderRef, error) {
	var refs []OrderRef
	err := s.db.SelectContext(ctx, &refs, sqlDueExpiries, s.now(), limit)
	if err != nil {
		return nil, fmt.Errorf("due expiries: %w", err)
	}
	return refs, nil
}

// Expire moves a CREATED order past its expiry to EXPIRED (fenced).
func (s *Store) Expire(ctx context.Context, ref OrderRef) (payment.Order, error) {
	return s.Transition(ctx, Change{OrderID: ref.OrderID, Version: ref.Version, To: payment.Expired, Action: "order.expired", Actor: "sweep"})
}
