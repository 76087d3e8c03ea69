-- +goose Up
-- An operator can be suspended (kept for the history it wrote) or deleted;
-- either ends their console sessions at once: every console request checks
-- the operator is still ACTIVE.
ALTER TABLE operators ADD COLUMN status text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'SUSPENDED'));

-- +goose Down
ALTER TABLE operators DROP COLUMN status;
