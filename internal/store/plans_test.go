package store_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// The statements that find a row by primary key and fence on a status or a
// merchant reach it by the primary key alone, in the state that made the
// planner choose otherwise (package doc): a vacuum saw no CREATED order and
// no PENDING callback, so the partial indexes over them look empty (their
// reltuples stays 0 as they grow), and the merchant paying now came after
// the last ANALYZE. The plain statements are planned too, to show the trap
// is set: through them each call read all 3,000 of the merchant's rows.
func TestFencesUsePrimaryKey(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	old, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "analyzed", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.DB.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	const insertOrders = `INSERT INTO orders (order_id, merchant_id, merchant_order_id, amount, currency, order_name, payment_token_hash, expires_at, status)
SELECT $2 || g, $1, 'mo_000' || g, 1000, 'KRW', 'p', convert_to('h' || g, 'UTF8'), now() + interval '1 hour', $3 FROM generate_series(1, $4) g`
	const insertCallbacks = `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload, status, pending_since)
SELECT 'cb_' || order_id, merchant_id, order_id, 'payment.paid', '{}', $2, now() FROM orders WHERE merchant_id = $1`
	exec(insertOrders, old.MerchantID, "ord_old_", "PAID", 20)
	exec(insertCallbacks, old.MerchantID, "DELIVERED")
	exec(`VACUUM ANALYZE orders, callbacks`)
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "new", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	exec(insertOrders, m.MerchantID, "ord_new_", "CREATED", 3000)
	exec(insertCallbacks, m.MerchantID, "PENDING")

	// indexes lists the indexes a plan reads and the tables it scans whole.
	indexes := func(q string, args ...any) []string {
		t.Helper()
		var raw []byte
		if err := db.DB.QueryRowContext(ctx, "EXPLAIN (FORMAT JSON) "+q, args...).Scan(&raw); err != nil {
			t.Fatalf("explain %s: %v", q, err)
		}
		var plans []struct{ Plan map[string]any }
		testenv.Must(t, json.Unmarshal(raw, &plans))
		var out []string
		var walk func(n map[string]any)
		walk = func(n map[string]any) {
			if ix, ok := n["Index Name"].(string); ok {
				out = append(out, ix)
			}
			if n["Node Type"] == "Seq Scan" {
				out = append(out, "seq scan of "+n["Relation Name"].(string))
			}
			kids, _ := n["Plans"].([]any)
			for _, k := range kids {
				walk(k.(map[string]any))
			}
		}
		walk(plans[0].Plan)
		return out
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	cases := []struct {
		name, sql, plain string
		pkey             string
		args             []any
	}{
		{"order row", store.SQLOrderRow + " FOR UPDATE", strings.Replace(store.SQLOrderRow, "($2 = '' OR merchant_id = $2) IS TRUE", "merchant_id = $2", 1) + " FOR UPDATE",
			"orders_pkey", []any{"ord_new_7", m.MerchantID}},
		{"transition", store.SQLTransition, strings.Replace(store.SQLTransition, "(status = ANY($3)) IS TRUE", "status = ANY($3)", 1),
			"orders_pkey", []any{"ord_new_8", 1, pq.StringArray{"CREATED"}, "CONFIRMING", nil, nil, nil, nil, nil, nil, nil, nil, 0, 0, 0, nil, nil, nil, nil, nil, nil, nil}},
		{"record callbacks", store.SQLRecordCallbacks, strings.NewReplacer("c.callback_id = ANY($1::text[]) AND ", "", "(c.status = 'PENDING') IS TRUE", "c.status = 'PENDING'").Replace(store.SQLRecordCallbacks),
			"callbacks_pkey", []any{pq.StringArray{"cb_ord_new_9", "cb_ord_new_10"}, pq.Int64Array{0, 0}, pq.StringArray{"DELIVERED", "DELIVERED"},
				pq.StringArray{now, now}, pq.StringArray{"", ""}, pq.StringArray{now, now}, pq.StringArray{now, now}, pq.Int64Array{204, 204},
				pq.Int64Array{1, 1}, pq.StringArray{"", ""}}},
		{"unclaim callbacks", store.SQLUnclaimCallbacks, strings.Replace(store.SQLUnclaimCallbacks, "(status = 'PENDING') IS TRUE", "status = 'PENDING'", 1),
			"callbacks_pkey", []any{pq.StringArray{"cb_ord_new_11"}, now}},
		{"redeliver callback", store.SQLRedeliverCallback, strings.Replace(store.SQLRedeliverCallback, "($2 = '' OR merchant_id = $2) IS TRUE", "merchant_id = $2", 1),
			"callbacks_pkey", []any{"cb_ord_new_12", m.MerchantID, now, 1000}},
	}
	trapped := 0
	for _, c := range cases {
		if c.plain == c.sql {
			t.Fatalf("%s: the plain form was not derived; the fence is written differently now", c.name)
		}
		if got := indexes(c.sql, c.args...); len(got) == 0 || slices.ContainsFunc(got, func(ix string) bool { return ix != c.pkey }) {
			t.Errorf("%s reads %v, want %s alone", c.name, got, c.pkey)
		}
		if got := indexes(c.plain, c.args...); slices.ContainsFunc(got, func(ix string) bool { return ix != c.pkey }) {
			trapped++
			t.Logf("%s written plainly reads %v", c.name, got)
		}
	}
	// Not every plain form need fall in (that is the planner's choice to
	// make), but if none does the setup no longer shows what it guards.
	if trapped < 3 {
		t.Errorf("only %d of %d plain statements left the primary key: the trap is not set", trapped, len(cases))
	}
}
