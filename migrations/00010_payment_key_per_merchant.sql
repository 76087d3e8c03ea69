-- +goose NO TRANSACTION
-- +goose Up
-- A paymentKey was unique across all merchants and stayed taken by a FAILED
-- order: merchant A confirming its own order with merchant B's paymentKey
-- either got a 409 saying the key exists (a cross-merchant signal) or, by
-- binding it first, kept it from B's order for good. Now a key is unique
-- within one merchant's live orders only; whose order it really is, the PG
-- decides (the worker fails an order whose key the PG says is another
-- order's), and a FAILED order releases its key.
--
-- CONCURRENTLY, outside a transaction, so a large orders table keeps taking
-- writes while the indexes build; the new unique index exists before the
-- old one goes (today's rows satisfy it: global uniqueness implies it), so
-- there is never a moment without one. IF NOT EXISTS makes a rerun after an
-- interruption safe (drop an INVALID index left by one first).
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_merchant_payment_key ON orders (merchant_id, payment_key)
    WHERE payment_key IS NOT NULL AND status <> 'FAILED';
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_payment_key_any ON orders (payment_key) WHERE payment_key IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS orders_payment_key;

-- +goose Down
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_payment_key ON orders (payment_key) WHERE payment_key IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS orders_payment_key_any;
DROP INDEX CONCURRENTLY IF EXISTS orders_merchant_payment_key;
