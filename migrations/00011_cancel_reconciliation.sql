-- +goose Up
-- A cancel whose PG outcome stays unknown past the PG session window is
-- flagged for operators (the console's "needs attention", with the amount
-- it holds) and reconciled by lookup; before, it retried unseen for ever.
ALTER TABLE cancels ADD COLUMN needs_reconciliation boolean NOT NULL DEFAULT false;
CREATE INDEX cancels_needs_reconciliation ON cancels (created_at) WHERE status = 'PENDING' AND needs_reconciliation;

-- +goose Down
DROP INDEX cancels_needs_reconciliation;
ALTER TABLE cancels DROP COLUMN needs_reconciliation;
