-- +goose Up
-- A merchant's own request rate at the ingress; NULL = PAYRAIL_RATE_LIMIT/_BURST.
ALTER TABLE merchants
    ADD COLUMN rate_limit_per_second integer CHECK (rate_limit_per_second BETWEEN 1 AND 100000),
    ADD COLUMN rate_limit_burst integer CHECK (rate_limit_burst BETWEEN 1 AND 200000),
    ADD CONSTRAINT merchants_rate_limit_pair CHECK ((rate_limit_per_second IS NULL) = (rate_limit_burst IS NULL));

-- +goose Down
ALTER TABLE merchants DROP CONSTRAINT merchants_rate_limit_pair, DROP COLUMN rate_limit_burst, DROP COLUMN rate_limit_per_second;
