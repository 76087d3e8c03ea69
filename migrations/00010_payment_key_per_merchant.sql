-- +goose Up
-- A paymentKey was unique across all merchants and stayed taken by a FAILED
-- order: merchant A confirming its own order with merchant B's paymentKey
-- either got a 409 saying the key exists (a cross-merchant signal) or, by
-- binding it first, kept it from B's order for good. Now a key is unique
-- within one merchant's live orders only; whose order it really is, the PG
-- decides (the worker fails an order whose key the PG says is another
-- order's), and a FAILED order releases its key.
DROP INDEX orders_payment_key;
CREATE UNIQUE INDEX orders_merchant_payment_key ON orders (merchant_id, payment_key)
    WHERE payment_key IS NOT NULL AND status <> 'FAILED';
CREATE INDEX orders_payment_key ON orders (payment_key) WHERE payment_key IS NOT NULL;

-- +goose Down
DROP INDEX orders_payment_key;
DROP INDEX orders_merchant_payment_key;
CREATE UNIQUE INDEX orders_payment_key ON orders (payment_key) WHERE payment_key IS NOT NULL;
