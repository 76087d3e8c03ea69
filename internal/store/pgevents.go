package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/lib/pq"

	"github.com/payrail/payrail/internal/payment"
)

// PGEvent is a PG webhook as received.
type PGEvent struct {
	Provider   string               `db:"provider"`
	EventKey   string               `db:"event_key"`
	PaymentKey *string              `db:"payment_key"`
	OrderID    *string              `db:"order_id"`
	PGStatus   *string              `db:"pg_status"`
	Body       []byte               `db:"body"`
	State      payment.PGEventState `db:"state"`
	Note       *string              `db:"note"`
	ReceivedAt time.Time            `db:"received_at"`
	AppliedAt  *time.Time           `db:"applied_at"`
}

const sqlInsertPGEvent = `INSERT INTO pg_events (provider, event_key, payment_key, order_id, pg_status, body, state, note, applied_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $7 = 'RECEIVED' THEN NULL ELSE now() END) ON CONFLICT DO NOTHING`

// InsertPGEvent stores an event once per (provider, event key). stored is
// false for a duplicate. An event with no State is RECEIVED, to be applied
// by the worker; one the ingress already settled (IGNORED: it only
// confirms what the order shows) is stored settled, with its Note.
func (s *Store) InsertPGEvent(ctx context.Context, e PGEvent) (stored bool, err error) {
	state := cmp.Or(e.State, payment.EventReceived)
	res, err := s.db.ExecContext(ctx, sqlInsertPGEvent, e.Provider, e.EventKey, e.PaymentKey, e.OrderID, e.PGStatus, string(e.Body), state, e.Note)
	if err != nil {
		return false, fmt.Errorf("insert pg event: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// A PAYMENT_STATUS_CHANGED is looked up and stored in one statement (one
// commit, not a read and then an insert: issue 19): the order it names is
// found as OrderRowForEvent finds it, and the event is stored IGNORED when
// the order already shows it (its paymentKey, a status in $9), else
// RECEIVED. No row: no order by that id or key, nothing stored.
const sqlStoreStatusEvent = `
WITH o AS (
    SELECT order_id, merchant_id, status, payment_key FROM orders
    WHERE order_id = $4::text OR (payment_key = $3::text AND $3::text <> '')
    ORDER BY order_id = $4 DESC, status = 'FAILED', seq DESC LIMIT 1
), ev AS (
    SELECT o.*, (o.payment_key = $3 AND o.status = ANY($7::text[])) AS shows FROM o
), ins AS (
    INSERT INTO pg_events (provider, event_key, payment_key, order_id, pg_status, body, state, note, applied_at)
    SELECT $1::text, $2::text, NULLIF($3::text, ''), CASE WHEN ev.shows THEN ev.order_id ELSE NULLIF($4::text, '') END, NULLIF($5::text, ''), $6::jsonb,
           CASE WHEN ev.shows THEN 'IGNORED' ELSE 'RECEIVED' END,
           CASE WHEN ev.shows THEN 'already reflected at the ingress: order is ' || ev.status || ', event says ' || $5::text END,
           CASE WHEN ev.shows THEN now() END
    FROM ev
    ON CONFLICT DO NOTHING
    RETURNING state
)
SELECT ev.merchant_id, ev.order_id, ev.status, coalesce((SELECT state FROM ins), '') AS state FROM ev`

// StatusEvent is what storing a PAYMENT_STATUS_CHANGED found and did.
type StatusEvent struct {
	MerchantID string         `db:"merchant_id"`
	OrderID    string         `db:"order_id"`
	Status     payment.Status `db:"status"`
	// State is the stored event's: RECEIVED (for the worker to apply),
	// IGNORED (the order already shows it), or "" for a duplicate.
	State payment.PGEventState `db:"state"`
}

// StoreStatusEvent stores a PAYMENT_STATUS_CHANGED for the order it names
// (by orderId, else paymentKey), once per (provider, event key), settled
// IGNORED when the order already shows it (payment.SettlesUnlocked). The
// event's PaymentKey, OrderID and PGStatus are taken as given (nil or
// ""). ORDER_NOT_FOUND when no order matches; nothing is stored then.
func (s *Store) StoreStatusEvent(ctx context.Context, e PGEvent) (StatusEvent, error) {
	var shows []string
	if e.PGStatus != nil {
		for _, st := range payment.AllStatuses {
			if payment.SettlesUnlocked(st, payment.PGStatus(*e.PGStatus)) {
				shows = append(shows, string(st))
			}
		}
	}
	var r StatusEvent
	err := s.db.GetContext(ctx, &r, sqlStoreStatusEvent, e.Provider, e.EventKey, deref(e.PaymentKey), deref(e.OrderID),
		deref(e.PGStatus), string(e.Body), pq.StringArray(shows))
	if errors.Is(err, sql.ErrNoRows) {
		return r, payment.Errorf(payment.CodeOrderNotFound, "no order for that payment")
	}
	if err != nil {
		return r, fmt.Errorf("store status event: %w", err)
	}
	return r, nil
}

const sqlPGEventByKey = `SELECT provider, event_key, payment_key, order_id, pg_status, body, state, note, received_at, applied_at FROM pg_events WHERE provider = $1 AND event_key = $2`

// PGEventByKey returns one event; ErrNotFound when absent.
func (s *Store) PGEventByKey(ctx context.Context, provider, key string) (PGEvent, error) {
	var e PGEvent
	err := s.db.GetContext(ctx, &e, sqlPGEventByKey, provider, key)
	return e, notFound(err)
}

// maxEventNote caps a settled event's note: it quotes what the event said.
const maxEventNote = 300

const sqlMarkPGEvent = `UPDATE pg_events SET state = $3, note = $4, applied_at = now(), order_id = COALESCE(NULLIF($5, ''), order_id)
WHERE provider = $1 AND event_key = $2 AND (state = 'RECEIVED') IS TRUE` // by primary key only (package doc)

// MarkPGEvent settles an event (APPLIED, IGNORED or REJECTED) with a note and
// the order it was matched to. Only an APPLIED event, one that moved the
// order, is written to the order's history: anyone can post to the PG's
// unsigned door, so what is ignored or refused stays on its own bounded
// pg_events row (and in metrics and logs), never in an order's permanent,
// merchant-visible history.
func (s *Store) MarkPGEvent(ctx context.Context, e PGEvent, state payment.PGEventState, note, orderID string) error {
	note = truncateUTF8(note, maxEventNote)
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.ExecContext(ctx, sqlMarkPGEvent, e.Provider, e.EventKey, state, note, orderID); err != nil {
		return err
	}
	if orderID != "" && state == payment.EventApplied {
		action := "webhook.applied"
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

const sqlStaleReceivedEvents = `SELECT provider, event_key, payment_key, order_id, pg_status, body, state, note, received_at, applied_at FROM pg_events
WHERE state = 'RECEIVED' AND received_at <= $1 ORDER BY received_at LIMIT $2`

// StaleReceivedEvents returns events received longer than age ago and not yet
// applied (their enqueue was lost).
func (s *Store) StaleReceivedEvents(ctx context.Context, age time.Duration, limit int) ([]PGEvent, error) {
	var es []PGEvent
	err := s.db.SelectContext(ctx, &es, sqlStaleReceivedEvents, s.now().Add(-age), limit)
	return es, err
}

const sqlOrderRowForEvent = `SELECT ` + orderColumns + ` FROM orders WHERE order_id = $2 OR (payment_key = $1 AND $1 <> '')
ORDER BY order_id = $2 DESC, status = 'FAILED', seq DESC LIMIT 1`

// OrderRowForEvent finds the order an event is about: by orderId first,
// then by paymentKey (a live order before a FAILED one). ORDER_NOT_FOUND
// when neither matches.
func (s *Store) OrderRowForEvent(ctx context.Context, paymentKey, orderID string) (OrderRow, error) {
	var row OrderRow
	// The PG's orderId is payrail's own order id and names one order; a
	// paymentKey may sit on several (another merchant's order confirmed with
	// someone else's key, a FAILED order), so it only decides without one.
	err := s.db.GetContext(ctx, &row, sqlOrderRowForEvent, paymentKey, orderID)
	if errors.Is(err, sql.ErrNoRows) {
		return row, payment.Errorf(payment.CodeOrderNotFound, "no order for that payment")
	}
	if err != nil {
		return row, fmt.Errorf("select order for event: %w", err)
	}
	return row, nil
}

// truncateUTF8 cuts s to at most n bytes on a rune boundary: PostgreSQL
// refuses invalid UTF-8.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
