package store_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// Rows for a merchant: orders (CREATED), and for each a PENDING callback,
// cancel and refund and a RECEIVED PG event.
const (
	sqlTestOrders = `INSERT INTO orders (order_id, merchant_id, merchant_order_id, amount, currency, order_name, payment_token_hash, expires_at)
SELECT $2 || g, $1, 'mo_000' || g, 1000, 'KRW', 'p', convert_to('h' || g, 'UTF8'), now() + interval '1 hour' FROM generate_series(1, $3) g`
	sqlTestRest = `
WITH o AS (SELECT order_id, merchant_id FROM orders WHERE merchant_id = $1),
cb AS (INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload, pending_since)
    SELECT 'cb_' || order_id, merchant_id, order_id, 'payment.paid', '{}', now() FROM o),
cn AS (INSERT INTO cancels (cancel_id, order_id, merchant_id, amount, reason, pg_idempotency_key)
    SELECT 'cn_' || order_id, order_id, merchant_id, 1, 'r', 'ik_cn_' || order_id FROM o),
rf AS (INSERT INTO refunds (refund_id, order_id, payment_key, amount, pg_idempotency_key)
    SELECT 'rf_' || order_id, order_id, 'pk_' || order_id, 1, 'ik_rf_' || order_id FROM o)
INSERT INTO pg_events (provider, event_key, order_id, body) SELECT 'mockpg', 'ev_' || order_id, order_id, '{}' FROM o`
)

// trappedDB is a database in the state that made the planner leave the
// primary key (package doc): a vacuum found the partial indexes over
// CREATED orders, PENDING callbacks, cancels and refunds and RECEIVED
// events empty after their rows moved on (reltuples 0 however they grow),
// and every merchant made from here on comes after the last ANALYZE.
// addRows gives a merchant n orders with their rows (sqlTestRest).
func trappedDB(t *testing.T) (db testenv.Database, st *store.Store, addRows func(merchantID, prefix string, n int)) {
	t.Helper()
	db = testenv.NewDatabase(t)
	st = store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.DB.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	addRows = func(merchantID, prefix string, n int) {
		t.Helper()
		exec(sqlTestOrders, merchantID, prefix, n)
		exec(sqlTestRest, merchantID)
	}
	// An autovacuum or analyze in the middle would refresh what the test
	// sets up; the database is this test's own.
	for _, tbl := range []string{"orders", "callbacks", "cancels", "refunds", "pg_events"} {
		exec(`ALTER TABLE ` + tbl + ` SET (autovacuum_enabled = off)`)
	}
	old, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "analyzed", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	// The analyzed merchant's rows pass through the partial indexes' states
	// and leave them; the vacuum then counts them empty.
	addRows(old.MerchantID, "ord_old_", 200)
	exec(`UPDATE orders SET status = 'EXPIRED'`)
	exec(`UPDATE callbacks SET status = 'DELIVERED'`)
	exec(`UPDATE cancels SET status = 'SUCCEEDED'`)
	exec(`UPDATE refunds SET status = 'SUCCEEDED'`)
	exec(`UPDATE pg_events SET state = 'APPLIED'`)
	exec(`VACUUM ANALYZE orders, callbacks, cancels, refunds, pg_events`)
	for _, ix := range []string{"orders_created_expiry", "callbacks_pending_since", "cancels_pending", "refunds_pending", "pg_events_received"} {
		var tuples float64
		var pages int
		testenv.Must(t, db.DB.QueryRowContext(ctx, `SELECT reltuples, relpages FROM pg_class WHERE relname = $1`, ix).Scan(&tuples, &pages))
		if tuples != 0 || pages < 2 {
			t.Fatalf("%s: reltuples %v, relpages %d after the vacuum; want 0 tuples on 2+ pages (the trap)", ix, tuples, pages)
		}
	}
	return db, st, addRows
}

// explain runs EXPLAIN (options, FORMAT JSON) q on db and returns the top
// plan node.
func explain(t *testing.T, db interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}, options, q string, args ...any) map[string]any {
	t.Helper()
	var raw []byte
	if err := db.QueryRowContext(context.Background(), "EXPLAIN ("+options+"FORMAT JSON) "+q, args...).Scan(&raw); err != nil {
		t.Fatalf("explain %s: %v", q, err)
	}
	var plans []struct{ Plan map[string]any }
	testenv.Must(t, json.Unmarshal(raw, &plans))
	return plans[0].Plan
}

// The transition and the callback record as they were written before the
// fences, and arguments that move one order CREATED → CONFIRMING and record
// one callback delivered.
var (
	plainTransition = strings.Replace(store.SQLTransition, "(status = ANY($3)) IS TRUE", "status = ANY($3)", 1)
	plainRecord     = strings.NewReplacer("c.callback_id = ANY($1::text[]) AND ", "", "(c.status = 'PENDING') IS TRUE", "c.status = 'PENDING'").Replace(store.SQLRecordCallbacks)
)

func transitionArgs(orderID string) []any {
	return []any{orderID, 1, pq.StringArray{"CREATED"}, "CONFIRMING", nil, nil, nil, nil, nil, nil, nil, nil, 0, 0, 0, nil, nil, nil, nil, nil, nil, nil,
		nil, nil, nil, nil, nil, "confirm.accepted", "CREATED", "CONFIRMING", "merchant", "{}"}
}

func recordArgs(now string, callbackIDs ...string) []any {
	n := len(callbackIDs)
	fill := func(v string) pq.StringArray {
		a := make(pq.StringArray, n)
		for i := range a {
			a[i] = v
		}
		return a
	}
	ints := func(v int64) pq.Int64Array {
		a := make(pq.Int64Array, n)
		for i := range a {
			a[i] = v
		}
		return a
	}
	return []any{pq.StringArray(callbackIDs), ints(0), fill("DELIVERED"), fill(now), fill(""), fill(now), fill(now), ints(204), ints(1), fill("")}
}

// planIndexes lists the indexes a plan reads and the tables it scans whole.
func planIndexes(plan map[string]any) []string {
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
	walk(plan)
	return out
}

// genericConn is a connection that plans prepared statements generically
// (plan_cache_mode = force_generic_plan), as the statement cache may after
// five calls; closed when t ends.
func genericConn(t *testing.T, db *sqlx.DB) *sqlx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Connx(ctx)
	testenv.Must(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = conn.ExecContext(ctx, `SET plan_cache_mode = force_generic_plan`)
	testenv.Must(t, err)
	return conn
}

var genericPrepared atomic.Int64

// genericIndexes is planIndexes of q's generic plan on conn: PREPARE, then
// EXPLAIN EXECUTE with args written as literals (EXECUTE takes no bound
// parameters).
func genericIndexes(t *testing.T, conn *sqlx.Conn, q string, args ...any) []string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("generic_%d", genericPrepared.Add(1))
	_, err := conn.ExecContext(ctx, `PREPARE `+name+` AS `+q)
	testenv.Must(t, err)
	params := make([]string, len(args))
	for i, a := range args {
		if v, ok := a.(driver.Valuer); ok {
			a, err = v.Value()
			testenv.Must(t, err)
		}
		switch a := a.(type) {
		case nil:
			params[i] = "NULL"
		case string:
			params[i] = pq.QuoteLiteral(a)
		default:
			params[i] = fmt.Sprint(a)
		}
	}
	var raw []byte
	testenv.Must(t, conn.QueryRowContext(ctx, `EXPLAIN (FORMAT JSON) EXECUTE `+name+`(`+strings.Join(params, ", ")+`)`).Scan(&raw))
	var plans []struct{ Plan map[string]any }
	testenv.Must(t, json.Unmarshal(raw, &plans))
	return planIndexes(plans[0].Plan)
}

// genericChecked names the statements with a catch-all filter whose generic
// plans TestFencesUsePrimaryKey holds to their keys;
// TestCatchAllFiltersPlanPerCall lets them be prepared.
var genericChecked = map[string]bool{"sqlOrderRow": true, "sqlRedeliverCallback": true,
	"sqlCancelByID": true, "sqlOrderRowForEvent": true, "sqlStoreStatusEvent": true}

// The statements that find a row by primary key and fence on a status or a
// merchant reach it by the primary key alone in a trappedDB, for a merchant
// with 3,000 orders and their rows, planned with their values and
// generically (as the statement cache may). The plain statements are planned
// too, to show the trap is set: through them each call read all 3,000.
func TestFencesUsePrimaryKey(t *testing.T) {
	t.Parallel()
	db, st, addRows := trappedDB(t)
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "new", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	addRows(m.MerchantID, "ord_new_", 3000)

	indexes := func(q string, args ...any) []string {
		t.Helper()
		return planIndexes(explain(t, db.DB, "", q, args...))
	}
	conn := genericConn(t, db.DB)
	generic := func(q string, args ...any) []string { t.Helper(); return genericIndexes(t, conn, q, args...) }
	now := time.Now().UTC().Format(time.RFC3339Nano)
	cases := []struct {
		name, sql, plain string
		pkey             string
		args             []any
	}{
		{"order row", store.SQLOrderRow + " FOR UPDATE", strings.Replace(store.SQLOrderRow, "($2 = '' OR merchant_id = $2) IS TRUE", "merchant_id = $2", 1) + " FOR UPDATE",
			"orders_pkey", []any{"ord_new_7", m.MerchantID}},
		{"transition", store.SQLTransition, plainTransition, "orders_pkey", transitionArgs("ord_new_8")},
		{"record callbacks", store.SQLRecordCallbacks, plainRecord, "callbacks_pkey", recordArgs(now, "cb_ord_new_9", "cb_ord_new_10")},
		{"unclaim callbacks", store.SQLUnclaimCallbacks, strings.Replace(store.SQLUnclaimCallbacks, "(status = 'PENDING') IS TRUE", "status = 'PENDING'", 1),
			"callbacks_pkey", []any{pq.StringArray{"cb_ord_new_11"}, now}},
		{"redeliver callback", store.SQLRedeliverCallback, strings.Replace(store.SQLRedeliverCallback, "($2 = '' OR merchant_id = $2) IS TRUE", "merchant_id = $2", 1),
			"callbacks_pkey", []any{"cb_ord_new_12", m.MerchantID, now, 1000}},
		{"cancel attempt", store.SQLRecordCancelAttempt, strings.Replace(store.SQLRecordCancelAttempt, "(status = 'PENDING') IS TRUE", "status = 'PENDING'", 1),
			"cancels_pkey", []any{"cn_ord_new_13", false}},
		{"refund attempt", store.SQLRecordRefundAttempt, strings.Replace(store.SQLRecordRefundAttempt, "(status = 'PENDING') IS TRUE", "status = 'PENDING'", 1),
			"refunds_pkey", []any{"rf_ord_new_14", "e", now}},
		{"mark pg event", store.SQLMarkPGEvent, strings.Replace(store.SQLMarkPGEvent, "(state = 'RECEIVED') IS TRUE", "state = 'RECEIVED'", 1),
			"pg_events_pkey", []any{"mockpg", "ev_ord_new_15", "APPLIED", "n", ""}},
	}
	only := func(got []string, allowed ...string) bool {
		return len(got) > 0 && !slices.ContainsFunc(got, func(ix string) bool { return !slices.Contains(allowed, ix) })
	}
	for _, c := range cases {
		if c.plain == c.sql {
			t.Fatalf("%s: the plain form was not derived; the fence is written differently now", c.name)
		}
		if got := indexes(c.sql, c.args...); !only(got, c.pkey) {
			t.Errorf("%s reads %v, want %s alone", c.name, got, c.pkey)
		}
		if got := generic(c.sql, c.args...); !only(got, c.pkey) {
			t.Errorf("%s's generic plan reads %v, want %s alone", c.name, got, c.pkey)
		}
		got := indexes(c.plain, c.args...)
		if !slices.ContainsFunc(got, func(ix string) bool { return ix != c.pkey }) {
			t.Errorf("%s written plainly reads %v: the trap this test guards against is not set (a newer planner?)", c.name, got)
		} else {
			t.Logf("%s written plainly reads %v", c.name, got)
		}
	}
	// Key lookups with a catch-all that have no plain form to trap but are
	// prepared too: the cancel by id reads its key, the webhook door's order
	// lookups (order_id = $n OR a paymentKey arm) the order's key or the
	// paymentKey index.
	orderKeys := []string{"orders_pkey", "orders_payment_key_any", "orders_merchant_payment_key"}
	for _, c := range []struct {
		name, sql string
		allowed   []string
		args      []any
	}{
		{"cancel by id", store.SQLCancelByID, []string{"cancels_pkey"}, []any{"cn_ord_new_13", "", m.MerchantID}},
		{"order for event", store.SQLOrderRowForEvent, orderKeys, []any{"pk_ord_new_7", "ord_new_7"}},
		{"status event", store.SQLStoreStatusEvent, orderKeys, []any{"mockpg", "ev_generic", "pk_ord_new_8", "ord_new_8", "DONE", "{}", pq.StringArray{"PAID"}}},
	} {
		if got := generic(c.sql, c.args...); !only(got, c.allowed...) {
			t.Errorf("%s's generic plan reads %v, want only %v", c.name, got, c.allowed)
		}
	}
}

// A noisy merchant's abandoned checkouts (CREATED orders) and dead
// endpoint's backlog (PENDING callbacks) cost a quiet merchant's payments
// nothing: its transition and its callback record read as many buffers
// beside 10,000 of each as alone, measured first in the same database
// (EXPLAIN ANALYZE, rolled back). Written plainly, both read the noisy
// merchant's rows, which shows the measure would see them.
func TestNoisyMerchantsRowsCostAQuietOneNothing(t *testing.T) {
	t.Parallel()
	db, st, addRows := trappedDB(t)
	ctx := context.Background()
	quiet, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "quiet", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	addRows(quiet.MerchantID, "ord_q_", 10)

	// buffers runs q under EXPLAIN ANALYZE in a transaction it rolls back
	// and returns the buffers the whole plan touched.
	buffers := func(q string, args ...any) int64 {
		t.Helper()
		tx, err := db.DB.BeginTx(ctx, nil)
		testenv.Must(t, err)
		defer tx.Rollback()
		plan := explain(t, tx, "ANALYZE, BUFFERS, ", q, args...)
		hit, _ := plan["Shared Hit Blocks"].(float64)
		read, _ := plan["Shared Read Blocks"].(float64)
		return int64(hit + read)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	transition := func(q, orderID string) int64 { return buffers(q, transitionArgs(orderID)...) }
	record := func(q, callbackID string) int64 { return buffers(q, recordArgs(now, callbackID)...) }
	aloneT, aloneR := transition(store.SQLTransition, "ord_q_1"), record(store.SQLRecordCallbacks, "cb_ord_q_1")

	noisy, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "noisy", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	addRows(noisy.MerchantID, "ord_noisy_", 10000)
	besideT, besideR := transition(store.SQLTransition, "ord_q_2"), record(store.SQLRecordCallbacks, "cb_ord_q_2")
	plainT, plainR := transition(plainTransition, "ord_q_3"), record(plainRecord, "cb_ord_q_3")
	t.Logf("buffers, alone / beside the noisy merchant / written plainly: transition %d / %d / %d, callback record %d / %d / %d",
		aloneT, besideT, plainT, aloneR, besideR, plainR)
	// A few buffers of slack: a page split or a new heap page for the row
	// version is not the noisy merchant's doing; reading its rows is
	// hundreds.
	const slack = 20
	if besideT > aloneT+slack || besideR > aloneR+slack {
		t.Errorf("beside the noisy merchant's 10,000 CREATED orders and PENDING callbacks the quiet merchant's transition read %d buffers (alone %d) and its callback record %d (alone %d)",
			besideT, aloneT, besideR, aloneR)
	}
	if plainT < aloneT+150 || plainR < aloneR+150 {
		t.Errorf("written plainly the transition read %d buffers and the record %d: the noisy rows are not in the way, so this test shows nothing", plainT, plainR)
	}
}

// Every statement of the store that finds a row by its table's primary key
// and also checks a status, state or scope writes the check (…) IS TRUE
// (package doc): a new one written plainly fails here before a vacuum at a
// quiet moment makes it scan other merchants' rows in production.
func TestKeyLookupsFenceTheirChecks(t *testing.T) {
	check := regexp.MustCompile(`\b(?:status|state)\s+(?:=|IN\b)|OR\s+(?:\w+\.)?(?:merchant_id|order_id)\s*=\s*\$`)
	found := 0
	for _, lit := range storeSQL(t) {
		for _, where := range lit.keyLookups() {
			if !check.MatchString(where) {
				continue
			}
			found++
			if !strings.Contains(where, "IS TRUE") {
				t.Errorf("%s: %s\n  finds a %s row by its primary key and checks it plainly; write the check (…) IS TRUE (package doc)",
					lit.file, strings.Join(strings.Fields(lit.text), " "), lit.table)
			}
		}
	}
	// The scan itself must see the fenced statements it guards.
	if found < 10 {
		t.Errorf("found %d key lookups with a check; the scan no longer sees the store's SQL", found)
	}
}

// sqlLiteral is one SQL text of the store's source.
type sqlLiteral struct {
	name, file, text, table string
	// perCall: the statement starts with planPerCall, as the cache sees it.
	perCall bool
}

// Each table's primary key as the first condition of a WHERE.
var primaryKeys = map[string]string{"orders": "order_id", "callbacks": "callback_id", "cancels": "cancel_id",
	"refunds": "refund_id", "recon_runs": "run_id", "pg_events": `provider\s*=\s*\$\d+ AND event_key`}

// keyLookups are the literal's WHERE clauses that start with its table's
// primary key (up to RETURNING or ORDER BY).
func (l sqlLiteral) keyLookups() []string {
	if primaryKeys[l.table] == "" {
		return nil
	}
	byKey := regexp.MustCompile(`^\s*(?:\w+\.)?` + primaryKeys[l.table] + `\s*=\s*(?:\$\d+|ANY\(\$\d+)`)
	var out []string
	for _, where := range strings.Split(l.text, "WHERE")[1:] {
		where, _, _ = strings.Cut(where, "RETURNING")
		where, _, _ = strings.Cut(where, "ORDER BY")
		if byKey.MatchString(where) {
			out = append(out, where)
		}
	}
	return out
}

// storeSQL reads the SQL of the store's (non-test) source: each constant's
// value, with the constants it is built from resolved (an identifier that is
// not a constant of the package stands for its name), and every other
// backquoted string alone.
func storeSQL(t *testing.T) []sqlLiteral {
	t.Helper()
	files, err := filepath.Glob("*.go")
	testenv.Must(t, err)
	fset := token.NewFileSet()
	consts := map[string]ast.Expr{}
	constFile := map[string]string{}
	var parsed []*ast.File
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		testenv.Must(t, err)
		parsed = append(parsed, file)
		for _, d := range file.Decls {
			if d, ok := d.(*ast.GenDecl); ok && d.Tok == token.CONST {
				for _, spec := range d.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if i < len(vs.Values) {
							consts[n.Name], constFile[n.Name] = vs.Values[i], f
						}
					}
				}
			}
		}
	}
	var eval func(e ast.Expr, depth int) string
	eval = func(e ast.Expr, depth int) string {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind == token.STRING {
				text, err := strconv.Unquote(e.Value)
				testenv.Must(t, err)
				return text
			}
			return e.Value
		case *ast.Ident:
			if v, ok := consts[e.Name]; ok && depth < 20 {
				return eval(v, depth+1)
			}
			return e.Name
		case *ast.BinaryExpr:
			return eval(e.X, depth) + eval(e.Y, depth)
		case *ast.ParenExpr:
			return eval(e.X, depth)
		}
		return ""
	}
	perCall := eval(consts["planPerCall"], 0)
	if perCall == "" {
		t.Fatal("no planPerCall constant in the store's source")
	}
	table := regexp.MustCompile(`(?:UPDATE|FROM|INTO)\s+(\w+)`)
	var out []sqlLiteral
	add := func(name, f, text string) {
		l := sqlLiteral{name: name, file: f, text: text, perCall: strings.HasPrefix(text, perCall)}
		if tm := table.FindStringSubmatch(text); tm != nil {
			l.table = tm[1]
		}
		out = append(out, l)
	}
	for name, v := range consts {
		add(name, constFile[name], eval(v, 0))
	}
	for _, file := range parsed {
		inConst := map[*ast.BasicLit]bool{}
		ast.Inspect(file, func(n ast.Node) bool {
			if d, ok := n.(*ast.GenDecl); ok && d.Tok == token.CONST {
				ast.Inspect(d, func(n ast.Node) bool {
					if l, ok := n.(*ast.BasicLit); ok {
						inConst[l] = true
					}
					return true
				})
			}
			if l, ok := n.(*ast.BasicLit); ok && l.Kind == token.STRING && strings.HasPrefix(l.Value, "`") && !inConst[l] {
				add("", fset.File(file.Pos()).Name(), strings.Trim(l.Value, "`"))
			}
			return true
		})
	}
	return out
}

// A catch-all filter (a column = $n unless $n is empty, NULL, 0 or false,
// or an arm taken only when $n is not empty) uses an index only when
// planned with its value; the statement cache's generic plan would scan
// instead. Every statement with one in a WHERE starts with planPerCall,
// unless its generic plan is held to its keys (genericChecked).
func TestCatchAllFiltersPlanPerCall(t *testing.T) {
	catchAll := regexp.MustCompile(`\$\d+(?:::\w+(?:\[\])?)?\s*(?:=\s*(?:''|0)|IS\s+NULL|<>\s*'')\s+OR\b` +
		`|(?:''|0)\s*=\s*\$\d+\s+OR\b|\bNOT\s+\$\d+\s+OR\b` +
		`|\bOR\s+\$\d+(?:::\w+)?\s*(?:=\s*''|IS\s+NULL)|\bAND\s+\$\d+(?:::\w+)?\s*<>\s*''`)
	found, marked := 0, 0
	for _, lit := range storeSQL(t) {
		var filters []string
		for _, where := range strings.Split(lit.text, "WHERE")[1:] {
			// A WHERE ends where the next clause or statement part begins.
			where, _, _ = strings.Cut(where, "RETURNING")
			where, _, _ = strings.Cut(where, "ORDER BY")
			where, _, _ = strings.Cut(where, " SET ")
			filters = append(filters, where)
		}
		if !catchAll.MatchString(strings.Join(filters, " ")) {
			continue
		}
		found++
		if lit.perCall {
			marked++
			continue
		}
		if lit.name == "" || !genericChecked[lit.name] {
			t.Errorf("%s %s: %s\n  filters with a catch-all, is not planPerCall and its generic plan is not checked (genericChecked): a generic plan would scan",
				lit.file, lit.name, strings.Join(strings.Fields(lit.text), " "))
		}
	}
	// The scan must see them: the marked ones and the checked key lookups.
	if marked < 3 || found < 3+len(genericChecked) {
		t.Errorf("found %d catch-all statements, %d marked; the scan no longer sees the store's SQL", found, marked)
	}
}
