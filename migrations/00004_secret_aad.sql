-- +goose Up
-- Which associated data each ciphertext was sealed with, so a reader rebuilds
-- exactly that one (never tries several): 1 = the row's own id alone (rows
-- written before this migration), 2 = "v2|table.kind|merchant|row"
-- (secretbox.AssociatedData), which also binds the merchant and the kind.
-- `payrailctl keys reencrypt` moves every row to the primary key and 2.
-- The default is 1 so a replica still running the previous release, which
-- writes version-1 ciphertexts without naming the column, labels them right.
ALTER TABLE merchant_secrets ADD COLUMN aad_version smallint NOT NULL DEFAULT 1
    CHECK (aad_version IN (1, 2));
ALTER TABLE idempotency_keys ADD COLUMN response_aad_version smallint NOT NULL DEFAULT 1
    CHECK (response_aad_version IN (1, 2));

-- +goose Down
ALTER TABLE idempotency_keys DROP COLUMN response_aad_version;
ALTER TABLE merchant_secrets DROP COLUMN aad_version;
