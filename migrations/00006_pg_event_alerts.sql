-- +goose Up
-- The ops timeline shows the PG events a lookup contradicted (REJECTED):
-- they are the operator's alert now that no ignored or rejected event
-- writes to an order's history.
CREATE INDEX pg_events_rejected_order ON pg_events (order_id, received_at) WHERE state = 'REJECTED';
-- The retention purge deletes settled events oldest first, in batches.
CREATE INDEX pg_events_settled_age ON pg_events (received_at) WHERE state <> 'RECEIVED';

-- +goose Down
DROP INDEX pg_events_settled_age;
DROP INDEX pg_events_rejected_order;
