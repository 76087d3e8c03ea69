-- +goose Up
-- One row per kind of PG alert an operator must act on (today: the PG
-- refusing payrail's own credentials or request). Bounded: an upsert per
-- occurrence, never a row per call. The ops console shows a banner while
-- last_at is recent.
CREATE TABLE pg_alerts (
    kind      text PRIMARY KEY,
    op        text NOT NULL,
    code      text NOT NULL,
    message   text NOT NULL,
    first_at  timestamptz NOT NULL,
    last_at   timestamptz NOT NULL,
    count     bigint NOT NULL DEFAULT 1
);

-- +goose Down
DROP TABLE pg_alerts;
