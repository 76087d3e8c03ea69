package loadgen

import (
	"context"
	"fmt"
	"time"

	"github.com/payrail/payrail/internal/store"
)

// MinimalCeiling is the second ceiling of issue 19: the minimal durable path
// a payment's guarantees need — one commit to create the order, one to
// accept the confirm, one for CONFIRMING → PAID with its history row and its
// callback (outbox) row, one to record the callback delivered with its
// attempt row — in payrail's own tables with all their indexes and
// constraints (the scratch schema is migrated by store.Migrate), run
// directly at the same connection count as the SQL ceiling. It is a
// reference for what payrail could cost, not payrail's code: that is what
// SQLCeiling measures.
type MinimalCeiling struct {
	Payments int `json:"payments"`
	Conns    int `json:"conns"`
	// StatementCache: the pool kept its statements prepared, as the api
	// and worker run (a prepared payrail against an unprepared reference
	// would flatter efficiency_minimal).
	StatementCache    bool    `json:"statementCache"`
	Seconds           float64 `json:"seconds"`
	PaymentsPerSec    float64 `json:"paymentsPerSec"`
	CommitsPerPayment float64 `json:"commitsPerPayment"`
}

// The four transactions. Statements are the shape payrail's are (fenced on
// status and version, the fences written so only the primary key serves
// them as store's package doc says, a payment_log row per state change, the
// callback row in the same transaction as the change it announces).
const (
	sqlMinimalCreate = `INSERT INTO orders (order_id, merchant_id, amount, currency, order_name, payment_token_hash, expires_at)
VALUES ($1, $2, 15000, 'KRW', 'loadgen', $3, now() + interval '30 minutes')`
	sqlMinimalAccept = `WITH o AS (
    UPDATE orders SET status = 'CONFIRMING', payment_key = $2, pg_idempotency_key = $3, confirm_requested_at = now(),
        next_check_at = now() + interval '30 seconds', version = version + 1, updated_at = now()
    WHERE order_id = $1 AND (status = 'CREATED') IS TRUE RETURNING order_id)
INSERT INTO payment_log (order_id, action, from_status, to_status, actor, details)
SELECT order_id, 'payment.confirm_requested', 'CREATED', 'CONFIRMING', 'merchant', '{}' FROM o`
	sqlMinimalPaid = `WITH o AS (
    UPDATE orders SET status = 'PAID', method = '카드', approved_at = now(), confirm_attempts = confirm_attempts + 1,
        version = version + 1, updated_at = now()
    WHERE order_id = $1 AND version = 2 AND (status = 'CONFIRMING') IS TRUE RETURNING order_id, merchant_id),
l AS (
    INSERT INTO payment_log (order_id, action, from_status, to_status, actor, details)
    SELECT order_id, 'payment.approved', 'CONFIRMING', 'PAID', 'worker', '{"source":"pg.confirm","pgStatus":"DONE"}' FROM o)
INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload, next_attempt_at, pending_since)
SELECT $2, merchant_id, order_id, 'payment.paid', $3, now(), now() FROM o`
	sqlMinimalDelivered = `WITH c AS (
    UPDATE callbacks SET status = 'DELIVERED', attempt = attempt + 1, delivered_at = now(), next_attempt_at = now()
    WHERE callback_id = $1 AND (status = 'PENDING') IS TRUE AND attempt = 0 RETURNING callback_id)
INSERT INTO callback_attempts (callback_id, attempt, started_at, status_code, latency_ms)
SELECT callback_id, 1, now(), 204, 1 FROM c`
)

// RunMinimalCeiling runs n payments of the minimal durable path over conns
// connections in the scratch schema CeilingSchema of dbURL (created,
// migrated and dropped here, as for RunSQLCeiling).
func RunMinimalCeiling(ctx context.Context, dbURL string, n, conns int, cache bool, progress Progresser) (MinimalCeiling, error) {
	out := MinimalCeiling{Payments: n, Conns: conns, StatementCache: cache}
	sc, err := openScratch(ctx, dbURL, conns, cache)
	if err != nil {
		return out, err
	}
	defer sc.close()
	db := sc.db
	m, err := sc.st.CreateMerchant(ctx, store.NewMerchant{Name: "minimal ceiling", CallbackURL: "http://127.0.0.1:9/ceiling"})
	if err != nil {
		return out, fmt.Errorf("minimal ceiling merchant: %w", err)
	}
	merchant := m.MerchantID
	payload := `{"type":"payment.paid","data":{"status":"PAID","amount":15000}}`
	one := func(ctx context.Context) error {
		orderID, key, cb := randID("ord_"), randID("tmock_"), randID("msg_")
		if _, err := db.ExecContext(ctx, sqlMinimalCreate, orderID, merchant, store.HashToken(randID("pt_"))); err != nil {
			return fmt.Errorf("create: %w", err)
		}
		for _, step := range []struct {
			what  string
			query string
			args  []any
		}{
			{"accept", sqlMinimalAccept, []any{orderID, key, "pay_" + orderID}},
			{"paid", sqlMinimalPaid, []any{orderID, cb, payload}},
			{"delivered", sqlMinimalDelivered, []any{cb}},
		} {
			res, err := db.ExecContext(ctx, step.query, step.args...)
			if err != nil {
				return fmt.Errorf("%s: %w", step.what, err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return fmt.Errorf("%s: %d rows, want 1 (a fence failed)", step.what, n)
			}
		}
		return nil
	}
	commits := func() float64 { return sc.commits(ctx) }
	// Backends flush their counts on exit: end the setup's connections
	// (migrations, the merchant) so they are not counted in the run.
	db.SetMaxIdleConns(0)
	db.SetMaxIdleConns(conns)
	before := settleCommits(commits)
	start := time.Now()
	firstErr := onConns(ctx, n, conns, progress, func(int) error { return one(ctx) })
	out.Seconds = time.Since(start).Seconds()
	out.PaymentsPerSec = float64(n) / out.Seconds
	db.Close() // its backends report their counts on exit
	out.CommitsPerPayment = (settleCommits(commits) - before) / float64(n)
	return out, firstErr
}

// settleCommits reads pg_stat_database's commit count until it stops
// moving: a backend reports its counts when idle for a second or on exit.
func settleCommits(commits func() float64) float64 {
	// A closing backend reports its counts as it exits, after the client
	// has moved on; on a loaded machine that can take a while. Settled is
	// unchanged for 1 s (5 reads 200 ms apart), for at most 10 s.
	last, same := commits(), 0
	for range 50 {
		time.Sleep(200 * time.Millisecond)
		c := commits()
		if c != last {
			last, same = c, 0
			continue
		}
		if same++; same == 5 {
			break
		}
	}
	return last
}
