package store

import (
	"context"
	"fmt"
	"time"
)

// Retention purges run in batches so that one sweep never holds locks or
// a connection for long, whatever the backlog; the next sweep goes on.
const (
	purgePGEventsSQL = `DELETE FROM pg_events WHERE (provider, event_key) IN (
SELECT provider, event_key FROM pg_events WHERE state <> 'RECEIVED' AND received_at < $1 ORDER BY received_at LIMIT $2)`
	purgeIdempotencySQL = `DELETE FROM idempotency_keys WHERE (merchant_id, method, path, idem_key) IN (
SELECT merchant_id, method, path, idem_key FROM idempotency_keys WHERE expires_at < $1 AND lease_until < $1 ORDER BY expires_at LIMIT $2)`
)

const sqlPurgeReconRuns = `DELETE FROM recon_runs WHERE run_id IN (SELECT run_id FROM recon_runs
WHERE finished_at < $1 ORDER BY finished_at LIMIT $2)`

// PurgeExpired deletes at most batch settled PG events received before now
// minus eventRetention, and at most batch Idempotency-Key records past
// their expiry (and their lease). Events still RECEIVED are never purged:
// they are work not yet done. It returns how many rows of each went.
func (s *Store) PurgeExpired(ctx context.Context, eventRetention time.Duration, batch int) (events, keys int64, err error) {
	now := s.now()
	res, err := s.db.ExecContext(ctx, purgePGEventsSQL, now.Add(-eventRetention), batch)
	if err != nil {
		return 0, 0, fmt.Errorf("purge pg events: %w", err)
	}
	events, _ = res.RowsAffected()
	res, err = s.db.ExecContext(ctx, purgeIdempotencySQL, now, batch)
	if err != nil {
		return events, 0, fmt.Errorf("purge idempotency keys: %w", err)
	}
	keys, _ = res.RowsAffected()
	// Reconciliation runs are kept ReconRetention (their items go with
	// them); a run a day, so one statement.
	if _, err := s.db.ExecContext(ctx, sqlPurgeReconRuns, now.Add(-ReconRetention), batch); err != nil {
		return events, keys, fmt.Errorf("purge recon runs: %w", err)
	}
	return events, keys, nil
}

// ReconRetention is how long finished reconciliation runs are kept: over
// a year, so an auditor's question about any day of the last one has its
// answer.
const ReconRetention = 400 * 24 * time.Hour

const confirmingByMerchantSQL = `SELECT merchant_id, count(*) FROM orders WHERE status = 'CONFIRMING' GROUP BY merchant_id`

// ConfirmingByMerchant counts CONFIRMING orders per merchant (load
// shedding's fair share). The orders_confirming partial index holds only
// those rows, so the read is as small as the backlog.
func (s *Store) ConfirmingByMerchant(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, confirmingByMerchantSQL)
	if err != nil {
		return nil, fmt.Errorf("confirming by merchant: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}
