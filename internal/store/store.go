// Package store is payrail's PostgreSQL persistence: merchants, orders, the
// payment log, the callback outbox and idempotency records. Every public method
// that changes state opens its own transaction, so a transition, its log row
// and its outbox row commit together or not at all. Unique violations become
// domain errors here and nowhere else.
//
// Fences written (…) IS TRUE. A statement that finds its row by primary key
// and also checks a status or a merchant writes that check as
// `(status = 'PENDING') IS TRUE` or `(… OR merchant_id = $2) IS TRUE`,
// which PostgreSQL 15's planner can neither use as an index condition nor
// match to a partial index, so the primary key is the only way in. Written
// plainly, the planner took a partial index over that status
// (orders_created_expiry, callbacks_pending_since, …) whenever a vacuum had
// found it empty — its reltuples stays 0 and it looks free however large it
// grows — or the merchant's (merchant_id, …) index for a merchant newer than
// the statistics. Then each payment's transition read every CREATED order,
// each callback record every PENDING callback (a dead endpoint's backlog
// included) and each order read every order of the merchant: about 1,000
// tuples and up to 300 buffers per payment in the bench (issue 19).
// TestFencesUsePrimaryKey plans them in that state (a later planner that
// sees through IS TRUE would fail it); TestNoisyMerchantsRowsCostAQuietOneNothing
// counts the buffers a quiet merchant's payment reads beside another's
// 10,000 abandoned orders and PENDING callbacks; TestKeyLookupsFenceTheirChecks
// fails a new key lookup whose check is written plainly.
//
// Statements stay prepared. With Pool.StatementCache, Open keeps every
// statement with arguments prepared by name on its connection after its
// first call (stmtcache.go), so PostgreSQL parses it once per connection and,
// after five calls, may keep a generic plan; TestFencesUsePrimaryKey holds
// the fenced statements' generic plans to the primary key too, and a
// statement whose plan must follow its values (a catch-all filter: order_id
// = $2 unless $2 is empty) is marked planPerCall and never prepared
// (TestCatchAllFiltersPlanPerCall). Only for connections that are sessions
// (docs/scaling.md).
//
// A transition's history rows ride in the statement that changes the order
// (sqlTransition, sqlCreateOrder), so a transition is one statement.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/pressly/goose/v3"

	"github.com/payrail/payrail/internal/secretbox"
	"github.com/payrail/payrail/migrations"
)

// Store is the PostgreSQL store.
type Store struct {
	db   *sqlx.DB
	keys *secretbox.Keyring
	now  func() time.Time
	// stuckAfter is how long a CONFIRMING order may go without news before
	// the sweep re-enqueues its confirm (covering a lost enqueue or a
	// killed worker).
	stuckAfter time.Duration
	// onLanes is told, after commit, of the delivery lanes a transaction
	// woke, so delivery starts at once rather than at the next sweep.
	onLanes func(ctx context.Context, wakes []LaneWake)
	// turns holds the runner of lane turns that the transaction waking
	// them started (InlineTurns); shared by the copies As makes.
	turns *turnHolder
	// audit, when set (As), is recorded with every privileged change.
	audit *Audit
}

// OnLanes sets the function told (after commit) of the merchant delivery
// lanes to start. A failure there loses nothing: the sweep starts a lane
// that has due callbacks and no live task.
func (s *Store) OnLanes(fn func(ctx context.Context, wakes []LaneWake)) { s.onLanes = fn }

// outbox is what a transaction that writes callbacks hands on after its
// commit: the lanes it woke, and the turns it started for runner. It is
// passed explicitly, never in a context.
type outbox struct {
	wakes  []LaneWake
	runner TurnRunner
	turns  []LaneTurn
}

func (o *outbox) wake(w LaneWake) {
	for _, x := range o.wakes {
		if x.MerchantID == w.MerchantID {
			return
		}
	}
	o.wakes = append(o.wakes, w)
}

// Options tunes a Store.
type Options struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// ConfirmStuckAfter defaults to 30 s.
	ConfirmStuckAfter time.Duration
}

// New wraps an open database.
func New(db *sqlx.DB, keys *secretbox.Keyring, opt Options) *Store {
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	if opt.ConfirmStuckAfter <= 0 {
		opt.ConfirmStuckAfter = 30 * time.Second
	}
	return &Store{db: db, keys: keys, now: now, stuckAfter: opt.ConfirmStuckAfter, turns: &turnHolder{}}
}

// ConfirmStuckAfter is how long a CONFIRMING order may go without news
// before the sweep looks at it again.
func (s *Store) ConfirmStuckAfter() time.Duration { return s.stuckAfter }

// DB returns the underlying pool (for health checks and tests).
func (s *Store) DB() *sqlx.DB { return s.db }

// Pool is how Open connects.
type Pool struct {
	// MaxConns bounds the pool (default 20).
	MaxConns int
	// StatementCache keeps every statement with arguments prepared by name
	// on its connection after its first call (stmtcache.go;
	// PAYRAIL_DB_STATEMENT_CACHE). Only for connections that are sessions:
	// a direct connection, or PgBouncer 1.21+ with max_prepared_statements.
	// Behind an older transaction-mode pooler a Bind can reach a server where
	// another client prepared another statement under the same name.
	StatementCache bool
}

// Open connects to url with a bounded pool.
func Open(ctx context.Context, url string, p Pool) (*sqlx.DB, error) {
	connector, err := pq.NewConnector(withBinaryParameters(url))
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	size := 0
	if p.StatementCache {
		size = stmtCacheSize
	}
	db := sqlx.NewDb(sql.OpenDB(&cachingConnector{inner: connector, size: size}), "postgres")
	maxConns := p.MaxConns
	if maxConns <= 0 {
		maxConns = 20
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	// A connection's prepared statements keep the parameter types and plan
	// choices of when they were made: renew them now and then, after a
	// migration and as the data changes (cached connections leave earlier,
	// spread over 45–60 minutes: stmtcache.go).
	db.SetConnMaxLifetime(time.Hour)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("ping postgres: %w", err)
	}
	return db, nil
}

// withBinaryParameters turns on lib/pq's binary_parameters unless the URL
// sets it: a query with arguments then takes one round trip instead of two
// (the profile showed the extra Parse/Describe trip as the api's top cost).
// It sends []byte arguments as binary, so JSON goes to jsonb as a string.
func withBinaryParameters(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return raw
	}
	q := u.Query()
	if q.Get("binary_parameters") == "" {
		q.Set("binary_parameters", "yes")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// Migrate applies every pending migration.
func Migrate(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	for _, r := range results {
		if log != nil {
			log.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration)
		}
	}
	return nil
}

// inTx runs fn in a transaction, rolling back on error or panic.
func (s *Store) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// inOutboxTx is inTx for transactions that may write callbacks: after the
// commit, the lanes they woke are handed to onLanes.
func (s *Store) inOutboxTx(ctx context.Context, fn func(tx *sqlx.Tx, ob *outbox) error) error {
	ob := &outbox{runner: s.turns.get()}
	committed := false
	defer func() {
		if !committed { // rolled back (or panicked): the claims never were
			for _, t := range ob.turns {
				ob.runner.Release(t.Slots)
			}
		}
	}()
	if err := s.inTx(ctx, func(tx *sqlx.Tx) error { return fn(tx, ob) }); err != nil {
		return err
	}
	committed = true
	for _, t := range ob.turns {
		ob.runner.Run(context.WithoutCancel(ctx), t)
	}
	if len(ob.wakes) > 0 && s.onLanes != nil {
		s.onLanes(context.WithoutCancel(ctx), ob.wakes)
	}
	return nil
}

func isUniqueViolation(err error, constraint string) bool {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == "23505" {
		return constraint == "" || pqErr.Constraint == constraint
	}
	return false
}

func isCheckViolation(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == "23514"
}

const sqlTryAdvisoryLock = `SELECT pg_try_advisory_xact_lock($1)`

// Exclusive runs fn while holding a transaction-scoped PostgreSQL advisory
// lock; if another session holds it, fn does not run and ran is false. Used so
// a periodic sweep never runs twice at once across workers.
func (s *Store) Exclusive(ctx context.Context, lockID int64, fn func(ctx context.Context) error) (ran bool, err error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck
	if err := tx.GetContext(ctx, &ran, sqlTryAdvisoryLock, lockID); err != nil || !ran {
		return false, err
	}
	return true, fn(ctx)
}
