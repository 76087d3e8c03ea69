package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/payrail/payrail/internal/payment"
)

// Audit is who makes a privileged change: an operator ("operator:NAME"),
// the admin token ("admin token"), or an anonymous sign-in attempt, with
// where from and the request's id.
type Audit struct {
	Actor     string
	Addr      string
	RequestID string
}

// As returns a store whose privileged changes (merchants, secrets, rate
// limits, operators, redeliveries, probes) each write one audit_log row for
// a, in the change's own transaction. The store itself writes none: a
// change made without an actor (tests, loadgen) is not an operator's.
func (s *Store) As(a Audit) *Store {
	c := *s
	c.audit = &a
	return &c
}

// auditTx records one privileged change in tx, when the store has an
// actor. before and after are JSON-able snapshots (nil when not relevant).
func (s *Store) auditTx(ctx context.Context, tx *sqlx.Tx, action, target string, before, after any) error {
	if s.audit == nil {
		return nil
	}
	return insertAudit(ctx, tx, *s.audit, action, target, before, after)
}

const sqlInsertAudit = `INSERT INTO audit_log (actor, action, target, before, after, source_addr, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7)`

func insertAudit(ctx context.Context, ex sqlx.ExecerContext, a Audit, action, target string, before, after any) error {
	js := func(v any) (*string, error) {
		if v == nil {
			return nil, nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		s := string(b)
		return &s, nil
	}
	b, err := js(before)
	if err != nil {
		return fmt.Errorf("audit before: %w", err)
	}
	af, err := js(after)
	if err != nil {
		return fmt.Errorf("audit after: %w", err)
	}
	if _, err := ex.ExecContext(ctx, sqlInsertAudit,
		truncateUTF8(a.Actor, 200), action, truncateUTF8(target, 200), b, af, truncateUTF8(a.Addr, 100), truncateUTF8(a.RequestID, 100)); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// RecordAudit writes an audit row that goes with no other change (a
// sign-in, a failed or throttled one).
func (s *Store) RecordAudit(ctx context.Context, a Audit, action, target string, details any) error {
	return insertAudit(ctx, s.db, a, action, target, nil, details)
}

// AuditEntry is one audit_log row.
type AuditEntry struct {
	ID        int64           `db:"id" json:"id"`
	At        time.Time       `db:"at" json:"at"`
	Actor     string          `db:"actor" json:"actor"`
	Action    string          `db:"action" json:"action"`
	Target    string          `db:"target" json:"target"`
	Before    json.RawMessage `db:"-" json:"before,omitempty"`
	After     json.RawMessage `db:"-" json:"after,omitempty"`
	BeforeDB  []byte          `db:"before" json:"-"`
	AfterDB   []byte          `db:"after" json:"-"`
	Addr      string          `db:"source_addr" json:"sourceAddr"`
	RequestID string          `db:"request_id" json:"requestId"`
}

// AuditFilter narrows AuditLog; empty fields match everything. Before is
// a cursor: entries with a smaller id.
type AuditFilter struct {
	Actor, Target, Action string
	Since, Until          time.Time
	Before                int64
	Limit                 int
}

// ParseAuditFilter reads a filter from a query: actor, target, action,
// since (RFC 3339), before (an entry id) and limit (1–500, default 100).
// INVALID_REQUEST names the bad parameter.
func ParseAuditFilter(q url.Values) (AuditFilter, error) {
	f := AuditFilter{Actor: strings.TrimSpace(q.Get("actor")), Target: strings.TrimSpace(q.Get("target")),
		Action: strings.TrimSpace(q.Get("action")), Limit: 100}
	if v := strings.TrimSpace(q.Get("since")); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return f, payment.Errorf(payment.CodeInvalidRequest, "since must be an RFC 3339 time, e.g. 2026-12-03T09:00:00Z")
		}
		f.Since = t
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return f, payment.Errorf(payment.CodeInvalidRequest, "before must be an audit entry id")
		}
		f.Before = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return f, payment.Errorf(payment.CodeInvalidRequest, "limit must be 1–500")
		}
		f.Limit = n
	}
	return f, nil
}

const sqlAuditLog = planPerCall + `SELECT id, at, actor, action, target, before, after, source_addr, request_id FROM audit_log
WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR target = $2) AND ($3 = '' OR action = $3) AND at >= $4 AND at < $5 AND id < $6
ORDER BY id DESC LIMIT $7`

// AuditLog lists audit entries newest first, at most Limit (≤ 500).
func (s *Store) AuditLog(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	if f.Limit <= 0 || f.Limit > 500 {
		f.Limit = 100
	}
	if f.Until.IsZero() {
		f.Until = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	before := f.Before
	if before <= 0 {
		before = 1<<63 - 1
	}
	var out []AuditEntry
	err := s.db.SelectContext(ctx, &out, sqlAuditLog, f.Actor, f.Target, f.Action, f.Since, f.Until, before, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	for i := range out {
		out[i].Before, out[i].After = out[i].BeforeDB, out[i].AfterDB
	}
	return out, nil
}
