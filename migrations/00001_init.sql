-- +goose Up
CREATE TABLE merchants (
    merchant_id      text PRIMARY KEY,
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    client_id        text NOT NULL UNIQUE,
    status           text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'SUSPENDED')),
    callback_url     text NOT NULL,
    return_url       text,
    callback_enabled boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Secrets are AES-256-GCM ciphertext; key_id names the encryption key so keys rotate.
CREATE TABLE merchant_secrets (
    secret_id   text PRIMARY KEY,
    merchant_id text NOT NULL REFERENCES merchants (merchant_id),
    kind        text NOT NULL CHECK (kind IN ('client', 'callback')),
    key_id      text NOT NULL,
    ciphertext  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX merchant_secrets_active ON merchant_secrets (merchant_id, kind) WHERE revoked_at IS NULL;

CREATE TABLE orders (
    seq                    bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    order_id               text PRIMARY KEY CHECK (order_id ~ '^[A-Za-z0-9_-]{6,64}$'),
    merchant_id            text NOT NULL REFERENCES merchants (merchant_id),
    merchant_order_id      text CHECK (merchant_order_id ~ '^[A-Za-z0-9_-]{6,64}$'),
    amount                 bigint NOT NULL CHECK (amount BETWEEN 1 AND 1000000000000),
    currency               text NOT NULL DEFAULT 'KRW',
    order_name             text NOT NULL,
    success_url            text,
    fail_url               text,
    status                 text NOT NULL DEFAULT 'CREATED' CHECK (status IN
        ('CREATED', 'CONFIRMING', 'PAID', 'PARTIALLY_CANCELED', 'CANCELED', 'FAILED', 'EXPIRED')),
    version                integer NOT NULL DEFAULT 1,
    payment_token_hash     bytea NOT NULL,
    payment_key            text,
    pg_idempotency_key     text,
    method                 text,
    approved_at            timestamptz,
    failure_code           text,
    failure_message        text,
    canceled_amount        bigint NOT NULL DEFAULT 0 CHECK (canceled_amount >= 0),
    reserved_cancel_amount bigint NOT NULL DEFAULT 0 CHECK (reserved_cancel_amount >= 0),
    needs_reconciliation   boolean NOT NULL DEFAULT false,
    outcome_unknown        boolean NOT NULL DEFAULT false,
    confirm_attempts       integer NOT NULL DEFAULT 0,
    confirm_requested_at   timestamptz,
    next_check_at          timestamptz,
    expires_at             timestamptz NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK (canceled_amount + reserved_cancel_amount <= amount),
    UNIQUE (merchant_id, merchant_order_id)
);
CREATE INDEX orders_merchant_seq ON orders (merchant_id, seq DESC);
CREATE INDEX orders_merchant_status_seq ON orders (merchant_id, status, seq DESC);
CREATE UNIQUE INDEX orders_payment_key ON orders (payment_key) WHERE payment_key IS NOT NULL;
CREATE INDEX orders_confirming ON orders (next_check_at) WHERE status = 'CONFIRMING';
CREATE INDEX orders_created_expiry ON orders (expires_at) WHERE status = 'CREATED';

-- Append-only history of every order: transitions, PG calls, security events.
CREATE TABLE payment_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    text NOT NULL REFERENCES orders (order_id),
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    action      text NOT NULL,
    from_status text,
    to_status   text,
    actor       text NOT NULL DEFAULT 'system',
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX payment_log_order ON payment_log (order_id, id);

-- +goose StatementBegin
CREATE FUNCTION payment_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payment_log is append-only';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER payment_log_no_update BEFORE UPDATE OR DELETE ON payment_log
    FOR EACH ROW EXECUTE FUNCTION payment_log_append_only();

-- Merchant Idempotency-Key records. The stored response is encrypted: it may hold a secret.
CREATE TABLE idempotency_keys (
    merchant_id     text NOT NULL REFERENCES merchants (merchant_id),
    method          text NOT NULL,
    path            text NOT NULL,
    idem_key        text NOT NULL,
    request_hash    bytea NOT NULL,
    state           text NOT NULL CHECK (state IN ('IN_FLIGHT', 'DONE')),
    owner_token     text NOT NULL,
    lease_until     timestamptz NOT NULL,
    response_status integer,
    response_key_id text,
    response_body   bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, method, path, idem_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- The callback outbox: written in the same transaction as the change it reports.
-- Its schedule (attempt, next_attempt_at) lives here; asynq only triggers it.
CREATE TABLE callbacks (
    callback_id     text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id     text NOT NULL REFERENCES merchants (merchant_id),
    order_id        text NOT NULL REFERENCES orders (order_id),
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED', 'DEAD')),
    attempt         integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    enqueued_at     timestamptz,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX callbacks_due ON callbacks (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX callbacks_order ON callbacks (order_id, seq);
CREATE INDEX callbacks_merchant ON callbacks (merchant_id, seq DESC);

CREATE TABLE callback_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    callback_id     text NOT NULL REFERENCES callbacks (callback_id),
    attempt         integer NOT NULL,
    started_at      timestamptz NOT NULL,
    status_code     integer,
    latency_ms      integer NOT NULL,
    error           text,
    response_prefix text
);
CREATE INDEX callback_attempts_callback ON callback_attempts (callback_id, attempt);

-- +goose Down
DROP TABLE callback_attempts;
DROP TABLE callbacks;
DROP TABLE idempotency_keys;
DROP TABLE payment_log;
DROP FUNCTION payment_log_append_only;
DROP TABLE orders;
DROP TABLE merchant_secrets;
DROP TABLE merchants;
