-- +goose NO TRANSACTION
-- +goose Up
-- Virtual accounts (가상계좌): an order can wait for the buyer's bank
-- transfer (AWAITING_DEPOSIT). The issued account is stored on the order
-- (what the merchant shows the buyer) with the PG's secret for the
-- payment's DEPOSIT_CALLBACK, sealed with the keyring (AAD binds it to the
-- order). A cancel after the deposit carries the buyer's refund account,
-- sealed the same way: it is personal data, needed only to call the PG.
--
-- The status CHECK is swapped in one statement and validated separately
-- (VALIDATE takes no lock that blocks writes); the due-date index is built
-- CONCURRENTLY, outside a transaction, like 00010.
ALTER TABLE orders DROP CONSTRAINT orders_status_check,
    ADD CONSTRAINT orders_status_check CHECK (status IN
        ('CREATED', 'CONFIRMING', 'AWAITING_DEPOSIT', 'PAID', 'PARTIALLY_CANCELED', 'CANCELED', 'FAILED', 'EXPIRED')) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_status_check;
ALTER TABLE orders
    ADD COLUMN IF NOT EXISTS va_bank_code          text,
    ADD COLUMN IF NOT EXISTS va_account_number     text,
    ADD COLUMN IF NOT EXISTS va_customer_name      text,
    ADD COLUMN IF NOT EXISTS va_due_date           timestamptz,
    ADD COLUMN IF NOT EXISTS va_secret_key_id      text,
    ADD COLUMN IF NOT EXISTS va_secret_aad_version integer,
    ADD COLUMN IF NOT EXISTS va_secret             bytea;
ALTER TABLE cancels
    ADD COLUMN IF NOT EXISTS refund_account_key_id      text,
    ADD COLUMN IF NOT EXISTS refund_account_aad_version integer,
    ADD COLUMN IF NOT EXISTS refund_account             bytea;
-- The sweep's due-date scan: awaiting orders by when they are next looked at.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_awaiting_deposit ON orders (next_check_at) WHERE status = 'AWAITING_DEPOSIT';

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS orders_awaiting_deposit;
ALTER TABLE cancels DROP COLUMN refund_account_key_id, DROP COLUMN refund_account_aad_version, DROP COLUMN refund_account;
ALTER TABLE orders DROP COLUMN va_bank_code, DROP COLUMN va_account_number, DROP COLUMN va_customer_name, DROP COLUMN va_due_date,
    DROP COLUMN va_secret_key_id, DROP COLUMN va_secret_aad_version, DROP COLUMN va_secret;
ALTER TABLE orders DROP CONSTRAINT orders_status_check,
    ADD CONSTRAINT orders_status_check CHECK (status IN
        ('CREATED', 'CONFIRMING', 'PAID', 'PARTIALLY_CANCELED', 'CANCELED', 'FAILED', 'EXPIRED')) NOT VALID;
