-- +goose NO TRANSACTION
-- +goose Up
-- The metrics count DEAD callbacks (store.CountInFlight); without this
-- partial index that count reads the whole callbacks table at every
-- refresh. CONCURRENTLY: callbacks is large and written to all the time.
CREATE INDEX CONCURRENTLY IF NOT EXISTS callbacks_dead ON callbacks (callback_id) WHERE status = 'DEAD';

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS callbacks_dead;
