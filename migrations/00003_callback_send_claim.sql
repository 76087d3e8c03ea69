-- +goose Up
-- While a trigger is sending an attempt it holds the callback until this
-- time, so a second trigger of the same attempt (a sweep's re-enqueue of a
-- trigger it presumed lost) does not send it again at the same moment.
ALTER TABLE callbacks ADD COLUMN sending_until timestamptz;

-- +goose Down
ALTER TABLE callbacks DROP COLUMN sending_until;
