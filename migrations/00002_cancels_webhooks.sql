-- +goose Up
-- Merchant cancels: the amount is reserved on the order when the row is written.
CREATE TABLE cancels (
    cancel_id          text PRIMARY KEY,
    order_id           text NOT NULL REFERENCES orders (order_id),
    merchant_id        text NOT NULL REFERENCES merchants (merchant_id),
    amount             bigint NOT NULL CHECK (amount > 0),
    reason             text NOT NULL,
    status             text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    pg_idempotency_key text NOT NULL,
    failure_code       text,
    failure_message    text,
    attempts           integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cancels_pending ON cancels (created_at) WHERE status = 'PENDING';
CREATE INDEX cancels_order ON cancels (order_id);

-- Refunds of PG approvals that arrived for an order that can no longer be paid.
CREATE TABLE refunds (
    refund_id          text PRIMARY KEY,
    order_id           text NOT NULL REFERENCES orders (order_id),
    payment_key        text NOT NULL UNIQUE,
    amount             bigint NOT NULL,
    status             text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SUCCEEDED')),
    pg_idempotency_key text NOT NULL,
    attempts           integer NOT NULL DEFAULT 0,
    last_error         text,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_pending ON refunds (next_attempt_at) WHERE status = 'PENDING';

-- PG webhooks as received: stored once per event key, applied by a worker.
CREATE TABLE pg_events (
    event_key   text NOT NULL,
    provider    text NOT NULL,
    payment_key text,
    order_id    text,
    pg_status   text,
    body        jsonb NOT NULL,
    state       text NOT NULL DEFAULT 'RECEIVED' CHECK (state IN ('RECEIVED', 'APPLIED', 'IGNORED', 'REJECTED')),
    note        text,
    received_at timestamptz NOT NULL DEFAULT now(),
    applied_at  timestamptz,
    PRIMARY KEY (provider, event_key)
);
CREATE INDEX pg_events_received ON pg_events (received_at) WHERE state = 'RECEIVED';

CREATE TABLE operators (
    operator_id   text PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE operators;
DROP TABLE pg_events;
DROP TABLE refunds;
DROP TABLE cancels;
