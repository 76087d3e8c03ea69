package loadgen

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // the ceiling opens its own connections
	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/secretbox"
	"github.com/payrail/payrail/internal/store"
)

// SQLCeiling is the rate at which PostgreSQL runs payrail's per-payment
// transactions with nothing else in the way.
type SQLCeiling struct {
	Payments  int `json:"payments"`
	Conns     int `json:"conns"`
	Merchants int `json:"merchants"`
	// StatementCache: the pool kept its statements prepared
	// (PAYRAIL_DB_STATEMENT_CACHE, as the api and worker run).
	StatementCache bool    `json:"statementCache"`
	Seconds        float64 `json:"seconds"`
	PaymentsPerSec float64 `json:"paymentsPerSec"`
	// TxPerPayment is the store calls one payment makes below, each one
	// transaction (or one read).
	TxPerPayment int `json:"txPerPayment"`
	// CommitsPerPayment is PostgreSQL's own count (pg_stat_database) over
	// the run, divided by the payments: it includes anything else the
	// database committed meanwhile, so it is an upper bound.
	CommitsPerPayment float64 `json:"commitsPerPayment"`
	// Delivered is how many payments' callbacks the lane turns recorded
	// delivered (a turn left queued at the very end delivers none).
	Delivered int `json:"delivered"`
}

// CeilingSchema is the scratch schema the ceiling migrates and fills; it is
// dropped afterwards. The running system (schema public) is not touched.
const CeilingSchema = "loadgen_ceiling"

// ceilingSteps is one payment through the store's own methods — the same
// transactions the api and the worker run, called directly with no HTTP,
// queue, lock or PG around them: create, confirm, the worker's CONFIRMING →
// PAID with the PG call's history row, the PG webhook stored (already
// IGNORED: the order shows it) in one statement, and the lane turn the
// transition woke (start and claim, then the attempts with the turn's
// end; the worker starts an idle lane's turn inside the PAID transaction,
// which this runs as its own).
var ceilingSteps = []func(ctx context.Context, st *store.Store, p *ceilingPayment) error{
	func(ctx context.Context, st *store.Store, p *ceilingPayment) error {
		o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: p.merchant, Amount: 15000, Currency: "KRW", OrderName: "loadgen",
			TokenHash: store.HashToken(p.token), TTL: 30 * time.Minute}, nil)
		p.orderID = o.OrderID
		return err
	},
	func(ctx context.Context, st *store.Store, p *ceilingPayment) error {
		// The worker's first run takes the version from the sealed
		// snapshot its task carries: no read.
		cr, err := st.RequestConfirm(ctx, p.merchant, p.orderID, p.paymentKey, p.token, 15000, nil)
		p.version = cr.Order.Version
		return err
	},
	func(ctx context.Context, st *store.Store, p *ceilingPayment) error {
		method := "카드"
		now := time.Now()
		_, err := st.Transition(ctx, store.Change{OrderID: p.orderID, Version: p.version, To: payment.Paid, Action: "payment.approved", Actor: "worker",
			Method: &method, ApprovedAt: &now, Details: map[string]any{"source": "pg.confirm", "pgStatus": "DONE"},
			PGCall: &store.PGCall{OrderID: p.orderID, Version: p.version, Action: "pg.confirm", Attempt: 1, Outcome: "approved", Status: 200,
				Latency: time.Millisecond, NextCheckAt: now.Add(30 * time.Second)}})
		return err
	},
	func(ctx context.Context, st *store.Store, p *ceilingPayment) error {
		status := "DONE"
		_, err := st.StoreStatusEvent(ctx, store.PGEvent{Provider: "mockpg", EventKey: "evt_" + p.paymentKey, PaymentKey: &p.paymentKey, OrderID: &p.orderID, PGStatus: &status,
			Body: []byte(`{"eventType":"PAYMENT_STATUS_CHANGED","data":{"status":"DONE"}}`)})
		return err
	},
	func(ctx context.Context, st *store.Store, p *ceilingPayment) error {
		// The lane turn the PAID transition woke, as the worker runs it:
		// start and claim (up to 4), then the attempts with the turn's end.
		// A transition that found the lane already out woke nothing; the
		// turn out delivers its callback.
		gen, ok := p.lanes.take(p.merchant)
		if !ok {
			return nil
		}
		_, batch, err := st.StartLaneTurn(ctx, p.merchant, gen, time.Now().Add(30*time.Second), func(store.Lane) int { return 4 })
		if errors.Is(err, store.ErrStaleLane) {
			return nil
		}
		if err != nil {
			return err
		}
		outcomes := make([]store.CallbackOutcome, len(batch))
		for i, c := range batch {
			outcomes[i] = store.CallbackOutcome{CallbackID: c.CallbackID, Attempt: c.Attempt, StartedAt: time.Now(), StatusCode: 204,
				Latency: time.Millisecond, Status: payment.CallbackDelivered, MerchantID: p.merchant}
		}
		_, next, again, err := st.FinishLaneTurn(ctx, outcomes, store.LaneEnd{MerchantID: p.merchant, Gen: gen, Again: len(batch) == 4})
		if again {
			p.lanes.put(next)
		}
		if errors.Is(err, store.ErrStaleLane) {
			return nil
		}
		return err
	},
}

// laneGens hands the ceiling's lane turns their generations, as asynq
// hands the worker its lane tasks: the store's OnLanes puts each woken
// generation here, and a payment's lane step takes its merchant's.
type laneGens struct {
	mu   sync.Mutex
	gens map[string]int64
}

func (l *laneGens) put(w store.LaneWake) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gens == nil {
		l.gens = map[string]int64{}
	}
	l.gens[w.MerchantID] = max(l.gens[w.MerchantID], w.Gen)
}

func (l *laneGens) take(merchantID string) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g, ok := l.gens[merchantID]
	delete(l.gens, merchantID)
	return g, ok
}

type ceilingPayment struct {
	merchant, token, paymentKey, orderID string
	version                              int
	event                                store.PGEvent
	lanes                                *laneGens
}

func randID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// RunSQLCeiling runs n payments through the store's own methods over conns
// connections in the scratch schema CeilingSchema of the database at
// dbURL (migrated by store.Migrate, dropped afterwards), spread over
// `merchants` merchants as the worker's lanes spread callbacks.
func RunSQLCeiling(ctx context.Context, dbURL string, n, conns, merchants int, cache bool, progress Progresser) (SQLCeiling, error) {
	sc, err := openScratch(ctx, dbURL, conns, cache)
	if err != nil {
		return SQLCeiling{}, err
	}
	defer sc.close()
	db, st := sc.db, sc.st
	lanes := &laneGens{}
	st.OnLanes(func(_ context.Context, wakes []store.LaneWake) {
		for _, w := range wakes {
			lanes.put(w)
		}
	})
	merchants = max(1, merchants)
	ids := make([]string, merchants)
	for i := range ids {
		m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: fmt.Sprintf("ceiling %d", i), CallbackURL: "http://127.0.0.1:9/ceiling"})
		if err != nil {
			return SQLCeiling{}, fmt.Errorf("ceiling merchant: %w", err)
		}
		ids[i] = m.MerchantID
	}
	out := SQLCeiling{Payments: n, Conns: conns, Merchants: merchants, TxPerPayment: len(ceilingSteps), StatementCache: cache}
	settle := func() float64 { return settleCommits(func() float64 { return sc.commits(ctx) }) }
	db.SetMaxIdleConns(0)
	db.SetMaxIdleConns(conns)
	before := settle()
	// The steps of one payment run in order, but many payments interleave,
	// as they do in payrail.
	start := time.Now()
	firstErr := onConns(ctx, n, conns, progress, func(i int) error {
		p := &ceilingPayment{merchant: ids[i%merchants], token: randID("pt_"), paymentKey: randID("tmock_"), lanes: lanes}
		for k, step := range ceilingSteps {
			if err := step(ctx, st, p); err != nil {
				return fmt.Errorf("ceiling step %d: %w", k+1, err)
			}
		}
		return nil
	})
	out.Seconds = time.Since(start).Seconds()
	out.PaymentsPerSec = float64(n) / out.Seconds
	_ = db.GetContext(ctx, &out.Delivered, `SELECT count(*) FROM callbacks WHERE status = 'DELIVERED'`)
	db.Close()
	out.CommitsPerPayment = (settle() - before) / float64(n)
	return out, firstErr
}

// onConns runs pay(0 … n-1) on conns goroutines, counting progress; the
// first error stops its goroutine and is returned.
func onConns(ctx context.Context, n, conns int, progress Progresser, pay func(i int) error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				if err := pay(int(i)); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				progress.Add(1)
			}
		})
	}
	wg.Wait()
	return firstErr
}

// scratch is the ceilings' own schema (CeilingSchema) of the running
// database, migrated, with a store on it opened as payrail opens its own.
type scratch struct {
	admin *sql.DB
	db    *sqlx.DB
	st    *store.Store
	// stats reads pg_stat_database from another database (postgres), so
	// reading the counts does not add to them.
	stats  *sql.DB
	dbName string
}

// commits is the database's committed transactions as pg_stat_database
// has them so far.
func (sc *scratch) commits(ctx context.Context) float64 {
	var c float64
	_ = sc.stats.QueryRowContext(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = $1`, sc.dbName).Scan(&c)
	return c
}

func openScratch(ctx context.Context, dbURL string, conns int, cache bool) (*scratch, error) {
	admin, err := sql.Open("postgres", dbURL)
	if err != nil {
		return nil, err
	}
	sc := &scratch{admin: admin}
	if u, err := url.Parse(dbURL); err == nil {
		sc.dbName = strings.TrimPrefix(u.Path, "/")
		u.Path = "/postgres"
		sc.stats, _ = sql.Open("postgres", u.String())
	}
	if sc.stats == nil || sc.stats.PingContext(ctx) != nil {
		sc.stats = admin // no access to postgres: the count includes its own reads
	}
	for _, q := range []string{`DROP SCHEMA IF EXISTS ` + CeilingSchema + ` CASCADE`, `CREATE SCHEMA ` + CeilingSchema} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			sc.close()
			return nil, fmt.Errorf("ceiling setup: %s: %w", q, err)
		}
	}
	scoped, err := withSearchPath(dbURL, CeilingSchema)
	if err == nil {
		sc.db, err = store.Open(ctx, scoped, store.Pool{MaxConns: conns, StatementCache: cache})
	}
	if err == nil {
		err = store.Migrate(ctx, sc.db.DB, nil)
	}
	var keys *secretbox.Keyring
	if err == nil {
		keys, err = secretbox.ParseKeys("ceiling:" + base64.StdEncoding.EncodeToString(randBytes(32)))
	}
	if err != nil {
		sc.close()
		return nil, fmt.Errorf("ceiling schema: %w", err)
	}
	sc.st = store.New(sc.db, keys, store.Options{})
	return sc, nil
}

func (sc *scratch) close() {
	if sc.db != nil {
		sc.db.Close()
	}
	_, _ = sc.admin.ExecContext(context.Background(), `DROP SCHEMA IF EXISTS `+CeilingSchema+` CASCADE`)
	if sc.stats != sc.admin {
		sc.stats.Close()
	}
	sc.admin.Close()
}

// withSearchPath returns dbURL with the PostgreSQL search_path set, so the
// store's unqualified SQL runs in schema.
func withSearchPath(dbURL, schema string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("ceiling: the database URL must be a postgres:// URL")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
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
