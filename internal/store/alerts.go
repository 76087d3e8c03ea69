package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PGAlert is an alert about the PG that needs an operator (pg_alerts).
type PGAlert struct {
	Kind    string    `db:"kind"`
	Op      string    `db:"op"`
	Code    string    `db:"code"`
	Message string    `db:"message"`
	FirstAt time.Time `db:"first_at"`
	LastAt  time.Time `db:"last_at"`
	Count   int64     `db:"count"`
}

// AlertPGMisconfigured is the kind of a PG refusing payrail's credentials or request.
const AlertPGMisconfigured = "pg_misconfigured"

const sqlNotePGAlert = `INSERT INTO pg_alerts (kind, op, code, message, first_at, last_at) VALUES ($1, $2, $3, $4, $5, $5)
ON CONFLICT (kind) DO UPDATE SET op = $2, code = $3, message = $4, last_at = $5, count = pg_alerts.count + 1,
    first_at = CASE WHEN pg_alerts.last_at < $5 - interval '10 minutes' THEN $5 ELSE pg_alerts.first_at END`

// NotePGAlert records one occurrence of an alert; a run of occurrences keeps
// its first_at, so the banner says since when.
func (s *Store) NotePGAlert(ctx context.Context, kind, op, code, message string) error {
	message = truncateUTF8(message, 500)
	now := s.now()
	_, err := s.db.ExecContext(ctx, sqlNotePGAlert, kind, op, code, message, now)
	if err != nil {
		return fmt.Errorf("note pg alert: %w", err)
	}
	return nil
}

const sqlActivePGAlert = `SELECT kind, op, code, message, first_at, last_at, count FROM pg_alerts WHERE kind = $1 AND last_at >= $2`

// ActivePGAlert returns the alert of kind seen within the last `within`, or nil.
func (s *Store) ActivePGAlert(ctx context.Context, kind string, within time.Duration) (*PGAlert, error) {
	var a PGAlert
	err := s.db.GetContext(ctx, &a, sqlActivePGAlert, kind, s.now().Add(-within))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pg alert: %w", err)
	}
	return &a, nil
}
