package loadgen

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/payrail/payrail/internal/store"
)

// SeedMerchant owns the seeded orders, so they are removed by merchant.
const SeedMerchant = "mer_loadgen_seed"

// Seed inserts n finished orders (90 % PAID, 5 % FAILED, 5 % EXPIRED: none
// that a sweep would pick up) under SeedMerchant and analyses the table.
func Seed(ctx context.Context, db *sql.DB, n int) (time.Duration, error) {
	start := time.Now()
	if _, err := db.ExecContext(ctx, `INSERT INTO merchants (merchant_id, name, client_id, callback_url, callback_enabled)
VALUES ($1, 'loadgen seed', 'cli_loadgen_seed', 'http://127.0.0.1:9/seed', false) ON CONFLICT DO NOTHING`, SeedMerchant); err != nil {
		return 0, fmt.Errorf("seed merchant: %w", err)
	}
	const batch = 100_000
	for from := 1; from <= n; from += batch {
		to := min(from+batch-1, n)
		_, err := db.ExecContext(ctx, `INSERT INTO orders (order_id, merchant_id, merchant_order_id, amount, order_name,
    status, version, payment_token_hash, payment_key, method, approved_at, failure_code, expires_at, created_at, updated_at)
SELECT 'seed_' || g, $1, 'mo_seed_' || g, 1000 + g % 100000, 'seeded order',
       s.status, CASE s.status WHEN 'PAID' THEN 3 ELSE 2 END, '\x00'::bytea,
       CASE WHEN s.status <> 'EXPIRED' THEN 'seedpk_' || g END,
       CASE WHEN s.status = 'PAID' THEN 'CARD' END,
       CASE WHEN s.status = 'PAID' THEN timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second' END,
       CASE WHEN s.status = 'FAILED' THEN 'REJECT_CARD_PAYMENT' END,
       now() - g * interval '1 second' + interval '30 minutes',
       now() - g * interval '1 second', now() - g * interval '1 second'
FROM generate_series($2::int, $3::int) g,
     LATERAL (SELECT CASE WHEN g % 20 = 0 THEN 'FAILED' WHEN g % 20 = 1 THEN 'EXPIRED' ELSE 'PAID' END AS status) s
ON CONFLICT DO NOTHING`, SeedMerchant, from, to)
		if err != nil {
			return 0, fmt.Errorf("seed orders %d..%d: %w", from, to, err)
		}
	}
	if _, err := db.ExecContext(ctx, `ANALYZE orders`); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// Unseed removes what Seed inserted.
func Unseed(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `DELETE FROM orders WHERE merchant_id = $1`, SeedMerchant); err != nil {
		return fmt.Errorf("unseed orders: %w", err)
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM merchants WHERE merchant_id = $1`, SeedMerchant); err != nil {
		return fmt.Errorf("unseed merchant: %w", err)
	}
	_, err := db.ExecContext(ctx, `ANALYZE orders`)
	return err
}

// CountOrders returns how many orders the table holds.
func CountOrders(ctx context.Context, db *sql.DB) (int64, error) {
	var n int64
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM orders`).Scan(&n)
	return n, err
}

// Plan is one EXPLAIN (ANALYZE, BUFFERS) of a hot query.
type Plan struct {
	Name  string `json:"name"`
	Query string `json:"query"`
	Plan  string `json:"plan"`
}

// Explain runs EXPLAIN (ANALYZE, BUFFERS) of the hot queries, each in a
// transaction that is rolled back (the claim is an UPDATE; FOR UPDATE locks).
// orderID is an existing order, merchantID a merchant with many orders.
func Explain(ctx context.Context, db *sql.DB, orderID, merchantID string) ([]Plan, error) {
	qs := []struct {
		name, q string
		args    []any
	}{
		{"order by id FOR UPDATE (RequestConfirm, Transition)",
			`SELECT ` + store.OrderColumns + ` FROM orders WHERE order_id = $1 AND ($2 = '' OR merchant_id = $2) FOR UPDATE`,
			[]any{orderID, merchantID}},
		{"due-confirms claim (sweep, ClaimDueConfirms)",
			`UPDATE orders SET next_check_at = $3
WHERE order_id IN (
    SELECT order_id FROM orders WHERE status = 'CONFIRMING' AND next_check_at <= $1
    ORDER BY next_check_at LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING order_id, version, needs_reconciliation`,
			[]any{time.Now(), 200, time.Now().Add(30 * time.Second)}},
		{"due expiries (sweep, DueExpiries)",
			`SELECT order_id, version FROM orders WHERE status = 'CREATED' AND expires_at <= $1 ORDER BY expires_at LIMIT $2`,
			[]any{time.Now(), 200}},
		{"list by merchant, first page (ListOrders)",
			`SELECT ` + store.OrderColumns + ` FROM orders
WHERE ($1 = '' OR merchant_id = $1) AND seq < $2 AND ($3 = '' OR status = $3) AND ($4 = '' OR merchant_order_id = $4)
  AND ($5 = '' OR payment_key = $5) AND ($6 = '' OR order_id = $6) AND (NOT $7 OR needs_reconciliation)
ORDER BY seq DESC LIMIT $8`,
			[]any{merchantID, int64(1<<63 - 1), "", "", "", "", false, 21}},
		{"list by merchant and status (ListOrders ?status=PAID)",
			`SELECT ` + store.OrderColumns + ` FROM orders
WHERE ($1 = '' OR merchant_id = $1) AND seq < $2 AND ($3 = '' OR status = $3) AND ($4 = '' OR merchant_order_id = $4)
  AND ($5 = '' OR payment_key = $5) AND ($6 = '' OR order_id = $6) AND (NOT $7 OR needs_reconciliation)
ORDER BY seq DESC LIMIT $8`,
			[]any{merchantID, int64(1<<63 - 1), "PAID", "", "", "", false, 21}},
	}
	var out []Plan
	for _, q := range qs {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return out, err
		}
		rows, err := tx.QueryContext(ctx, `EXPLAIN (ANALYZE, BUFFERS) `+q.q, q.args...)
		if err != nil {
			tx.Rollback()
			return out, fmt.Errorf("explain %s: %w", q.name, err)
		}
		var lines []string
		for rows.Next() {
			var l string
			_ = rows.Scan(&l)
			lines = append(lines, l)
		}
		rows.Close()
		tx.Rollback()
		out = append(out, Plan{Name: q.name, Query: q.q, Plan: strings.Join(lines, "\n")})
	}
	return out, nil
}
