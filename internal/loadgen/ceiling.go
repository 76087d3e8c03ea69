package loadgen

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// SQLCeiling is the rate at which PostgreSQL runs payrail's per-payment
// transactions with nothing else in the way.
type SQLCeiling struct {
	Payments        int     `json:"payments"`
	Conns           int     `json:"conns"`
	Seconds         float64 `json:"seconds"`
	PaymentsPerSec  float64 `json:"paymentsPerSec"`
	TxPerPayment    int     `json:"txPerPayment"`
	StmtsPerPayment int     `json:"stmtsPerPayment"`
}

// The scratch schema mirrors payrail's tables (columns, defaults, checks,
// indexes; not foreign keys or triggers) so the statements below cost what
// the store's do.
var ceilingSetup = []string{
	`DROP SCHEMA IF EXISTS loadgen_ceiling CASCADE`,
	`CREATE SCHEMA loadgen_ceiling`,
	`CREATE TABLE loadgen_ceiling.merchants (LIKE public.merchants INCLUDING ALL)`,
	`CREATE TABLE loadgen_ceiling.orders (LIKE public.orders INCLUDING ALL)`,
	`CREATE TABLE loadgen_ceiling.payment_log (LIKE public.payment_log INCLUDING ALL)`,
	`CREATE TABLE loadgen_ceiling.callbacks (LIKE public.callbacks INCLUDING ALL)`,
	`CREATE TABLE loadgen_ceiling.callback_attempts (LIKE public.callback_attempts INCLUDING ALL)`,
	`CREATE TABLE loadgen_ceiling.pg_events (LIKE public.pg_events INCLUDING ALL)`,
	`INSERT INTO loadgen_ceiling.merchants (merchant_id, name, client_id, callback_url) VALUES ('mer_ceiling', 'ceiling', 'cli_ceiling', 'http://127.0.0.1:9/')`,
}

const ceilingOrderCols = `order_id, merchant_id, merchant_order_id, amount, currency, order_name, success_url, fail_url,
status, version, payment_token_hash, payment_key, pg_idempotency_key, method, approved_at, failure_code, failure_message,
canceled_amount, reserved_cancel_amount, needs_reconciliation, outcome_unknown, confirm_attempts, confirm_requested_at,
next_check_at, expires_at, created_at, updated_at, seq`

// ceilingTx is one transaction: its statements run in order, each with the
// order id, payment key and callback id substituted.
type ceilingTx []string

// The per-payment mix read from internal/store (CreateOrder, RequestConfirm,
// the worker's OrderRow + RecordPGCall + Transition, the PG webhook's
// insert and apply, the callback sweep's claim, CallbackDelivery and
// RecordCallbackAttempt). Single statements outside a transaction are
// one-statement transactions.
var ceilingMix = []ceilingTx{
	// create order
	{`INSERT INTO loadgen_ceiling.orders (order_id, merchant_id, amount, currency, order_name, payment_token_hash, expires_at)
VALUES ($1, 'mer_ceiling', 15000, 'KRW', 'loadgen', '\x00', now() + interval '30 minutes') RETURNING ` + ceilingOrderCols,
		`INSERT INTO loadgen_ceiling.payment_log (order_id, action, to_status, actor, details) VALUES ($1, 'order.created', 'CREATED', 'merchant', '{"amount":15000}')`},
	// confirm ingress: CREATED → CONFIRMING
	{`SELECT ` + ceilingOrderCols + ` FROM loadgen_ceiling.orders WHERE order_id = $1 AND merchant_id = 'mer_ceiling' FOR UPDATE`,
		`UPDATE loadgen_ceiling.orders SET status = 'CONFIRMING', version = version + 1, updated_at = now(), payment_key = $2,
pg_idempotency_key = $2, confirm_requested_at = now(), next_check_at = now() + interval '30 seconds'
WHERE order_id = $1 AND version = 1 AND status = ANY('{CREATED}') RETURNING ` + ceilingOrderCols,
		`INSERT INTO loadgen_ceiling.payment_log (order_id, action, from_status, to_status, actor, details) VALUES ($1, 'confirm.accepted', 'CREATED', 'CONFIRMING', 'merchant', '{}')`,
		`SELECT pg_notify('loadgen_ceiling', $1)`},
	// worker: read the order
	{`SELECT ` + ceilingOrderCols + ` FROM loadgen_ceiling.orders WHERE order_id = $1`},
	// worker: record the PG call
	{`INSERT INTO loadgen_ceiling.payment_log (order_id, action, actor, details) VALUES ($1, 'pg.confirm', 'worker', '{"attempt":1}')`,
		`UPDATE loadgen_ceiling.orders SET confirm_attempts = confirm_attempts + 1, next_check_at = now() + interval '30 seconds'
WHERE order_id = $1 AND version = 2 AND status = 'CONFIRMING'`},
	// worker: CONFIRMING → PAID with its callback
	{`SELECT ` + ceilingOrderCols + ` FROM loadgen_ceiling.orders WHERE order_id = $1 FOR UPDATE`,
		`UPDATE loadgen_ceiling.orders SET status = 'PAID', version = version + 1, updated_at = now(), method = 'CARD', approved_at = now()
WHERE order_id = $1 AND version = 2 AND status = ANY('{CONFIRMING}') RETURNING ` + ceilingOrderCols,
		`INSERT INTO loadgen_ceiling.payment_log (order_id, action, from_status, to_status, actor, details) VALUES ($1, 'payment.approved', 'CONFIRMING', 'PAID', 'worker', '{}')`,
		`INSERT INTO loadgen_ceiling.callbacks (callback_id, merchant_id, order_id, event_type, payload) VALUES ($3, 'mer_ceiling', $1, 'payment.paid', '{"type":"payment.paid","data":{}}')`,
		`SELECT pg_notify('loadgen_ceiling', $1)`},
	// PG webhook in: stored once
	{`INSERT INTO loadgen_ceiling.pg_events (event_key, provider, payment_key, order_id, pg_status, body) VALUES ($2, 'mockpg', $2, $1, 'DONE', '{}') ON CONFLICT DO NOTHING`},
	// PG webhook applied (the order is already PAID: read and mark)
	{`SELECT ` + ceilingOrderCols + ` FROM loadgen_ceiling.orders WHERE payment_key = $2`,
		`UPDATE loadgen_ceiling.pg_events SET state = 'APPLIED', applied_at = now() WHERE provider = 'mockpg' AND event_key = $2`},
	// callback sweep claims it
	{`UPDATE loadgen_ceiling.callbacks SET enqueued_at = now() WHERE callback_id = $3 AND status = 'PENDING'`},
	// deliverer loads it
	{`SELECT c.callback_id, c.payload::text, m.callback_url FROM loadgen_ceiling.callbacks c JOIN loadgen_ceiling.merchants m ON m.merchant_id = c.merchant_id WHERE c.callback_id = $3`},
	// deliverer records the attempt
	{`UPDATE loadgen_ceiling.callbacks SET status = 'DELIVERED', attempt = attempt + 1, delivered_at = now() WHERE callback_id = $3 AND attempt = 0`,
		`INSERT INTO loadgen_ceiling.callback_attempts (callback_id, attempt, started_at, status_code, latency_ms) VALUES ($3, 1, now(), 204, 1)`},
}

func randID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// RunSQLCeiling runs n payments' worth of ceilingMix over conns connections.
func RunSQLCeiling(ctx context.Context, db *sql.DB, n, conns int, progress Progresser) (SQLCeiling, error) {
	for _, q := range ceilingSetup {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return SQLCeiling{}, fmt.Errorf("ceiling setup: %s: %w", q, err)
		}
	}
	defer db.ExecContext(context.Background(), `DROP SCHEMA IF EXISTS loadgen_ceiling CASCADE`)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	stmts := 0
	for _, tx := range ceilingMix {
		stmts += len(tx)
	}
	out := SQLCeiling{Payments: n, Conns: conns, TxPerPayment: len(ceilingMix), StmtsPerPayment: stmts}
	// The stages of one payment run in order, but many payments interleave,
	// as they do in payrail.
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				args := []any{randID("ord_"), randID("pk_"), randID("msg_")}
				if err := runPayment(ctx, db, args); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				progress.Add(1)
			}
		})
	}
	wg.Wait()
	out.Seconds = time.Since(start).Seconds()
	out.PaymentsPerSec = float64(n) / out.Seconds
	return out, firstErr
}

func runPayment(ctx context.Context, db *sql.DB, args []any) error {
	for _, stmts := range ceilingMix {
		if len(stmts) == 1 {
			q, a := bind(stmts[0], args)
			rows, err := db.QueryContext(ctx, q, a...)
			if err != nil {
				return err
			}
			rows.Close()
			continue
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for _, q := range stmts {
			q, a := bind(q, args)
			rows, err := tx.QueryContext(ctx, q, a...)
			if err != nil {
				tx.Rollback()
				return fmt.Errorf("%.60s: %w", q, err)
			}
			for rows.Next() {
			}
			rows.Close()
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// bind renumbers the placeholders a statement uses ($1 order id, $2
// payment key, $3 callback id) to $1.. in order, with their arguments, so a
// statement never carries a parameter whose type PostgreSQL cannot infer.
func bind(q string, args []any) (string, []any) {
	var out []any
	for i := range 3 {
		ph := fmt.Sprintf("$%d", i+1)
		if strings.Contains(q, ph) {
			out = append(out, args[i])
			q = strings.ReplaceAll(q, ph, fmt.Sprintf("#%d", len(out)))
		}
	}
	return strings.ReplaceAll(q, "#", "$"), out
}

// Progresser counts progress (a *Progress, or nothing).
type Progresser interface{ Add(int) }

// AsynqCeiling is the rate of no-op asynq tasks end to end on the same Redis.
type AsynqCeiling struct {
	Tasks       int     `json:"tasks"`
	Concurrency int     `json:"concurrency"`
	RedisDB     int     `json:"redisDb"`
	Seconds     float64 `json:"seconds"`
	TasksPerSec float64 `json:"tasksPerSec"`
}

// RunAsynqCeiling enqueues n tasks of a private type on a private queue in
// Redis database db (flushed before and after) from `enqueuers` goroutines
// and processes them with an asynq.Server of the given concurrency and a
// no-op handler; it measures the first enqueue to the last task handled.
func RunAsynqCeiling(ctx context.Context, base *redis.Options, db, n, enqueuers, concurrency int, progress Progresser) (AsynqCeiling, error) {
	opt := *base
	opt.DB = db
	rc := redis.NewClient(&opt)
	defer rc.Close()
	if err := rc.FlushDB(ctx).Err(); err != nil {
		return AsynqCeiling{}, fmt.Errorf("redis db %d: %w", db, err)
	}
	defer rc.FlushDB(context.Background())
	out := AsynqCeiling{Tasks: n, Concurrency: concurrency, RedisDB: db}
	var handled atomic.Int64
	done := make(chan struct{})
	srv := asynq.NewServerFromRedisClient(rc, asynq.Config{
		Concurrency: concurrency,
		Queues:      map[string]int{"loadgen_noop": 1},
		LogLevel:    asynq.ErrorLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("loadgen:noop", func(context.Context, *asynq.Task) error {
		if handled.Add(1) == int64(n) {
			close(done)
		}
		progress.Add(1)
		return nil
	})
	if err := srv.Start(mux); err != nil {
		return out, err
	}
	defer srv.Shutdown()
	client := asynq.NewClientFromRedisClient(rc)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range enqueuers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				// Like payrail's tasks: an ID, no retention.
				_, err := client.EnqueueContext(ctx, asynq.NewTask("loadgen:noop", []byte(`{"id":"x"}`)),
					asynq.Queue("loadgen_noop"), asynq.TaskID(fmt.Sprintf("noop:%d", i)), asynq.MaxRetry(3))
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return out, firstErr
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		return out, fmt.Errorf("asynq ceiling: %d of %d tasks handled in 2 min", handled.Load(), n)
	case <-ctx.Done():
		return out, ctx.Err()
	}
	out.Seconds = time.Since(start).Seconds()
	out.TasksPerSec = float64(n) / out.Seconds
	return out, nil
}
