package store_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

func cached(conns int) store.Pool { return store.Pool{MaxConns: conns, StatementCache: true} }

// openPool is store.Open of url, closed when t ends.
func openPool(t *testing.T, url string, p store.Pool) *sqlx.DB {
	t.Helper()
	pool, err := store.Open(context.Background(), url, p)
	testenv.Must(t, err)
	t.Cleanup(func() { pool.Close() })
	return pool
}

// prepared counts the named statements this session holds (the query has
// no arguments, so it is not one of them).
func prepared(t *testing.T, c *sqlx.DB) int {
	t.Helper()
	var n int
	testenv.Must(t, c.QueryRowContext(context.Background(), `SELECT count(*) FROM pg_prepared_statements`).Scan(&n))
	return n
}

// A statement is prepared once per connection however often it runs, and a
// connection keeps at most 256 of them.
func TestStatementCachePreparesOncePerConnection(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	ctx := context.Background()
	pool := openPool(t, db.URL, cached(1))
	for i := range 5 {
		var got int
		testenv.Must(t, pool.GetContext(ctx, &got, `SELECT $1::int + 1`, i))
		if got != i+1 {
			t.Fatalf("SELECT %d + 1 = %d", i, got)
		}
	}
	if n := prepared(t, pool); n != 1 {
		t.Errorf("%d statements prepared after one query ran 5 times, want 1", n)
	}
	for i := range 300 {
		var got int
		testenv.Must(t, pool.GetContext(ctx, &got, fmt.Sprintf(`SELECT $1::int + %d`, i), 1))
		if got != i+1 {
			t.Fatalf("query %d answered %d", i, got)
		}
	}
	if n := prepared(t, pool); n != 256 {
		t.Errorf("%d statements prepared after 301 distinct queries, want the bound of 256", n)
	}
	// A statement whose plan must follow its values is never prepared.
	for i := range 6 {
		var got int
		testenv.Must(t, pool.GetContext(ctx, &got, store.PlanPerCall+`SELECT $1::int + 1000`, i))
	}
	var perCall int
	testenv.Must(t, pool.GetContext(ctx, &perCall, `SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%+ 1000'`))
	if perCall != 0 {
		t.Errorf("a planPerCall statement was prepared (%d)", perCall)
	}
	// Without StatementCache (the default) nothing is prepared.
	off := openPool(t, db.URL, store.Pool{MaxConns: 1})
	var got int
	testenv.Must(t, off.GetContext(ctx, &got, `SELECT $1::int + 1`, 1))
	if n := prepared(t, off); n != 0 || got != 2 {
		t.Errorf("without the cache: %d statements prepared (answer %d), want 0", n, got)
	}
}

// A cached statement whose server copy is gone (DEALLOCATE, a pooler) or no
// longer fits its table (a migration) costs a call outside a transaction
// nothing: it runs again on a fresh connection. Inside a transaction the
// call fails as on a lost connection, and the next one works.
func TestStatementCacheSurvivesStaleStatements(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	ctx := context.Background()
	pool := openPool(t, db.URL, cached(1))
	one := func() (int, error) {
		var got int
		err := pool.GetContext(ctx, &got, `SELECT $1::int`, 7)
		return got, err
	}
	_, err := one()
	testenv.Must(t, err)
	_, err = pool.ExecContext(ctx, `DEALLOCATE ALL`)
	testenv.Must(t, err)
	if got, err := one(); err != nil || got != 7 {
		t.Fatalf("after DEALLOCATE ALL: %d, %v; want 7 on a fresh connection", got, err)
	}

	_, err = pool.ExecContext(ctx, `CREATE TABLE cache_t (a int)`)
	testenv.Must(t, err)
	_, err = pool.ExecContext(ctx, `INSERT INTO cache_t VALUES (1)`)
	testenv.Must(t, err)
	cols := func() ([]string, error) {
		rows, err := pool.QueryxContext(ctx, `SELECT * FROM cache_t WHERE a = $1`, 1)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		return rows.Columns()
	}
	_, err = cols()
	testenv.Must(t, err)
	_, err = pool.ExecContext(ctx, `ALTER TABLE cache_t ADD COLUMN b int`)
	testenv.Must(t, err)
	if got, err := cols(); err != nil || len(got) != 2 {
		t.Fatalf("after ALTER TABLE: columns %v, %v; want a and b", got, err)
	}

	_, err = one() // cached on the connection the transaction takes (the pool has one)
	testenv.Must(t, err)
	tx, err := pool.BeginTxx(ctx, nil)
	testenv.Must(t, err)
	_, err = tx.ExecContext(ctx, `DEALLOCATE ALL`)
	testenv.Must(t, err)
	var got int
	err = tx.GetContext(ctx, &got, `SELECT $1::int`, 7)
	if !errors.Is(err, driver.ErrBadConn) {
		t.Errorf("a stale statement in a transaction: %v, want driver.ErrBadConn", err)
	}
	_ = tx.Rollback()
	if got, err := one(); err != nil || got != 7 {
		t.Fatalf("after the failed transaction: %d, %v; want 7", got, err)
	}
}

// Many concurrent duplicates of one transition through a pool smaller than
// them, every connection's statements cached: exactly one applies, with
// exactly one history row (the row is written by the same statement).
func TestStatementCacheConcurrentDuplicateTransitions(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	ctx := context.Background()
	pool := openPool(t, db.URL, cached(4))
	st := store.New(pool, testenv.Keyring(t), store.Options{})
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "dup", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	for round := range 5 {
		o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: m.MerchantID, Amount: 1000, Currency: "KRW", OrderName: "dup",
			TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
		testenv.Must(t, err)
		const n = 64
		var wg sync.WaitGroup
		var mu sync.Mutex
		applied, conflicts := 0, 0
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pk := "pk_" + o.OrderID
				_, err := st.Transition(ctx, store.Change{OrderID: o.OrderID, Version: o.Version, To: payment.Confirming,
					Action: "confirm.accepted", PaymentKey: &pk})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					applied++
				case errors.Is(err, store.ErrVersionConflict):
					conflicts++
				default:
					t.Errorf("round %d: transition: %v", round, err)
				}
			}()
		}
		wg.Wait()
		var logged int
		testenv.Must(t, pool.GetContext(ctx, &logged, `SELECT count(*) FROM payment_log WHERE order_id = $1 AND action = 'confirm.accepted'`, o.OrderID))
		if applied != 1 || conflicts != n-1 || logged != 1 {
			t.Errorf("round %d: %d applied, %d conflicts, %d history rows; want 1, %d, 1", round, applied, conflicts, logged, n-1)
		}
	}
	if n := prepared(t, pool); n == 0 {
		t.Error("no statement was prepared: the cache is not in the path")
	}
}
