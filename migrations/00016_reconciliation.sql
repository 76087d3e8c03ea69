-- +goose NO TRANSACTION
-- +goose Up
-- Reconciliation with the PG's books (DESIGN.md "Reconciliation"): a run
-- compares one window of the PG's transaction list with payrail's orders,
-- cancels and refunds; every disagreement is an item with what was done.
-- recon_pg_rows stages the PG's rows of a running run (UNLOGGED: a crash
-- loses only a run that is re-run anyway) so the comparison is a join in
-- PostgreSQL, not a million rows in the worker's memory; a run deletes its
-- rows when it ends.
CREATE TABLE IF NOT EXISTS recon_runs (
    run_id          text PRIMARY KEY,
    window_from     timestamptz NOT NULL,
    window_to       timestamptz NOT NULL,
    trigger         text NOT NULL,
    requested_by    text NOT NULL DEFAULT '',
    status          text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED')),
    pg_rows         bigint NOT NULL DEFAULT 0,
    matched         bigint NOT NULL DEFAULT 0,
    missing_here    integer NOT NULL DEFAULT 0,
    missing_at_pg   integer NOT NULL DEFAULT 0,
    amount_mismatch integer NOT NULL DEFAULT 0,
    cancel_mismatch integer NOT NULL DEFAULT 0,
    repaired        integer NOT NULL DEFAULT 0,
    flagged         integer NOT NULL DEFAULT 0,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    heartbeat_at    timestamptz,
    finished_at     timestamptz,
    CHECK (window_to > window_from)
);
-- One live run per window, whichever worker or operator asked.
CREATE UNIQUE INDEX IF NOT EXISTS recon_runs_one_live ON recon_runs (window_from, window_to) WHERE status IN ('PENDING', 'RUNNING');
CREATE INDEX IF NOT EXISTS recon_runs_created ON recon_runs (created_at DESC);

CREATE TABLE IF NOT EXISTS recon_items (
    run_id          text NOT NULL REFERENCES recon_runs (run_id) ON DELETE CASCADE,
    item_id         bigint GENERATED ALWAYS AS IDENTITY,
    class           text NOT NULL CHECK (class IN ('MISSING_HERE', 'MISSING_AT_PG', 'AMOUNT_MISMATCH', 'CANCEL_MISMATCH')),
    payment_key     text NOT NULL,
    order_id        text NOT NULL DEFAULT '',
    merchant_id     text NOT NULL DEFAULT '',
    pg_amount       bigint,
    our_amount      bigint,
    action          text NOT NULL,
    needs_attention boolean NOT NULL,
    detail          text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, item_id),
    UNIQUE (run_id, class, payment_key)
);
CREATE INDEX IF NOT EXISTS recon_items_attention ON recon_items (created_at DESC) WHERE needs_attention;

CREATE UNLOGGED TABLE IF NOT EXISTS recon_pg_rows (
    run_id          text NOT NULL,
    transaction_key text NOT NULL,
    payment_key     text NOT NULL,
    order_id        text NOT NULL,
    is_cancel       boolean NOT NULL,
    amount          bigint NOT NULL,
    at              timestamptz NOT NULL,
    PRIMARY KEY (run_id, transaction_key)
);
CREATE INDEX IF NOT EXISTS recon_pg_rows_payment ON recon_pg_rows (run_id, payment_key);

-- "PAID here" in a window: orders by when the PG approved them.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_approved_at ON orders (approved_at) WHERE approved_at IS NOT NULL;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS orders_approved_at;
DROP TABLE IF EXISTS recon_pg_rows;
DROP TABLE IF EXISTS recon_items;
DROP TABLE IF EXISTS recon_runs;
