package store

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/lib/pq"
)

// stmtCacheSize bounds the statements kept prepared on one connection. The
// store's SQL is a fixed set of constants (about 150); the bound is for
// statements built at run time, which would otherwise grow without end.
const stmtCacheSize = 256

// planPerCall starts a statement whose plan must follow its values: a
// catch-all filter (order_id = $2 unless $2 is empty) can use an index only
// when planned with the value, and a generic plan would scan instead. The cache
// leaves such statements unnamed, planned every call as before
// (TestCatchAllFiltersPlanPerCall finds the ones not marked).
const planPerCall = "/* plan per call */ "

// cachingConnector hands out lib/pq connections that keep every statement
// with arguments prepared (named, per connection) after its first use, so
// PostgreSQL parses and analyses it once per connection instead of on every
// call and may settle on a generic plan (issue 19: parsing, analysis and
// planning were a third of PostgreSQL's CPU per payment). Statements without
// arguments (BEGIN, COMMIT, LISTEN) keep the simple protocol, and
// planPerCall ones the unnamed statement.
//
// Named statements are session state, and lib/pq names them "1", "2", … on
// every connection: behind a transaction-mode pooler that does not track them
// (PgBouncer before 1.21, or without max_prepared_statements) a Bind can reach
// a server where another client prepared another statement under the same
// name, and run it. So the cache is off unless Pool.StatementCache says the
// connections are sessions.
type cachingConnector struct {
	inner driver.Connector
	size  int
}

func (c *cachingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return newCachingConn(cn, c.size), nil
}

func (c *cachingConnector) Driver() driver.Driver { return c.inner.Driver() }

// pqConn is what lib/pq's connection implements and database/sql looks for.
type pqConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.QueryerContext
	driver.ExecerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
	driver.NamedValueChecker
}

type cachedStmt struct {
	query string
	stmt  driver.Stmt
}

// cachingConn is used by one goroutine at a time (database/sql's rule for a
// driver connection), so the cache needs no lock.
type cachingConn struct {
	pqConn
	size  int
	lru   *list.List // of *cachedStmt, most recently used first
	index map[string]*list.Element
	bad   bool
	// renew: after it the connection leaves the pool, so its statements'
	// parameter types and plans are made again; spread over 45–60 minutes
	// so a pool opened at once is not re-prepared at once.
	renew time.Time
}

func newCachingConn(cn driver.Conn, size int) driver.Conn {
	pc, ok := cn.(pqConn)
	if !ok || size <= 0 {
		return cn
	}
	life := 45*time.Minute + rand.N(15*time.Minute)
	return &cachingConn{pqConn: pc, size: size, lru: list.New(), index: map[string]*list.Element{}, renew: time.Now().Add(life)}
}

// prepared returns query's statement on this connection, preparing it on
// first use and closing the least recently used one past the bound.
func (c *cachingConn) prepared(ctx context.Context, query string) (driver.Stmt, error) {
	if e, ok := c.index[query]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*cachedStmt).stmt, nil
	}
	st, err := c.pqConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.index[query] = c.lru.PushFront(&cachedStmt{query: query, stmt: st})
	for c.lru.Len() > c.size {
		old := c.lru.Remove(c.lru.Back()).(*cachedStmt)
		delete(c.index, old.query)
		_ = old.stmt.Close() // frees the server's copy; a failure leaves the connection to its own error state
	}
	return st, nil
}

// stale reports an error that says the server's copy of a statement is
// gone or no longer fits, raised at Bind, before anything ran: 26000 (no
// such prepared statement: a pooler or DISCARD dropped it) or 0A000 "cached
// plan must not change result type" (a migration altered a table under it).
// The connection is then given up as bad: database/sql runs a call outside a
// transaction again on another connection, and the new connection prepares
// afresh; a transaction fails once and is retried as after any lost
// connection.
func (c *cachingConn) stale(err error) error {
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) {
		return err
	}
	// The routine, not the message, which lc_messages translates.
	if pqErr.Code == "26000" || (pqErr.Code == "0A000" && pqErr.Routine == "RevalidateCachedQuery") {
		c.bad = true
		return driver.ErrBadConn
	}
	return err
}

// IsValid and ResetSession keep a connection whose statements went stale
// (database/sql does not mark a transaction's connection bad by itself) or
// are due for renewal out of the pool.
func (c *cachingConn) IsValid() bool {
	return !c.bad && time.Now().Before(c.renew) && c.pqConn.IsValid()
}

func (c *cachingConn) ResetSession(ctx context.Context) error {
	if c.bad {
		return driver.ErrBadConn
	}
	return c.pqConn.ResetSession(ctx)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) == 0 || strings.HasPrefix(query, planPerCall) {
		return c.pqConn.QueryContext(ctx, query, args)
	}
	st, err := c.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		return nil, c.stale(err)
	}
	return rows, nil
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if len(args) == 0 || strings.HasPrefix(query, planPerCall) {
		return c.pqConn.ExecContext(ctx, query, args)
	}
	st, err := c.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	res, err := st.(driver.StmtExecContext).ExecContext(ctx, args)
	if err != nil {
		return nil, c.stale(err)
	}
	return res, nil
}
