-- +goose Up
-- One row per merchant endpoint: its delivery lane (at most one lane task out
-- per merchant, fenced by lane_gen) and its circuit breaker. PostgreSQL is the
-- truth; asynq only carries the lane's next turn.
CREATE TABLE callback_endpoints (
    merchant_id    text PRIMARY KEY REFERENCES merchants (merchant_id),
    lane_gen       bigint NOT NULL DEFAULT 0,
    -- a lane task is out (queued or running) for lane_gen
    lane_queued    boolean NOT NULL DEFAULT false,
    -- work arrived while the lane was out: it must look again before it ends
    lane_dirty     boolean NOT NULL DEFAULT false,
    lane_queued_at timestamptz,
    -- consecutive failed attempts (refused, timeout, 5xx)
    failures       integer NOT NULL DEFAULT 0,
    failing_since  timestamptz,
    -- the breaker is open until then; NULL when closed
    open_until     timestamptz,
    cooldown_ms    bigint NOT NULL DEFAULT 0,
    last_error     text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO callback_endpoints (merchant_id) SELECT merchant_id FROM merchants;
CREATE INDEX callback_endpoints_failing ON callback_endpoints (failing_since) WHERE failing_since IS NOT NULL;

-- When the callback's current generation began waiting: a PENDING callback
-- older than the schedule's span is DEAD even if its breaker kept it unsent.
ALTER TABLE callbacks ADD COLUMN pending_since timestamptz NOT NULL DEFAULT now();
UPDATE callbacks SET pending_since = created_at WHERE status = 'PENDING';
CREATE INDEX callbacks_merchant_due ON callbacks (merchant_id, next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX callbacks_pending_since ON callbacks (pending_since) WHERE status = 'PENDING';

-- +goose Down
DROP INDEX callbacks_pending_since;
DROP INDEX callbacks_merchant_due;
ALTER TABLE callbacks DROP COLUMN pending_since;
DROP TABLE callback_endpoints;
