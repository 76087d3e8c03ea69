package store

// Merchant delivery lanes and endpoint circuit breakers (DESIGN.md
// "Isolation and overload"). Each merchant has at most one lane task out,
// fenced by lane_gen: a lane claims a batch of the merchant's due callbacks,
// sends them, updates the breaker, and either takes another turn (at the
// back of the queue, so merchants are served round-robin) or ends. Queued
// callback tasks are therefore bounded by the merchants with due work, never
// by the size of a backlog.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/payrail/payrail/internal/payment"
)

// LaneWake asks for merchant MerchantID's lane to run at generation Gen.
type LaneWake struct {
	MerchantID string `db:"merchant_id"`
	Gen        int64  `db:"lane_gen"`
}

// Breaker is an endpoint's circuit breaker as PostgreSQL holds it.
type Breaker struct {
	// Failures counts consecutive failed attempts (refused, timeout, 5xx).
	Failures     int        `db:"failures"`
	FailingSince *time.Time `db:"failing_since"`
	// OpenUntil is when the next probe may go; nil when closed.
	OpenUntil *time.Time    `db:"open_until"`
	Cooldown  time.Duration `db:"-"`
	LastError *string       `db:"last_error"`
}

// Open reports whether the breaker is open (cooling down or probing).
func (b Breaker) Open() bool { return b.OpenUntil != nil }

// Lane is one turn of a merchant's lane: the endpoint and its breaker.
type Lane struct {
	MerchantID      string `db:"merchant_id"`
	Gen             int64  `db:"lane_gen"`
	CallbackURL     string `db:"callback_url"`
	CallbackEnabled bool   `db:"callback_enabled"`
	Breaker
	CooldownMS int64 `db:"cooldown_ms"`
}

// A merchant's busy moments write many callbacks at once, and each wake
// used to update its one callback_endpoints row: every PAID transition of
// the merchant waited for the one before to commit (with its WAL flush),
// 28 ms per payment at 16 in flight on 2 cores (issue 19). Most wakes
// change nothing — a turn is already queued and marked dirty — so they
// now only read the row, under an advisory lock per merchant taken
// shared; a turn's start takes it exclusive before it clears lane_dirty
// and claims (StartLaneTurn). So a start waits for every wake that read
// "queued and dirty" to commit, and its claim sees their callbacks; a wake
// that comes after the start reads lane_dirty false and writes, under the
// row lock, as before. PostgreSQL's lock queue is fair: a start waiting
// for the exclusive lock is not starved by later wakes (they queue behind
// it), which row locks taken FOR SHARE would not promise. Merchants whose
// keys collide share a lock, which only makes a start wait a little.
const (
	sqlLaneWakeShared = `SELECT true FROM pg_advisory_xact_lock_shared(7316003, hashtext($1))`
	sqlLaneStartLock  = `SELECT true FROM pg_advisory_xact_lock(7316003, hashtext($1))`
	// A queued lane already marked dirty will look again; so will a cooling
	// breaker's, when the sweep wakes it. Read after the lock: in READ
	// COMMITTED each statement sees what committed before it began.
	sqlLaneAwake = `SELECT lane_dirty AND (lane_queued OR coalesce(open_until > $2, false)) FROM callback_endpoints WHERE merchant_id = $1`
)

// wakeLaneTx marks the merchant's lane as wanted, in tx (the transaction
// that wrote a callback, so a lane that is ending cannot miss it: its end is
// fenced on lane_dirty, which this sets under the row lock, and its start
// on the lane lock above). When no lane is out and the breaker is not
// cooling down, a new generation is taken and handed to ob, to be enqueued
// after commit. tx must be a transaction: the lane lock lasts until its end.
// lockLaneShared takes the merchant's lane lock shared until tx ends. A
// transaction that writes the endpoint row before it wakes the lane takes
// it first: a turn's start takes the lock and then the row, and the other
// order deadlocks with it.
func lockLaneShared(ctx context.Context, tx *sqlx.Tx, merchantID string) error {
	var locked bool
	if err := tx.GetContext(ctx, &locked, sqlLaneWakeShared, merchantID); err != nil {
		return fmt.Errorf("lane lock: %w", err)
	}
	return nil
}

const sqlWakeLane = `
INSERT INTO callback_endpoints AS e (merchant_id, lane_gen, lane_queued, lane_queued_at) VALUES ($1, 1, true, $2)
ON CONFLICT (merchant_id) DO UPDATE SET
    lane_dirty = true,
    lane_gen = CASE WHEN e.lane_queued OR e.open_until > $2 THEN e.lane_gen ELSE e.lane_gen + 1 END,
    lane_queued_at = CASE WHEN e.lane_queued OR e.open_until > $2 THEN e.lane_queued_at ELSE $2 END,
    lane_queued = e.lane_queued OR e.open_until IS NULL OR e.open_until <= $2
RETURNING merchant_id, lane_gen, lane_queued AND lane_queued_at = $2 AS woke`

func wakeLaneTx(ctx context.Context, tx *sqlx.Tx, ob *outbox, merchantID string, now time.Time) error {
	if err := lockLaneShared(ctx, tx, merchantID); err != nil {
		return err
	}
	var awake bool
	err := tx.GetContext(ctx, &awake, sqlLaneAwake, merchantID, now)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("wake lane: read: %w", err)
	}
	if awake {
		return nil
	}
	var r struct {
		LaneWake
		Woke bool `db:"woke"`
	}
	if err := tx.GetContext(ctx, &r, sqlWakeLane, merchantID, now); err != nil {
		return fmt.Errorf("wake lane: %w", err)
	}
	if r.Woke && ob != nil {
		started, err := ob.startTurn(ctx, tx, r.LaneWake, now)
		if err != nil {
			return err
		}
		if !started {
			ob.wake(r.LaneWake)
		}
	}
	return nil
}

// TurnRunner runs, after commit, the first turn of a lane that the
// transaction waking it started (Store.InlineTurns): the worker that made
// a payment PAID sends its callback at once, with no lane task, no queue
// wait and no transaction to start the turn (issue 19: a task is ~18
// Redis commands, the start a commit). It is used only when the lane was
// idle; a busy lane's callbacks wait for its next turn as before.
type TurnRunner interface {
	// Reserve takes a turn and up to a merchant's sends for it, and says
	// until when its claims hold; 0 slots when it has no room to spare
	// (the lane then gets a task, as without a runner).
	Reserve(now time.Time) (slots int, until time.Time)
	// Release gives back a reservation whose turn did not start.
	Release(slots int)
	// Run runs a started turn; it owns the reservation and must not block.
	Run(ctx context.Context, t LaneTurn)
}

// LaneTurn is a lane's turn started (lane_dirty cleared, Batch claimed)
// in the transaction that woke it, at Lane.Gen, with Slots reserved. No
// task exists for that generation: the runner keeps the lane's
// lane_queued_at fresh (TouchLane) while the turn lasts, or the sweep
// takes the lane for lost after callback.LaneCheckAfter and supersedes it.
type LaneTurn struct {
	Lane  Lane
	Batch []CallbackDelivery
	Slots int
	// WokeAt is the lane_queued_at the transaction wrote.
	WokeAt time.Time
}

// InlineTurns makes transactions that wake an idle lane start its turn and
// hand it to r after commit (a running worker's callback deliverer); nil
// stops it (the worker is stopping).
func (s *Store) InlineTurns(r TurnRunner) {
	if r == nil {
		s.turns.r.Store(nil)
		return
	}
	s.turns.r.Store(&runnerBox{r})
}

type runnerBox struct{ TurnRunner }

type turnHolder struct{ r atomic.Pointer[runnerBox] }

func (h *turnHolder) get() TurnRunner {
	if h == nil {
		return nil
	}
	if b := h.r.Load(); b != nil {
		return b.TurnRunner
	}
	return nil
}

// startTurn starts the turn of the lane tx has just woken, when a runner
// is set and has room. No other turn can be running, and no wake can have
// relied on this generation's lane_dirty yet (the lane was idle until
// this uncommitted upsert, whose row lock the others wait for), so the
// exclusive lane lock StartLaneTurn takes is not needed. A lane whose
// endpoint is disabled or whose breaker is not closed gets a task instead:
// those turns take the sweep's and the probe's paths.
func (o *outbox) startTurn(ctx context.Context, tx *sqlx.Tx, w LaneWake, now time.Time) (bool, error) {
	if o.runner == nil {
		return false, nil
	}
	for _, t := range o.turns {
		if t.Lane.MerchantID == w.MerchantID {
			return true, nil // its turn is out: this wake only marked it dirty
		}
	}
	slots, until := o.runner.Reserve(now)
	if slots == 0 {
		return false, nil
	}
	usable := true
	l, batch, err := startLaneTx(ctx, tx, w.MerchantID, w.Gen, now, until, func(l Lane) int {
		usable = l.CallbackEnabled && l.OpenUntil == nil
		if !usable {
			return 0
		}
		return slots
	})
	if err != nil || !usable {
		o.runner.Release(slots)
		if err != nil && !errors.Is(err, ErrStaleLane) {
			return false, fmt.Errorf("at its wake: %w", err)
		}
		return false, nil
	}
	o.turns = append(o.turns, LaneTurn{Lane: l, Batch: batch, Slots: slots, WokeAt: now})
	return true, nil
}

const sqlTouchLane = `UPDATE callback_endpoints SET lane_queued_at = $3 WHERE merchant_id = $1 AND lane_gen = $2 AND lane_queued`

// TouchLane tells the sweep that generation gen's turn, which has no task,
// is still running (see LaneTurn). false when the lane moved on.
func (s *Store) TouchLane(ctx context.Context, merchantID string, gen int64) (bool, error) {
	res, err := s.db.ExecContext(ctx, sqlTouchLane, merchantID, gen, s.now())
	if err != nil {
		return false, fmt.Errorf("touch lane: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// WakeLane wakes a merchant's lane outside any other transaction (an
// endpoint re-enabled, an operator's "probe now") and hands the wake to
// OnLanes.
func (s *Store) WakeLane(ctx context.Context, merchantID string) error {
	return s.inOutboxTx(ctx, func(tx *sqlx.Tx, ob *outbox) error {
		return wakeLaneTx(ctx, tx, ob, merchantID, s.now())
	})
}

// ErrStaleLane means a lane task's generation was superseded (or its lane
// ended): it must do nothing.
var ErrStaleLane = errors.New("store: stale lane generation")

const sqlStartLane = `
UPDATE callback_endpoints e SET lane_dirty = false, lane_queued_at = $3, updated_at = $3
FROM merchants m
WHERE e.merchant_id = $1 AND e.lane_gen = $2 AND e.lane_queued AND m.merchant_id = e.merchant_id
RETURNING e.merchant_id, e.lane_gen, m.callback_url, m.callback_enabled,
          e.failures, e.failing_since, e.open_until, e.cooldown_ms, e.last_error`

// StartLane begins a turn of generation gen: it clears lane_dirty (work
// that arrives from now on makes the lane look again) and returns the
// endpoint and its breaker. ErrStaleLane when gen is not the lane's.
func (s *Store) StartLane(ctx context.Context, merchantID string, gen int64) (Lane, error) {
	l, _, err := s.StartLaneTurn(ctx, merchantID, gen, time.Time{}, func(Lane) int { return 0 })
	return l, err
}

// sending_until is the send claim (migration 00003): a crashed sender's
// claim lapses, so nothing is stranded.
const sqlClaimLaneBatch = `
UPDATE callbacks c SET sending_until = $4
FROM (
    SELECT callback_id FROM callbacks
    WHERE merchant_id = $1 AND status = 'PENDING' AND next_attempt_at <= $2
      AND (sending_until IS NULL OR sending_until < $2)
    ORDER BY next_attempt_at, seq
    LIMIT $3
    FOR UPDATE SKIP LOCKED
) due
WHERE c.callback_id = due.callback_id
RETURNING c.callback_id, c.merchant_id, c.order_id, c.event_type, c.payload::text AS payload, c.status, c.attempt,
          c.next_attempt_at, c.seq`

// ClaimLaneBatch claims up to limit of the merchant's due PENDING callbacks,
// oldest due first, for sending until `until`.
func (s *Store) ClaimLaneBatch(ctx context.Context, merchantID string, until time.Time, limit int) ([]CallbackDelivery, error) {
	var out []CallbackDelivery
	if err := s.db.SelectContext(ctx, &out, sqlClaimLaneBatch, merchantID, s.now(), limit, until); err != nil {
		return nil, fmt.Errorf("claim lane batch: %w", err)
	}
	sortDeliveries(out)
	return out, nil
}

// LaneEnd is how a turn ends: the breaker it leaves and whether the lane
// takes another turn (more due work, or a probe that closed the breaker).
type LaneEnd struct {
	MerchantID string
	Gen        int64
	Breaker    Breaker
	// Again asks for another turn; otherwise the lane ends, unless work
	// arrived during the turn (lane_dirty), which also takes another turn.
	Again bool
	// Stay keeps the generation for that next turn: the task that ran
	// this one runs it, instead of a new task at the back of the queue.
	Stay bool
	// Unclaim gives back the claims of callbacks the turn did not send;
	// ClaimedUntil is the turn's claim, so a claim that lapsed and was
	// taken by another turn is left alone.
	Unclaim      []string
	ClaimedUntil time.Time
}

// (…) IS TRUE: by primary key only (package doc).
const sqlUnclaimCallbacks = `UPDATE callbacks SET sending_until = NULL WHERE callback_id = ANY($1) AND (status = 'PENDING') IS TRUE AND sending_until = $2`

const sqlEndLane = `
UPDATE callback_endpoints SET
    failures = $3, failing_since = $4, open_until = $5, cooldown_ms = $6, last_error = $7, updated_at = $8,
    lane_gen = CASE WHEN ($9 OR lane_dirty) AND ($5::timestamptz IS NULL OR $5 <= $8) AND NOT $10 THEN lane_gen + 1 ELSE lane_gen END,
    lane_queued = ($9 OR lane_dirty) AND ($5::timestamptz IS NULL OR $5 <= $8),
    lane_queued_at = $8,
    lane_dirty = false
WHERE merchant_id = $1 AND lane_gen = $2 AND lane_queued
RETURNING merchant_id, lane_gen, lane_queued`

// EndLane writes the breaker and ends the turn. When the lane goes on, next
// is its new generation to enqueue (again is true). A lane whose breaker is
// open ends whatever else: the sweep wakes it when the cool-down is over.
// ErrStaleLane when gen is not the lane's.
func (s *Store) EndLane(ctx context.Context, e LaneEnd) (next LaneWake, again bool, err error) {
	var r struct {
		LaneWake
		Queued bool `db:"lane_queued"`
	}
	b := e.Breaker
	err = s.db.GetContext(ctx, &r, sqlEndLane, e.MerchantID, e.Gen, b.Failures, b.FailingSince, b.OpenUntil,
		b.Cooldown.Milliseconds(), b.LastError, s.now(), e.Again, e.Stay)
	if errors.Is(err, sql.ErrNoRows) {
		return next, false, ErrStaleLane
	}
	if err != nil {
		return next, false, fmt.Errorf("end lane: %w", err)
	}
	return r.LaneWake, r.Queued, nil
}

// A lane is woken by the sweep when its merchant has due callbacks, its
// endpoint is enabled, its breaker is not cooling down, and no lane task is
// out, or the one out has not been heard of since lostBefore (Redis lost it,
// or its worker died). SKIP LOCKED keeps two sweeps apart.
const sqlWakeDueLanes = `
UPDATE callback_endpoints e SET lane_queued = true, lane_gen = e.lane_gen + 1, lane_queued_at = $1, lane_dirty = false
FROM (
    SELECT d.merchant_id FROM callback_endpoints d JOIN merchants m ON m.merchant_id = d.merchant_id
    WHERE m.callback_enabled
      AND (NOT d.lane_queued OR d.lane_queued_at < $2)
      AND (d.open_until IS NULL OR d.open_until <= $1)
      AND EXISTS (SELECT 1 FROM callbacks c WHERE c.merchant_id = d.merchant_id AND c.status = 'PENDING' AND c.next_attempt_at <= $1)
    ORDER BY d.merchant_id
    LIMIT $3
    FOR UPDATE OF d SKIP LOCKED
) due
WHERE e.merchant_id = due.merchant_id
RETURNING e.merchant_id, e.lane_gen`

// WakeDueLanes starts the lanes that have due work and no live task (the
// sweep, each tick: retries that became due, cool-downs that ended, lost
// lane tasks).
func (s *Store) WakeDueLanes(ctx context.Context, lostBefore time.Time, limit int) ([]LaneWake, error) {
	var out []LaneWake
	if err := s.db.SelectContext(ctx, &out, sqlWakeDueLanes, s.now(), lostBefore, limit); err != nil {
		return nil, fmt.Errorf("wake due lanes: %w", err)
	}
	return out, nil
}

const sqlExpireStaleCallbacks = `UPDATE callbacks SET status = 'DEAD', last_error = $3
WHERE callback_id IN (SELECT callback_id FROM callbacks WHERE status = 'PENDING' AND pending_since < $1
                      AND (sending_until IS NULL OR sending_until < $4) LIMIT $2 FOR UPDATE SKIP LOCKED)`

// ExpireStaleCallbacks makes DEAD, in a batch, the PENDING callbacks that
// have waited longer than the retry schedule's span (an open breaker kept
// them unsent), so nothing waits forever.
func (s *Store) ExpireStaleCallbacks(ctx context.Context, olderThan time.Duration, batch int) (int64, error) {
	now := s.now()
	res, err := s.db.ExecContext(ctx, sqlExpireStaleCallbacks,
		now.Add(-olderThan), batch, "not delivered within the retry schedule ("+olderThan.Round(time.Minute).String()+"): the endpoint kept failing", now)
	if err != nil {
		return 0, fmt.Errorf("expire stale callbacks: %w", err)
	}
	return res.RowsAffected()
}

// FailingEndpoint is an endpoint whose breaker is open or whose last
// attempts failed, for the ops console.
type FailingEndpoint struct {
	MerchantID   string     `db:"merchant_id"`
	MerchantName string     `db:"name"`
	CallbackURL  string     `db:"callback_url"`
	Enabled      bool       `db:"callback_enabled"`
	Failures     int        `db:"failures"`
	FailingSince *time.Time `db:"failing_since"`
	OpenUntil    *time.Time `db:"open_until"`
	LastError    *string    `db:"last_error"`
	Pending      int64      `db:"pending"`
}

const sqlFailingEndpoints = `
SELECT e.merchant_id, m.name, m.callback_url, m.callback_enabled, e.failures, e.failing_since, e.open_until, e.last_error,
       (SELECT count(*) FROM callbacks c WHERE c.merchant_id = e.merchant_id AND c.status = 'PENDING') AS pending
FROM callback_endpoints e JOIN merchants m ON m.merchant_id = e.merchant_id
WHERE e.failing_since IS NOT NULL OR NOT m.callback_enabled
ORDER BY e.failing_since NULLS LAST, e.merchant_id
LIMIT $1`

// FailingEndpoints lists endpoints that are failing (or disabled with
// callbacks waiting), longest-failing first, with their pending counts.
func (s *Store) FailingEndpoints(ctx context.Context, limit int) ([]FailingEndpoint, error) {
	var out []FailingEndpoint
	err := s.db.SelectContext(ctx, &out, sqlFailingEndpoints, limit)
	if err != nil {
		return nil, fmt.Errorf("failing endpoints: %w", err)
	}
	return out, nil
}

const sqlProbeNow = `UPDATE callback_endpoints SET open_until = CASE WHEN open_until IS NULL THEN NULL ELSE $2::timestamptz END, updated_at = $2 WHERE merchant_id = $1`

// ProbeNow ends an open breaker's cool-down (an operator fixed the
// endpoint) and wakes the lane: the next turn sends one probe.
// MERCHANT_NOT_FOUND when there is no such endpoint.
func (s *Store) ProbeNow(ctx context.Context, merchantID string) error {
	return s.inOutboxTx(ctx, func(tx *sqlx.Tx, ob *outbox) error {
		if err := lockLaneShared(ctx, tx, merchantID); err != nil {
			return err
		}
		now := s.now()
		res, err := tx.ExecContext(ctx, sqlProbeNow, merchantID, now)
		if err != nil {
			return fmt.Errorf("probe now: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return payment.Errorf(payment.CodeMerchantNotFound, "no callback endpoint for merchant %s", merchantID)
		}
		if err := s.auditTx(ctx, tx, "endpoint.probed", merchantID, nil, nil); err != nil {
			return err
		}
		return wakeLaneTx(ctx, tx, ob, merchantID, now)
	})
}

const sqlQueuedLanes = `
SELECT e.merchant_id, e.lane_gen FROM callback_endpoints e
WHERE e.lane_queued AND e.lane_queued_at < $1 AND e.lane_queued_at >= $2
  AND (e.open_until IS NULL OR e.open_until <= $3)
  AND EXISTS (SELECT 1 FROM callbacks c WHERE c.merchant_id = e.merchant_id AND c.status = 'PENDING' AND c.next_attempt_at <= $3)
ORDER BY e.lane_queued_at
LIMIT $4`

// QueuedLanes are the lanes with due work whose task went out between
// lostBefore and queuedBefore and has not been heard of since: the sweep
// asks Redis whether it still holds them (a failover or a flush loses
// tasks) instead of waiting for lostBefore, when WakeDueLanes takes them.
func (s *Store) QueuedLanes(ctx context.Context, queuedBefore, lostBefore time.Time, limit int) ([]LaneWake, error) {
	var out []LaneWake
	if err := s.db.SelectContext(ctx, &out, sqlQueuedLanes, queuedBefore, lostBefore, s.now(), limit); err != nil {
		return nil, fmt.Errorf("queued lanes: %w", err)
	}
	return out, nil
}

const sqlRequeueLane = `
UPDATE callback_endpoints SET lane_gen = lane_gen + 1, lane_queued_at = $3, lane_dirty = false
WHERE merchant_id = $1 AND lane_gen = $2 AND lane_queued AND lane_queued_at < $4
RETURNING merchant_id, lane_gen`

// RequeueLane takes a new generation for a lane whose task Redis no longer
// holds and that has not been heard of since queuedBefore; ok is false
// when the lane moved on meanwhile (its task was only late, and has run)
// or was heard of (a turn with no task touched it: TouchLane).
func (s *Store) RequeueLane(ctx context.Context, lost LaneWake, queuedBefore time.Time) (next LaneWake, ok bool, err error) {
	err = s.db.GetContext(ctx, &next, sqlRequeueLane, lost.MerchantID, lost.Gen, s.now(), queuedBefore)
	if errors.Is(err, sql.ErrNoRows) {
		return next, false, nil
	}
	if err != nil {
		return next, false, fmt.Errorf("requeue lane: %w", err)
	}
	return next, true, nil
}

// StartLaneTurn is StartLane and ClaimLaneBatch in one transaction (one
// commit per turn, not two): it begins generation gen's turn and claims up
// to limit(lane) of the merchant's due callbacks for sending until
// `until`. limit sees the endpoint and its breaker (0: claim nothing).
// ErrStaleLane when gen is not the lane's.
func (s *Store) StartLaneTurn(ctx context.Context, merchantID string, gen int64, until time.Time, limit func(Lane) int) (Lane, []CallbackDelivery, error) {
	var l Lane
	var batch []CallbackDelivery
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		// Every wake that read this lane "queued and dirty" has committed
		// once this is granted, so the claim below sees its callback.
		var locked bool
		if err := tx.GetContext(ctx, &locked, sqlLaneStartLock, merchantID); err != nil {
			return fmt.Errorf("start lane: lock: %w", err)
		}
		var err error
		l, batch, err = startLaneTx(ctx, tx, merchantID, gen, s.now(), until, limit)
		return err
	})
	if err != nil {
		return Lane{}, nil, err
	}
	return l, batch, nil
}

// startLaneTx begins generation gen's turn in tx (clears lane_dirty) and
// claims up to limit(lane) of the merchant's due callbacks until `until`,
// oldest first: StartLaneTurn's work after its lock, and a turn started at
// its wake (outbox.startTurn). ErrStaleLane when gen is not the lane's.
func startLaneTx(ctx context.Context, tx *sqlx.Tx, merchantID string, gen int64, now, until time.Time, limit func(Lane) int) (Lane, []CallbackDelivery, error) {
	var l Lane
	err := tx.GetContext(ctx, &l, sqlStartLane, merchantID, gen, now)
	if errors.Is(err, sql.ErrNoRows) {
		return l, nil, ErrStaleLane
	}
	if err != nil {
		return l, nil, fmt.Errorf("start lane: %w", err)
	}
	l.Cooldown = time.Duration(l.CooldownMS) * time.Millisecond
	var batch []CallbackDelivery
	if n := limit(l); n > 0 {
		if err := tx.SelectContext(ctx, &batch, sqlClaimLaneBatch, merchantID, now, n, until); err != nil {
			return l, nil, fmt.Errorf("claim lane batch: %w", err)
		}
	}
	sortDeliveries(batch)
	return l, batch, nil
}

// FinishLaneTurn records a turn's attempts and ends it (EndLane) in one
// transaction: one commit per turn, not one per callback and one more.
// recorded[i] is false for an outcome whose callback had moved on (another
// delivery of it got there first; nothing written for it). When the lane's
// generation was superseded the attempts are still recorded — they were
// really sent — and err is ErrStaleLane.
func (s *Store) FinishLaneTurn(ctx context.Context, outcomes []CallbackOutcome, e LaneEnd) (recorded []bool, next LaneWake, again bool, err error) {
	stale := false
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		if recorded, err = recordAttemptsTx(ctx, tx, outcomes); err != nil {
			return err
		}
		if len(e.Unclaim) > 0 {
			if _, err := tx.ExecContext(ctx, sqlUnclaimCallbacks, pq.StringArray(e.Unclaim), e.ClaimedUntil); err != nil {
				return fmt.Errorf("unclaim callbacks: %w", err)
			}
		}
		var r struct {
			LaneWake
			Queued bool `db:"lane_queued"`
		}
		b := e.Breaker
		err = tx.GetContext(ctx, &r, sqlEndLane, e.MerchantID, e.Gen, b.Failures, b.FailingSince, b.OpenUntil,
			b.Cooldown.Milliseconds(), b.LastError, s.now(), e.Again, e.Stay)
		if errors.Is(err, sql.ErrNoRows) {
			stale = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("end lane: %w", err)
		}
		next, again = r.LaneWake, r.Queued
		return nil
	})
	if err != nil {
		return make([]bool, len(outcomes)), LaneWake{}, false, err
	}
	if stale {
		return recorded, LaneWake{}, false, ErrStaleLane
	}
	return recorded, next, again, nil
}
