package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/payrail/payrail/internal/payment"
)

// CallbackGeneration is the stride of callback attempt numbers. Attempt n of
// generation g is numbered g·CallbackGeneration + n, so a redelivery starts
// the retry schedule afresh while attempt numbers (and the task IDs
// callback:{id}:{attempt} built from them) only ever grow and never collide.
const CallbackGeneration = 100

// CallbackDelivery is what the deliverer needs to send one callback: the
// outbox row and its merchant's endpoint.
type CallbackDelivery struct {
	CallbackID      string                 `db:"callback_id"`
	MerchantID      string                 `db:"merchant_id"`
	OrderID         string                 `db:"order_id"`
	EventType       string                 `db:"event_type"`
	Payload         []byte                 `db:"payload"`
	Status          payment.CallbackStatus `db:"status"`
	Attempt         int                    `db:"attempt"`
	NextAttemptAt   time.Time              `db:"next_attempt_at"`
	Seq             int64                  `db:"seq"`
	CallbackURL     string                 `db:"callback_url"`
	CallbackEnabled bool                   `db:"callback_enabled"`
}

// payload::text is the body that is signed and sent: jsonb prints the same
// bytes every time, so retries of one callback carry identical bodies.
const sqlCallbackDelivery = `
SELECT c.callback_id, c.merchant_id, c.order_id, c.event_type, c.payload::text AS payload, c.status, c.attempt,
       c.next_attempt_at, c.seq, m.callback_url, m.callback_enabled
FROM callbacks c JOIN merchants m ON m.merchant_id = c.merchant_id
WHERE c.callback_id = $1`

// CallbackDelivery loads a callback for delivery; CALLBACK_NOT_FOUND when absent.
func (s *Store) CallbackDelivery(ctx context.Context, callbackID string) (CallbackDelivery, error) {
	var d CallbackDelivery
	err := s.db.GetContext(ctx, &d, sqlCallbackDelivery, callbackID)
	if errors.Is(err, sql.ErrNoRows) {
		return d, payment.Errorf(payment.CodeCallbackNotFound, "callback not found")
	}
	if err != nil {
		return d, fmt.Errorf("load callback: %w", err)
	}
	return d, nil
}

func sortDeliveries(ds []CallbackDelivery) {
	slices.SortFunc(ds, func(a, b CallbackDelivery) int { return cmp.Compare(a.Seq, b.Seq) })
}

// CallbackOutcome is one delivery attempt and the schedule it leaves.
type CallbackOutcome struct {
	CallbackID string
	// Attempt is the callback's attempt count before this attempt; the
	// attempt recorded is Attempt+1.
	Attempt     int
	StartedAt   time.Time
	StatusCode  int // 0 when no answer arrived
	Latency     time.Duration
	Error       string
	Response    string                 // at most 1 KiB, valid UTF-8
	Status      payment.CallbackStatus // afterwards
	NextAttempt time.Time
	// DisableEndpoint turns the merchant's callbacks off (the endpoint
	// answered 410 Gone).
	DisableEndpoint bool
	MerchantID      string
}

const sqlDisableMerchantCallbacks = `UPDATE merchants SET callback_enabled = false, updated_at = now() WHERE merchant_id = $1`

// RecordCallbackAttempts records attempts in one transaction (the answers
// a lane turn collected while others of its batch are still out, or that a
// shutdown cut short): each moves its callback's schedule and adds its
// attempt row (and, for a 410, disables the merchant's callbacks).
// recorded[i] is false, and nothing is written for it, when its callback is
// no longer PENDING at its attempt: another delivery got there first.
func (s *Store) RecordCallbackAttempts(ctx context.Context, outcomes []CallbackOutcome) (recorded []bool, err error) {
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		recorded, err = recordAttemptsTx(ctx, tx, outcomes)
		return err
	})
	if err != nil {
		return make([]bool, len(outcomes)), err
	}
	return recorded, nil
}

// sqlRecordCallbacks records a batch of attempts in one statement: for each
// callback still PENDING at its attempt, one conditional update of the
// callback and its attempt row. A lane turn's end was 2 statements per
// callback, and on a saturated machine each round trip waits for a core
// (a busy merchant's turns took 90–220 ms for 8 callbacks, issue 19).
const sqlRecordCallbacks = `
WITH raw AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[]::timestamptz[], $5::text[], $6::text[]::timestamptz[],
                         $7::text[]::timestamptz[], $8::int[], $9::int[], $10::text[]) WITH ORDINALITY
        AS o(callback_id, attempt, status, next_at, error, done_at, started_at, status_code, latency_ms, response, i)
), o AS (
    -- One outcome per callback, the first, as one at a time would record.
    SELECT DISTINCT ON (callback_id) * FROM raw ORDER BY callback_id, i
), upd AS (
    UPDATE callbacks c SET
        status = o.status,
        attempt = c.attempt + 1,
        sending_until = NULL,
        next_attempt_at = o.next_at,
        last_error = NULLIF(o.error, ''),
        delivered_at = CASE WHEN o.status = 'DELIVERED' THEN o.done_at ELSE NULL END
    -- By primary key (package doc): the ids again as an array, which the
    -- key's index serves, or a join from the unnest may scan callbacks.
    FROM o WHERE c.callback_id = ANY($1::text[]) AND c.callback_id = o.callback_id AND c.attempt = o.attempt
        AND (c.status = 'PENDING') IS TRUE
    RETURNING o.i
), ins AS (
    INSERT INTO callback_attempts (callback_id, attempt, started_at, status_code, latency_ms, error, response_prefix)
    SELECT o.callback_id, o.attempt + 1, o.started_at, NULLIF(o.status_code, 0), o.latency_ms, NULLIF(o.error, ''), o.response
    FROM o JOIN upd USING (i)
)
SELECT i FROM upd`

// recordAttemptsTx records outcomes in tx (see RecordCallbackAttempts) in
// one statement, and one more per endpoint a 410 disables.
func recordAttemptsTx(ctx context.Context, tx *sqlx.Tx, outcomes []CallbackOutcome) ([]bool, error) {
	recorded := make([]bool, len(outcomes))
	if len(outcomes) == 0 {
		return recorded, nil
	}
	n := len(outcomes)
	ids, statuses, nexts, errs, dones, starts, resps := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	attempts, codes, lats := make([]int64, n), make([]int64, n), make([]int64, n)
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	for i, o := range outcomes {
		ids[i], attempts[i], statuses[i], nexts[i], errs[i] = o.CallbackID, int64(o.Attempt), string(o.Status), ts(o.NextAttempt), o.Error
		dones[i], starts[i], codes[i], lats[i], resps[i] = ts(o.StartedAt.Add(o.Latency)), ts(o.StartedAt), int64(o.StatusCode), o.Latency.Milliseconds(), o.Response
	}
	var applied []int64 // 1-based positions in outcomes
	if err := tx.SelectContext(ctx, &applied, sqlRecordCallbacks, pq.StringArray(ids), pq.Int64Array(attempts), pq.StringArray(statuses),
		pq.StringArray(nexts), pq.StringArray(errs), pq.StringArray(dones), pq.StringArray(starts), pq.Int64Array(codes),
		pq.Int64Array(lats), pq.StringArray(resps)); err != nil {
		return nil, fmt.Errorf("record callback attempts: %w", err)
	}
	for _, i := range applied {
		recorded[i-1] = true
	}
	disabled := map[string]bool{}
	for i, o := range outcomes {
		if recorded[i] && o.DisableEndpoint && !disabled[o.MerchantID] {
			disabled[o.MerchantID] = true
			if _, err := tx.ExecContext(ctx, sqlDisableMerchantCallbacks, o.MerchantID); err != nil {
				return nil, fmt.Errorf("disable endpoint: %w", err)
			}
		}
	}
	return recorded, nil
}

// Callback is a callback as its merchant sees it, with its attempts.
type Callback struct {
	CallbackID    string                 `json:"callbackId" db:"callback_id"`
	OrderID       string                 `json:"orderId" db:"order_id"`
	Type          string                 `json:"type" db:"event_type"`
	Status        payment.CallbackStatus `json:"status" db:"status"`
	Attempt       int                    `json:"attempt" db:"attempt"`
	NextAttemptAt *time.Time             `json:"nextAttemptAt" db:"next_attempt_at"`
	DeliveredAt   *time.Time             `json:"deliveredAt" db:"delivered_at"`
	LastError     *string                `json:"lastError" db:"last_error"`
	CreatedAt     time.Time              `json:"createdAt" db:"created_at"`
	Payload       json.RawMessage        `json:"payload" db:"-"`
	PayloadText   string                 `json:"-" db:"payload"`
	Attempts      []CallbackAttempt      `json:"attempts" db:"-"`
}

// CallbackAttempt is one recorded delivery attempt.
type CallbackAttempt struct {
	CallbackID     string    `json:"-" db:"callback_id"`
	Attempt        int       `json:"attempt" db:"attempt"`
	StartedAt      time.Time `json:"startedAt" db:"started_at"`
	StatusCode     *int      `json:"statusCode" db:"status_code"`
	LatencyMS      int       `json:"latencyMs" db:"latency_ms"`
	Error          *string   `json:"error" db:"error"`
	ResponsePrefix *string   `json:"responsePrefix" db:"response_prefix"`
}

const callbackColumns = `callback_id, order_id, event_type, status, attempt, next_attempt_at, delivered_at, last_error, created_at, payload::text AS payload`

// CallbackFilter selects a merchant's callbacks.
type CallbackFilter struct {
	MerchantID string
	OrderID    string // optional
	Limit      int
}

const sqlCallbacksSelectCallbacks = planPerCall + `SELECT ` + callbackColumns + ` FROM callbacks
WHERE merchant_id = $1 AND ($2 = '' OR order_id = $2) ORDER BY seq DESC LIMIT $3`

const sqlCallbacksSelectCallbackAttempts = `SELECT callback_id, attempt, started_at, status_code, latency_ms, error, response_prefix
FROM callback_attempts WHERE callback_id = ANY($1) ORDER BY callback_id, attempt, id`

// Callbacks lists a merchant's callbacks (of one order when OrderID is set),
// newest first, each with its attempts. Another merchant's order yields none.
func (s *Store) Callbacks(ctx context.Context, f CallbackFilter) ([]Callback, error) {
	if f.Limit <= 0 || f.Limit > 200 {
		f.Limit = 100
	}
	var out []Callback
	err := s.db.SelectContext(ctx, &out, sqlCallbacksSelectCallbacks, f.MerchantID, f.OrderID, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list callbacks: %w", err)
	}
	if len(out) == 0 {
		return []Callback{}, nil
	}
	ids := make([]string, len(out))
	byID := make(map[string]*Callback, len(out))
	for i := range out {
		ids[i] = out[i].CallbackID
		out[i].Attempts = []CallbackAttempt{}
		fixCallback(&out[i])
		byID[out[i].CallbackID] = &out[i]
	}
	var atts []CallbackAttempt
	if err := s.db.SelectContext(ctx, &atts, sqlCallbacksSelectCallbackAttempts, pq.Array(ids)); err != nil {
		return nil, fmt.Errorf("list callback attempts: %w", err)
	}
	for _, a := range atts {
		a.StartedAt = a.StartedAt.UTC()
		c := byID[a.CallbackID]
		c.Attempts = append(c.Attempts, a)
	}
	return out, nil
}

func fixCallback(c *Callback) {
	c.Payload = json.RawMessage(c.PayloadText)
	c.CreatedAt = c.CreatedAt.UTC()
	c.DeliveredAt = utcPtr(c.DeliveredAt)
	if c.Status != payment.CallbackPending {
		c.NextAttemptAt = nil
	} else {
		c.NextAttemptAt = utcPtr(c.NextAttemptAt)
	}
}

// sqlRedeliverCallback makes a callback due now: a DELIVERED or DEAD one
// becomes PENDING in a new attempt generation; $2 = ” means any merchant
// (RedeliverCallbackAsOperator).
// A PENDING one keeps its send claim: clearing it while that attempt is in
// flight would let a second trigger send the same attempt (the same
// webhook-id) again. (SET expressions see the row as it was.)
const sqlRedeliverCallback = `UPDATE callbacks SET
    attempt = CASE WHEN status = 'PENDING' THEN attempt ELSE (attempt / $4 + 1) * $4 END,
    sending_until = CASE WHEN status = 'PENDING' THEN sending_until ELSE NULL END,
    pending_since = CASE WHEN status = 'PENDING' THEN pending_since ELSE $3 END,
    status = 'PENDING', next_attempt_at = $3, delivered_at = NULL
WHERE callback_id = $1 AND ($2 = '' OR merchant_id = $2) IS TRUE -- by primary key only (package doc)
`

// RedeliverCallback makes a merchant's callback due now. A DELIVERED or DEAD
// callback becomes PENDING in a new attempt generation, so the retry schedule
// starts again; a PENDING one is only made due now. CALLBACK_NOT_FOUND when
// it is not the merchant's.
func (s *Store) RedeliverCallback(ctx context.Context, merchantID, callbackID string) (Callback, error) {
	if err := scoped(merchantID); err != nil {
		return Callback{}, err
	}
	var c Callback
	err := s.inOutboxTx(ctx, func(tx *sqlx.Tx, ob *outbox) error {
		err := tx.GetContext(ctx, &c, sqlRedeliverCallback+`RETURNING `+callbackColumns, callbackID, merchantID, s.now(), CallbackGeneration)
		if errors.Is(err, sql.ErrNoRows) {
			return payment.Errorf(payment.CodeCallbackNotFound, "callback not found")
		}
		if err != nil {
			return fmt.Errorf("redeliver callback: %w", err)
		}
		return wakeLaneTx(ctx, tx, ob, merchantID, s.now())
	})
	if err != nil {
		return c, err
	}
	fixCallback(&c)
	c.Attempts = []CallbackAttempt{}
	return c, nil
}
