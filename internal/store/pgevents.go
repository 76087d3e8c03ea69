package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PGEvent is a PG webhook as received.
type PGEvent struct {
	Provider   string     `db:"provider"`
	EventKey   string     `db:"event_key"`
	PaymentKey *string    `db:"payment_key"`
	OrderID    *string    `db:"order_id"`
	PGStatus   *string    `db:"pg_status"`
	Body       []byte     `db:"body"`
	State      string     `db:"state"`
	Note       *string    `db:"note"`
	ReceivedAt time.Time  `db:"received_at"`
	AppliedAt  *time.Time `db:"applied_at"`
}

// InsertPGEvent stores an event once per (provider, event key). stored is
// false for a duplicate.
func (s *Store) InsertPGEvent(ctx context.Context, e PGEvent) (stored bool, err error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO pg_events (provider, event_key, payment_key, order_id, pg_status, body)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, e.Provider, e.EventKey, e.PaymentKey, e.OrderID, e.PGStatus, string(e.Body))
	if err != nil {
		return false, fmt.Errorf("insert pg event: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// PGEventByKey returns one event; sql.ErrNoRows when absent.
func (s *Store) PGEventByKey(ctx context.Context, provider, key string) (PGEvent, error) {
	var e PGEvent
	err := s.db.GetContext(ctx, &e, `SELECT provider, event_key, payment_key, order_id, pg_status, body, state, note, received_at, applied_at FROM pg_events WHERE provider = $1 AND event_key = $2`, provider, key)
	return e, err
}

// MarkPGEvent settles an event (APPLIED, IGNORED or REJECTED) with a note; it
// also writes the note to the order's history when the order is known.
func (s *Store) MarkPGEvent(ctx context.Context, e PGEvent, state, note, orderID string) error {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.ExecContext(ctx, `UPDATE pg_events SET state = $3, note = $4, applied_at = now() WHERE provider = $1 AND event_key = $2 AND state = 'RECEIVED'`, e.Provider, e.EventKey, state, note); err != nil {
		return err
	}
	if orderID != "" {
		action := "webhook." + map[string]string{"APPLIED": "applied", "IGNORED": "ignored", "REJECTED": "rejected"}[state]
		if state == "REJECTED" {
			action = "alert.webhook_disagrees"
		}
		d := map[string]any{"provider": e.Provider, "eventKey": e.EventKey, "note": note}
		if e.PGStatus != nil {
			d["pgStatus"] = *e.PGStatus
		}
		if e.PaymentKey != nil {
			d["paymentKey"] = *e.PaymentKey
		}
		if err := appendLogTx(ctx, tx, orderID, action, nil, nil, "pg:"+e.Provider, d); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// StaleReceivedEvents returns events received longer than age ago and not yet
// applied (their enqueue was lost).
func (s *Store) StaleReceivedEvents(ctx context.Context, age time.Duration, limit int) ([]PGEvent, error) {
	var es []PGEvent
	err := s.db.SelectContext(ctx, &es, `SELECT provider, event_key, payment_key, order_id, pg_status, body, state, note, received_at, applied_at FROM pg_events
WHERE state = 'RECEIVED' AND received_at <= $1 ORDER BY received_at LIMIT $2`, s.now().Add(-age), limit)
	return es, err
}

// OrderRowForEvent finds the order an event is about: by paymentKey first,
// then by orderId. ORDER_NOT_FOUND when neither matches.
func (s *Store) OrderRowForEvent(ctx context.Context, paymentKey, orderID string) (OrderRow, error) {
	var row OrderRow
	err := s.db.GetContext(ctx, &row, `SELECT `+orderColumns+` FROM orders WHERE payment_key = $1`, paymentKey)
	if errors.Is(err, sql.ErrNoRows) && orderID != "" {
		return s.orderRow(ctx, s.db, "", orderID, false)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return row, fmt.Errorf("no order for payment %s: %w", paymentKey, errOrderNotFound)
	}
	return row, err
}

var errOrderNotFound = errors.New("order not found")
