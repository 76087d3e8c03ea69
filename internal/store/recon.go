package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/payrail/payrail/internal/payment"
)

// ReconClass is what a reconciliation item found (DESIGN.md
// "Reconciliation with the PG's books").
type ReconClass string

// The disagreement classes.
const (
	// ReconMissingHere: approved at the PG, not PAID here.
	ReconMissingHere ReconClass = "MISSING_HERE"
	// ReconMissingAtPG: PAID here, no approval at the PG.
	ReconMissingAtPG ReconClass = "MISSING_AT_PG"
	// ReconAmountMismatch: the PG approved another amount (or paymentKey)
	// for the order.
	ReconAmountMismatch ReconClass = "AMOUNT_MISMATCH"
	// ReconCancelMismatch: the PG and payrail disagree on what was
	// cancelled or refunded.
	ReconCancelMismatch ReconClass = "CANCEL_MISMATCH"
)

// The run states.
const (
	ReconPending   = "PENDING"
	ReconRunning   = "RUNNING"
	ReconSucceeded = "SUCCEEDED"
	ReconFailed    = "FAILED"
)

// ReconRun is one reconciliation of a window.
type ReconRun struct {
	RunID          string     `json:"runId" db:"run_id"`
	From           time.Time  `json:"from" db:"window_from"`
	To             time.Time  `json:"to" db:"window_to"`
	Trigger        string     `json:"trigger" db:"trigger"`
	RequestedBy    string     `json:"requestedBy" db:"requested_by"`
	Status         string     `json:"status" db:"status"`
	PGRows         int64      `json:"pgRows" db:"pg_rows"`
	Matched        int64      `json:"-" db:"matched"`
	MissingHere    int        `json:"-" db:"missing_here"`
	MissingAtPG    int        `json:"-" db:"missing_at_pg"`
	AmountMismatch int        `json:"-" db:"amount_mismatch"`
	CancelMismatch int        `json:"-" db:"cancel_mismatch"`
	Repaired       int        `json:"-" db:"repaired"`
	Flagged        int        `json:"-" db:"flagged"`
	Error          *string    `json:"error,omitempty" db:"error"`
	CreatedAt      time.Time  `json:"createdAt" db:"created_at"`
	StartedAt      *time.Time `json:"startedAt" db:"started_at"`
	HeartbeatAt    *time.Time `json:"-" db:"heartbeat_at"`
	FinishedAt     *time.Time `json:"finishedAt" db:"finished_at"`
	// Counts is the API's view of the counters.
	Counts ReconCounts `json:"counts" db:"-"`
}

// ReconCounts are a run's counters as DESIGN.md names them.
type ReconCounts struct {
	Matched        int64 `json:"matched"`
	MissingHere    int   `json:"missingHere"`
	MissingAtPG    int   `json:"missingAtPg"`
	AmountMismatch int   `json:"amountMismatch"`
	CancelMismatch int   `json:"cancelMismatch"`
	Repaired       int   `json:"repaired"`
	Flagged        int   `json:"flagged"`
}

func (r *ReconRun) fill() {
	r.From, r.To, r.CreatedAt = r.From.UTC(), r.To.UTC(), r.CreatedAt.UTC()
	r.Counts = ReconCounts{Matched: r.Matched, MissingHere: r.MissingHere, MissingAtPG: r.MissingAtPG,
		AmountMismatch: r.AmountMismatch, CancelMismatch: r.CancelMismatch, Repaired: r.Repaired, Flagged: r.Flagged}
}

// ReconItem is one disagreement and what was done about it.
type ReconItem struct {
	RunID      string     `json:"-" db:"run_id"`
	ItemID     int64      `json:"itemId" db:"item_id"`
	Class      ReconClass `json:"class" db:"class"`
	PaymentKey string     `json:"paymentKey" db:"payment_key"`
	OrderID    string     `json:"orderId" db:"order_id"`
	MerchantID string     `json:"merchantId" db:"merchant_id"`
	PGAmount   *int64     `json:"pgAmount" db:"pg_amount"`
	OurAmount  *int64     `json:"ourAmount" db:"our_amount"`
	// Action is what payrail did: "refund_scheduled", "applied", "none"
	// (flagged only), …
	Action string `json:"action" db:"action"`
	// NeedsAttention: not repaired; an operator must look.
	NeedsAttention bool      `json:"needsAttention" db:"needs_attention"`
	Detail         string    `json:"detail" db:"detail"`
	CreatedAt      time.Time `json:"createdAt" db:"created_at"`
}

const reconRunColumns = `run_id, window_from, window_to, trigger, requested_by, status, pg_rows, matched, missing_here, missing_at_pg,
amount_mismatch, cancel_mismatch, repaired, flagged, error, created_at, started_at, heartbeat_at, finished_at`

// ErrReconBusy: another run of the window is live (its id is returned).
var ErrReconBusy = errors.New("store: a run of this window is already in progress")

const sqlCreateReconRunInsertReconRuns = `INSERT INTO recon_runs (run_id, window_from, window_to, trigger, requested_by)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING ` + reconRunColumns

const sqlCreateReconRunSelectReconRuns = `SELECT ` + reconRunColumns + ` FROM recon_runs WHERE window_from = $1 AND window_to = $2
AND status IN ('PENDING', 'RUNNING')`

// CreateReconRun records a PENDING run of [from, to). When a run of the
// same window is already PENDING or RUNNING, that run is returned with
// created false: one live run per window, whoever asked. An operator's
// request (Store.As) is audited.
func (s *Store) CreateReconRun(ctx context.Context, from, to time.Time, trigger, by string) (ReconRun, bool, error) {
	if !to.After(from) {
		return ReconRun{}, false, payment.Errorf(payment.CodeInvalidRequest, "the window must end after it starts")
	}
	var run ReconRun
	created := false
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		err := tx.GetContext(ctx, &run, sqlCreateReconRunInsertReconRuns, NewID("rcn_", 20), from.UTC(), to.UTC(), trigger, by)
		if errors.Is(err, sql.ErrNoRows) {
			return tx.GetContext(ctx, &run, sqlCreateReconRunSelectReconRuns, from.UTC(), to.UTC())
		}
		if err != nil {
			return fmt.Errorf("create recon run: %w", err)
		}
		created = true
		return s.auditTx(ctx, tx, "recon.requested", run.RunID, nil, map[string]any{"from": run.From, "to": run.To, "trigger": trigger})
	})
	run.fill()
	return run, created, err
}

const sqlReconRunByID = `SELECT ` + reconRunColumns + ` FROM recon_runs WHERE run_id = $1`

// ReconRunByID returns a run; ErrNotFound when absent.
func (s *Store) ReconRunByID(ctx context.Context, runID string) (ReconRun, error) {
	var run ReconRun
	err := s.db.GetContext(ctx, &run, sqlReconRunByID, runID)
	run.fill()
	return run, notFound(err)
}

const sqlReconRuns = `SELECT ` + reconRunColumns + ` FROM recon_runs ORDER BY created_at DESC LIMIT $1`

// ReconRuns lists the newest runs.
func (s *Store) ReconRuns(ctx context.Context, limit int) ([]ReconRun, error) {
	if limit <= 0 || limit > 200 {
		limit = 50
	}
	var runs []ReconRun
	if err := s.db.SelectContext(ctx, &runs, sqlReconRuns, limit); err != nil {
		return nil, fmt.Errorf("recon runs: %w", err)
	}
	for i := range runs {
		runs[i].fill()
	}
	return runs, nil
}

const sqlReconSucceededFor = `SELECT count(*) FROM recon_runs WHERE window_from = $1 AND window_to = $2 AND status = 'SUCCEEDED'`

// ReconSucceededFor reports whether a run of exactly [from, to) succeeded.
func (s *Store) ReconSucceededFor(ctx context.Context, from, to time.Time) (bool, error) {
	var n int
	err := s.db.GetContext(ctx, &n, sqlReconSucceededFor, from.UTC(), to.UTC())
	return n > 0, err
}

const sqlLastReconSuccess = `SELECT max(finished_at) FROM recon_runs WHERE status = 'SUCCEEDED'`

// LastReconSuccess is when the newest successful run finished (zero when
// none has).
func (s *Store) LastReconSuccess(ctx context.Context) (time.Time, error) {
	var t *time.Time
	err := s.db.GetContext(ctx, &t, sqlLastReconSuccess)
	if err != nil || t == nil {
		return time.Time{}, err
	}
	return *t, nil
}

// ReconStale is how long a RUNNING run may go without a heartbeat before
// another worker takes it over (its worker died).
const ReconStale = 2 * time.Minute

const sqlStartReconRunUpdateReconRuns = `UPDATE recon_runs SET status = 'RUNNING', started_at = $2, heartbeat_at = $2, pg_rows = 0
WHERE run_id = $1 AND (status = 'PENDING' OR (status = 'RUNNING' AND heartbeat_at < $3)) IS TRUE RETURNING ` + reconRunColumns

const sqlStartReconRunSelectReconRuns = `SELECT status FROM recon_runs WHERE run_id = $1`

const sqlStartReconRunDeleteReconPgRows = `DELETE FROM recon_pg_rows WHERE run_id = $1`

// StartReconRun moves a run to RUNNING for this worker: from PENDING, or
// from a RUNNING one whose worker stopped beating. ErrReconBusy when it is
// running elsewhere; ErrNotFound when finished or absent. A taken-over run
// starts again from the first page (its staged rows are dropped).
func (s *Store) StartReconRun(ctx context.Context, runID string) (ReconRun, error) {
	var run ReconRun
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		err := tx.GetContext(ctx, &run, sqlStartReconRunUpdateReconRuns,
			runID, s.now(), s.now().Add(-ReconStale))
		if errors.Is(err, sql.ErrNoRows) {
			var st string
			if err := tx.GetContext(ctx, &st, sqlStartReconRunSelectReconRuns, runID); errors.Is(err, sql.ErrNoRows) || st == ReconSucceeded || st == ReconFailed {
				return ErrNotFound
			} else if err != nil {
				return err
			}
			return ErrReconBusy
		}
		if err != nil {
			return fmt.Errorf("start recon run: %w", err)
		}
		_, err = tx.ExecContext(ctx, sqlStartReconRunDeleteReconPgRows, runID)
		return err
	})
	run.fill()
	return run, err
}

// ReconPGRow is one staged row of the PG's list.
type ReconPGRow struct {
	TransactionKey, PaymentKey, OrderID string
	IsCancel                            bool
	Amount                              int64
	At                                  time.Time
}

const sqlStageReconRowsInsertReconPgRows = `INSERT INTO recon_pg_rows (run_id, transaction_key, payment_key, order_id, is_cancel, amount, at)
SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::boolean[], $6::bigint[], $7::timestamptz[]) ON CONFLICT DO NOTHING`

const sqlStageReconRowsUpdateReconRuns = `UPDATE recon_runs SET pg_rows = pg_rows + $2, heartbeat_at = $3 WHERE run_id = $1`

// StageReconRows adds one page of the PG's rows to a run (a page read
// again after a retry adds nothing twice) and beats its heartbeat.
func (s *Store) StageReconRows(ctx context.Context, runID string, rows []ReconPGRow) error {
	n := len(rows)
	keys, pks, oids := make([]string, n), make([]string, n), make([]string, n)
	cancels, amounts, ats := make([]bool, n), make([]int64, n), make([]time.Time, n)
	for i, r := range rows {
		keys[i], pks[i], oids[i], cancels[i], amounts[i], ats[i] = r.TransactionKey, r.PaymentKey, r.OrderID, r.IsCancel, r.Amount, r.At.UTC()
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, sqlStageReconRowsInsertReconPgRows,
			runID, pq.Array(keys), pq.Array(pks), pq.Array(oids), pq.Array(cancels), pq.Array(amounts), pq.Array(ats))
		if err != nil {
			return fmt.Errorf("stage recon rows: %w", err)
		}
		added, _ := res.RowsAffected()
		_, err = tx.ExecContext(ctx, sqlStageReconRowsUpdateReconRuns, runID, added, s.now())
		return err
	})
}

const sqlAnalyzeReconRows = `ANALYZE recon_pg_rows`

// AnalyzeReconRows refreshes the planner's statistics of the staging
// table once a run's rows are in: without them PostgreSQL takes a million
// staged rows for a handful and plans the comparisons as nested scans
// (measured: a 900,000-row window ran for over 20 minutes instead of
// seconds).
func (s *Store) AnalyzeReconRows(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, sqlAnalyzeReconRows)
	return err
}

// ReconApproval is a PG approval that payrail's records do not match,
// with the order it names (Order* empty when there is none).
type ReconApproval struct {
	PaymentKey     string         `db:"payment_key"`
	OrderID        string         `db:"order_id"`
	PGAmount       int64          `db:"pg_amount"`
	OurOrderID     string         `db:"our_order_id"`
	MerchantID     string         `db:"merchant_id"`
	Status         payment.Status `db:"status"`
	OurAmount      int64          `db:"our_amount"`
	OurPaymentKey  string         `db:"our_payment_key"`
	HasRefundEntry bool           `db:"has_refund"`
}

// reconApprovals aggregates a run's approval rows per payment: the PG's
// word on what was approved.
const reconApprovals = `(SELECT payment_key, min(order_id) AS order_id, sum(amount) AS amount
    FROM recon_pg_rows WHERE run_id = $1 AND NOT is_cancel GROUP BY payment_key)`

// paidLike is the SQL list of the statuses an approved payment shows here.
const paidLike = `('PAID', 'PARTIALLY_CANCELED', 'CANCELED')`

const sqlReconApprovalDisagreements = `SELECT p.payment_key, p.order_id, p.amount AS pg_amount,
    COALESCE(o.order_id, '') AS our_order_id, COALESCE(o.merchant_id, '') AS merchant_id, COALESCE(o.status, '') AS status,
    COALESCE(o.amount, 0) AS our_amount, COALESCE(o.payment_key, '') AS our_payment_key,
    EXISTS (SELECT 1 FROM refunds r WHERE r.order_id = p.order_id AND r.payment_key = p.payment_key) AS has_refund
FROM ` + reconApprovals + ` p LEFT JOIN orders o ON o.order_id = p.order_id
WHERE p.payment_key > $2
  AND NOT (o.status IN ` + paidLike + ` AND o.payment_key = p.payment_key AND o.amount = p.amount)
  AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.order_id = p.order_id AND r.payment_key = p.payment_key)
ORDER BY p.payment_key LIMIT $3`

// ReconApprovalDisagreements returns, in pages keyed by paymentKey (after
// cursor, at most limit), the PG approvals of a run that payrail does not
// show as paid with the same paymentKey and amount. An approval whose late
// refund payrail already recorded is not one: the refund path owns it, and
// the cancel comparison checks the PG refunded it.
func (s *Store) ReconApprovalDisagreements(ctx context.Context, runID, cursor string, limit int) ([]ReconApproval, error) {
	var out []ReconApproval
	err := s.db.SelectContext(ctx, &out, sqlReconApprovalDisagreements, runID, cursor, limit)
	if err != nil {
		return nil, fmt.Errorf("recon approvals: %w", err)
	}
	return out, nil
}

const sqlCountReconApprovalsMatched = `SELECT count(*) FROM ` + reconApprovals + ` p LEFT JOIN orders o ON o.order_id = p.order_id
WHERE (o.status IN ` + paidLike + ` AND o.payment_key = p.payment_key AND o.amount = p.amount)
   OR EXISTS (SELECT 1 FROM refunds r WHERE r.order_id = p.order_id AND r.payment_key = p.payment_key)`

// CountReconApprovalsMatched counts a run's PG approvals that payrail
// shows the same (paid with the same key and amount, or refunded late).
func (s *Store) CountReconApprovalsMatched(ctx context.Context, runID string) (int64, error) {
	var n int64
	err := s.db.GetContext(ctx, &n, sqlCountReconApprovalsMatched, runID)
	return n, err
}

const sqlReconPaidWithoutApproval = `SELECT ` + orderColumns + ` FROM orders o
WHERE o.approved_at >= $2 AND o.approved_at < $3 AND o.status IN ` + paidLike + ` AND o.order_id > $4
  AND NOT EXISTS (SELECT 1 FROM recon_pg_rows p WHERE p.run_id = $1 AND NOT p.is_cancel AND p.payment_key = o.payment_key)
ORDER BY o.order_id LIMIT $5`

// ReconPaidWithoutApproval returns, in pages keyed by order id, the orders
// the PG approved within [from, to) by payrail's records (approved_at) and
// shown as paid here, for which the run's PG rows hold no approval.
func (s *Store) ReconPaidWithoutApproval(ctx context.Context, runID string, from, to time.Time, cursor string, limit int) ([]OrderRow, error) {
	var out []OrderRow
	err := s.db.SelectContext(ctx, &out, sqlReconPaidWithoutApproval, runID, from.UTC(), to.UTC(), cursor, limit)
	if err != nil {
		return nil, fmt.Errorf("recon paid without approval: %w", err)
	}
	return out, nil
}

// ReconCancelCandidate is a payment whose cancelled amount is compared:
// it has a cancel row at the PG in the window, or payrail recorded a
// cancel or a refund of it in the window.
type ReconCancelCandidate struct {
	PaymentKey string `db:"payment_key"`
	OrderID    string `db:"order_id"`
}

const sqlReconCancelCandidates = `SELECT payment_key, min(order_id) AS order_id FROM (
    SELECT payment_key, order_id FROM recon_pg_rows WHERE run_id = $1 AND is_cancel
    UNION ALL SELECT o.payment_key, o.order_id FROM cancels c JOIN orders o ON o.order_id = c.order_id
        WHERE c.status = 'SUCCEEDED' AND c.updated_at >= $2 AND c.updated_at < $3 AND o.payment_key IS NOT NULL
    UNION ALL SELECT payment_key, order_id FROM refunds WHERE status = 'SUCCEEDED' AND updated_at >= $2 AND updated_at < $3
) c WHERE payment_key > $4 GROUP BY payment_key ORDER BY payment_key LIMIT $5`

// ReconCancelCandidates returns a run's cancel candidates in pages keyed
// by paymentKey.
func (s *Store) ReconCancelCandidates(ctx context.Context, runID string, from, to time.Time, cursor string, limit int) ([]ReconCancelCandidate, error) {
	var out []ReconCancelCandidate
	err := s.db.SelectContext(ctx, &out, sqlReconCancelCandidates, runID, from.UTC(), to.UTC(), cursor, limit)
	if err != nil {
		return nil, fmt.Errorf("recon cancel candidates: %w", err)
	}
	return out, nil
}

const sqlRefundedAmount = `SELECT COALESCE(sum(amount) FILTER (WHERE status = 'SUCCEEDED'), 0)::bigint AS amount,
    COALESCE(bool_or(status = 'PENDING'), false) AS pending
FROM refunds WHERE order_id = $1 AND payment_key = $2`

// RefundedAmount is what payrail's late-approval refunds of paymentKey on
// the order have returned (SUCCEEDED), and whether one is still pending.
func (s *Store) RefundedAmount(ctx context.Context, orderID, paymentKey string) (amount int64, pending bool, err error) {
	var r struct {
		Amount  int64 `db:"amount"`
		Pending bool  `db:"pending"`
	}
	err = s.db.GetContext(ctx, &r, sqlRefundedAmount, orderID, paymentKey)
	return r.Amount, r.Pending, err
}

const sqlAddReconItem = `INSERT INTO recon_items (run_id, class, payment_key, order_id, merchant_id, pg_amount, our_amount, action, needs_attention, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (run_id, class, payment_key) DO NOTHING`

// AddReconItem records a finding once per run, class and paymentKey;
// added is false when the run already has it.
func (s *Store) AddReconItem(ctx context.Context, it ReconItem) (added bool, err error) {
	res, err := s.db.ExecContext(ctx, sqlAddReconItem,
		it.RunID, string(it.Class), it.PaymentKey, it.OrderID, it.MerchantID, it.PGAmount, it.OurAmount, it.Action, it.NeedsAttention, truncateUTF8(it.Detail, 500))
	if err != nil {
		return false, fmt.Errorf("add recon item: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

const sqlReconHeartbeat = `UPDATE recon_runs SET heartbeat_at = $2 WHERE run_id = $1 AND (status = 'RUNNING') IS TRUE` // by primary key only (package doc)

// ReconHeartbeat tells other workers the run is alive.
func (s *Store) ReconHeartbeat(ctx context.Context, runID string) error {
	_, err := s.db.ExecContext(ctx, sqlReconHeartbeat, runID, s.now())
	return err
}

const sqlFinishReconRunUpdateReconRuns = `UPDATE recon_runs r SET status = $2, error = $3, finished_at = $4, matched = $5,
    missing_here = c.missing_here, missing_at_pg = c.missing_at_pg, amount_mismatch = c.amount_mismatch,
    cancel_mismatch = c.cancel_mismatch, repaired = c.repaired, flagged = c.flagged
FROM (SELECT count(*) FILTER (WHERE class = 'MISSING_HERE') AS missing_here,
             count(*) FILTER (WHERE class = 'MISSING_AT_PG') AS missing_at_pg,
             count(*) FILTER (WHERE class = 'AMOUNT_MISMATCH') AS amount_mismatch,
             count(*) FILTER (WHERE class = 'CANCEL_MISMATCH') AS cancel_mismatch,
             count(*) FILTER (WHERE NOT needs_attention) AS repaired,
             count(*) FILTER (WHERE needs_attention) AS flagged
      FROM recon_items WHERE run_id = $1) c
WHERE r.run_id = $1 RETURNING r.run_id, r.window_from, r.window_to, r.trigger, r.requested_by, r.status, r.pg_rows, r.matched,
    r.missing_here, r.missing_at_pg, r.amount_mismatch, r.cancel_mismatch, r.repaired, r.flagged, r.error, r.created_at,
    r.started_at, r.heartbeat_at, r.finished_at`

const sqlFinishReconRunDeleteReconPgRows = `DELETE FROM recon_pg_rows WHERE run_id = $1`

// FinishReconRun settles a run: its counters from its items (and matched),
// SUCCEEDED or FAILED with the error, and its staged rows dropped.
func (s *Store) FinishReconRun(ctx context.Context, runID string, matched int64, runErr error) (ReconRun, error) {
	status, msg := ReconSucceeded, (*string)(nil)
	if runErr != nil {
		status = ReconFailed
		m := truncateUTF8(runErr.Error(), 500)
		msg = &m
	}
	var run ReconRun
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := tx.GetContext(ctx, &run, sqlFinishReconRunUpdateReconRuns, runID, status, msg, s.now(), matched); err != nil {
			return fmt.Errorf("finish recon run: %w", err)
		}
		_, err := tx.ExecContext(ctx, sqlFinishReconRunDeleteReconPgRows, runID)
		return err
	})
	run.fill()
	return run, err
}

const sqlReconItems = planPerCall + `SELECT run_id, item_id, class, payment_key, order_id, merchant_id, pg_amount, our_amount, action,
    needs_attention, detail, created_at FROM recon_items WHERE run_id = $1 AND item_id > $2 AND (NOT $3 OR needs_attention)
ORDER BY item_id LIMIT $4`

// ReconItems returns a run's items, oldest first, at most limit after
// cursor (an item id; 0 from the start); attentionOnly keeps only the
// unrepaired ones.
func (s *Store) ReconItems(ctx context.Context, runID string, after int64, limit int, attentionOnly bool) ([]ReconItem, error) {
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	var items []ReconItem
	err := s.db.SelectContext(ctx, &items, sqlReconItems, runID, after, attentionOnly, limit)
	return items, err
}

// ParseReconWindow reads a window's ends: a UTC date ("2026-12-02", the
// whole day for from, the end of that day for to) or an RFC 3339 instant.
func ParseReconWindow(from, to string) (time.Time, time.Time, error) {
	parse := func(v string, end bool) (time.Time, error) {
		if t, err := time.Parse("2006-01-02", v); err == nil {
			if end {
				t = t.Add(24 * time.Hour)
			}
			return t, nil
		}
		return time.Parse(time.RFC3339Nano, v)
	}
	f, err1 := parse(from, false)
	t, err2 := parse(to, true)
	switch {
	case err1 != nil || err2 != nil:
		return f, t, payment.Errorf(payment.CodeInvalidRequest, "from and to are UTC dates (2026-12-02) or RFC 3339 times")
	case !t.After(f):
		return f, t, payment.Errorf(payment.CodeInvalidRequest, "to must be after from")
	case t.Sub(f) > 31*24*time.Hour:
		return f, t, payment.Errorf(payment.CodeInvalidRequest, "a window is at most 31 days")
	}
	return f, t, nil
}
