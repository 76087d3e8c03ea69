-- +goose Up
-- TOTP second factor for operators (RFC 6238): the secret sealed with the
-- keyring (AAD binds it to the operator), the last time step accepted (a
-- code is never accepted twice), and single-use recovery codes stored as
-- SHA-256 hashes.
ALTER TABLE operators
    ADD COLUMN totp_key_id      text,
    ADD COLUMN totp_secret      bytea,
    ADD COLUMN totp_enabled_at  timestamptz,
    ADD COLUMN totp_last_step   bigint NOT NULL DEFAULT 0;
CREATE TABLE operator_recovery_codes (
    operator_id text NOT NULL REFERENCES operators (operator_id) ON DELETE CASCADE,
    code_hash   bytea NOT NULL,
    used_at     timestamptz,
    PRIMARY KEY (operator_id, code_hash)
);

-- +goose Down
DROP TABLE operator_recovery_codes;
ALTER TABLE operators DROP COLUMN totp_key_id, DROP COLUMN totp_secret, DROP COLUMN totp_enabled_at, DROP COLUMN totp_last_step;
