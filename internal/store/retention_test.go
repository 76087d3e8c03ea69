package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// The purge removes only what is past retention, settled events only, in
// batches, and a second pass finds nothing more.
func TestPurgeExpiredRemovesOnlyWhatIsPastRetention(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	mustExec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.DB.ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-31 * 24 * time.Hour)
	young := time.Now().Add(-29 * 24 * time.Hour)
	// 2,500 old settled events (more than a batch), 10 young settled, 5 old
	// still RECEIVED (work not done: never purged).
	mustExec(`INSERT INTO pg_events (provider, event_key, body, state, received_at)
SELECT 'toss', 'old_' || g, '{}', 'IGNORED', $1 FROM generate_series(1, 2500) g`, old)
	mustExec(`INSERT INTO pg_events (provider, event_key, body, state, received_at)
SELECT 'toss', 'young_' || g, '{}', 'APPLIED', $1 FROM generate_series(1, 10) g`, young)
	mustExec(`INSERT INTO pg_events (provider, event_key, body, state, received_at)
SELECT 'toss', 'pending_' || g, '{}', 'RECEIVED', $1 FROM generate_series(1, 5) g`, old)
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "p", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	mustExec(`INSERT INTO idempotency_keys (merchant_id, method, path, idem_key, request_hash, state, owner_token, lease_until, expires_at)
SELECT $1, 'POST', '/v1/orders', 'expired_' || g, '\x00', 'DONE', 'o', now() - interval '2 days', now() - interval '1 hour' FROM generate_series(1, 30) g`, m.MerchantID)
	mustExec(`INSERT INTO idempotency_keys (merchant_id, method, path, idem_key, request_hash, state, owner_token, lease_until, expires_at)
SELECT $1, 'POST', '/v1/orders', 'live_' || g, '\x00', 'DONE', 'o', now() - interval '1 hour', now() + interval '1 hour' FROM generate_series(1, 7) g`, m.MerchantID)

	var events, keys int64
	passes := 0
	for {
		e, k, err := st.PurgeExpired(ctx, 30*24*time.Hour, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if e > 1000 || k > 1000 {
			t.Fatalf("one pass deleted %d events, %d keys: more than a batch", e, k)
		}
		passes++
		events, keys = events+e, keys+k
		if e == 0 && k == 0 {
			break
		}
	}
	if events != 2500 || keys != 30 || passes != 4 {
		t.Fatalf("purged %d events and %d keys in %d passes; want 2500, 30, 4", events, keys, passes)
	}
	var left struct{ Young, Pending, Live int }
	testenv.Must(t, db.DB.GetContext(ctx, &left.Young, `SELECT count(*) FROM pg_events WHERE event_key LIKE 'young_%'`))
	testenv.Must(t, db.DB.GetContext(ctx, &left.Pending, `SELECT count(*) FROM pg_events WHERE state = 'RECEIVED'`))
	testenv.Must(t, db.DB.GetContext(ctx, &left.Live, `SELECT count(*) FROM idempotency_keys`))
	if left.Young != 10 || left.Pending != 5 || left.Live != 7 {
		t.Fatalf("left %+v; want 10 young events, 5 pending, 7 live keys", left)
	}
}
