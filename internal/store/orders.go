package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/secretbox"
)

const orderColumns = `order_id, merchant_id, merchant_order_id, amount, currency, order_name, success_url, fail_url,
status, version, payment_token_hash, payment_key, pg_idempotency_key, method, approved_at, failure_code, failure_message,
canceled_amount, reserved_cancel_amount, needs_reconciliation, outcome_unknown, confirm_attempts, confirm_requested_at,
next_check_at, expires_at, created_at, updated_at, seq,
va_bank_code, va_account_number, va_customer_name, va_due_date, va_secret_key_id, va_secret_aad_version, va_secret`

// OrderColumns is the orders column list every order read selects; the
// bench's EXPLAIN of the hot queries uses it so its plans are the store's.
const OrderColumns = orderColumns

// OrderRow is an order as stored, with the fields workers need that merchants
// never see.
type OrderRow struct {
	OrderID              string         `db:"order_id"`
	MerchantID           string         `db:"merchant_id"`
	MerchantOrderID      *string        `db:"merchant_order_id"`
	Amount               int64          `db:"amount"`
	Currency             string         `db:"currency"`
	OrderName            string         `db:"order_name"`
	SuccessURL           *string        `db:"success_url"`
	FailURL              *string        `db:"fail_url"`
	Status               payment.Status `db:"status"`
	Version              int            `db:"version"`
	PaymentTokenHash     []byte         `db:"payment_token_hash"`
	PaymentKey           *string        `db:"payment_key"`
	PGIdempotencyKey     *string        `db:"pg_idempotency_key"`
	Method               *string        `db:"method"`
	ApprovedAt           *time.Time     `db:"approved_at"`
	FailureCode          *string        `db:"failure_code"`
	FailureMessage       *string        `db:"failure_message"`
	CanceledAmount       int64          `db:"canceled_amount"`
	ReservedCancelAmount int64          `db:"reserved_cancel_amount"`
	NeedsReconciliation  bool           `db:"needs_reconciliation"`
	OutcomeUnknown       bool           `db:"outcome_unknown"`
	ConfirmAttempts      int            `db:"confirm_attempts"`
	ConfirmRequestedAt   *time.Time     `db:"confirm_requested_at"`
	NextCheckAt          *time.Time     `db:"next_check_at"`
	ExpiresAt            time.Time      `db:"expires_at"`
	CreatedAt            time.Time      `db:"created_at"`
	UpdatedAt            time.Time      `db:"updated_at"`
	Seq                  int64          `db:"seq"`
	// The virtual account issued for a 가상계좌 payment (all nil for
	// others), and its DEPOSIT_CALLBACK secret, sealed (VASecretMatches).
	VABankCode         *string    `db:"va_bank_code"`
	VAAccountNumber    *string    `db:"va_account_number"`
	VACustomerName     *string    `db:"va_customer_name"`
	VADueDate          *time.Time `db:"va_due_date"`
	VASecretKeyID      *string    `db:"va_secret_key_id"`
	VASecretAADVersion *int       `db:"va_secret_aad_version"`
	VASecret           []byte     `db:"va_secret"`
}

// Shows reports whether an event saying pg about paymentKey may be settled
// from this row, read without the order's lock: it is the row's own payment
// and payment.SettlesUnlocked. The ingress and the worker both ask it.
func (r OrderRow) Shows(paymentKey string, pg payment.PGStatus) bool {
	return r.PaymentKey != nil && *r.PaymentKey == paymentKey && payment.SettlesUnlocked(r.Status, pg)
}

// Order converts the row to its public form.
func (r OrderRow) Order() payment.Order {
	o := payment.Order{
		OrderID: r.OrderID, MerchantID: r.MerchantID, MerchantOrderID: r.MerchantOrderID,
		Status: payment.Status(r.Status), Version: r.Version, Amount: r.Amount, Currency: r.Currency,
		OrderName: r.OrderName, SuccessURL: r.SuccessURL, FailURL: r.FailURL, PaymentKey: r.PaymentKey,
		Method: r.Method, ApprovedAt: utcPtr(r.ApprovedAt), CanceledAmount: r.CanceledAmount,
		PendingCancelAmount: r.ReservedCancelAmount, NeedsReconciliation: r.NeedsReconciliation,
		ExpiresAt: r.ExpiresAt.UTC(), CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
	}
	if r.VAAccountNumber != nil {
		o.VirtualAccount = &payment.VirtualAccount{AccountNumber: *r.VAAccountNumber, BankCode: deref(r.VABankCode), CustomerName: deref(r.VACustomerName)}
		if r.VADueDate != nil {
			o.VirtualAccount.DueDate = r.VADueDate.UTC()
		}
	}
	if r.FailureCode != nil {
		o.Failure = &payment.Failure{Code: *r.FailureCode}
		if r.FailureMessage != nil {
			o.Failure.Message = *r.FailureMessage
		}
	}
	return o
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// NewOrder is what creating an order takes.
type NewOrder struct {
	MerchantID      string
	MerchantOrderID *string
	Amount          int64
	Currency        string
	OrderName       string
	SuccessURL      *string
	FailURL         *string
	TokenHash       []byte
	TTL             time.Duration
}

const sqlInsertOrder = `
INSERT INTO orders (order_id, merchant_id, merchant_order_id, amount, currency, order_name, success_url, fail_url,
    payment_token_hash, expires_at)
SELECT $1, $2, $3, $4, $5, $6, COALESCE($7, m.return_url), COALESCE($8, m.return_url), $9, $10
FROM merchants m WHERE m.merchant_id = $2
RETURNING ` + orderColumns

// sqlCreateOrder inserts the order and its order.created history row in one
// statement: without an Idempotency-Key it is the whole transaction, so a
// create costs one statement and no BEGIN/COMMIT (issue 19). payment_log's
// foreign key is checked at the end of the statement, when the order exists.
const sqlCreateOrder = `WITH o AS (` + sqlInsertOrder + `), l AS (
INSERT INTO payment_log (order_id, action, to_status, actor, details)
SELECT order_id, 'order.created', 'CREATED', 'merchant', $11::jsonb FROM o)
SELECT * FROM o`

// CreateOrder inserts an order in CREATED; success and fail URLs default to
// the merchant's returnUrl. ORDER_ALREADY_EXISTS when the
// merchant already used merchantOrderId. fin, when set, records the
// idempotent response in the same transaction.
func (s *Store) CreateOrder(ctx context.Context, o NewOrder, fin *IdemFinish[payment.Order]) (payment.Order, error) {
	details, err := json.Marshal(map[string]any{"amount": o.Amount})
	if err != nil {
		return payment.Order{}, fmt.Errorf("log details: %w", err)
	}
	id := NewID("ord_", 24)
	insert := func(q sqlx.QueryerContext) (OrderRow, error) {
		var row OrderRow
		err := sqlx.GetContext(ctx, q, &row, sqlCreateOrder, id, o.MerchantID, o.MerchantOrderID, o.Amount,
			o.Currency, o.OrderName, o.SuccessURL, o.FailURL, o.TokenHash, s.now().Add(o.TTL), string(details))
		if _, inTx := q.(*sqlx.Tx); !inTx && isUniqueViolation(err, "") {
			// Our own insert, run again: lib/pq reports a connection that
			// closed after the statement went out as driver.ErrBadConn, and
			// database/sql then repeats a call made outside a transaction.
			// The first run committed; the order with our id (it collides on
			// the key and on merchantOrderId alike) is the answer.
			if prev, rerr := s.orderRow(ctx, q, o.MerchantID, id, false); rerr == nil &&
				subtle.ConstantTimeCompare(prev.PaymentTokenHash, o.TokenHash) == 1 {
				return prev, nil
			}
		}
		if isUniqueViolation(err, "orders_merchant_id_merchant_order_id_key") {
			return row, payment.Errorf(payment.CodeOrderAlreadyExists, "merchantOrderId %q is already used", *o.MerchantOrderID)
		}
		if err != nil {
			return row, fmt.Errorf("insert order: %w", err)
		}
		return row, nil
	}
	if fin == nil || fin.Claim == nil {
		row, err := insert(s.db)
		if err != nil {
			return payment.Order{}, err
		}
		return row.Order(), nil
	}
	var out payment.Order
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		row, err := insert(tx)
		if err != nil {
			return err
		}
		out = row.Order()
		return fin.finish(ctx, tx, s, out)
	})
	return out, err
}

// anyMerchant is the scope of the operator-scope methods (workers, the
// console), spelled out at every call. The merchant-scoped methods refuse an
// empty merchant id, so crossing merchants is never the zero value.
const anyMerchant = ""

// ErrUnscoped is a merchant-scoped call made without a merchant id: a bug in
// the caller, never a merchant's doing.
var ErrUnscoped = errors.New("store: merchant-scoped call without a merchant id")

func scoped(merchantID string) error {
	if merchantID == "" {
		return ErrUnscoped
	}
	return nil
}

// (…) IS TRUE: by primary key only (package doc).
const sqlOrderRow = `SELECT ` + orderColumns + ` FROM orders WHERE order_id = $1 AND ($2 = '' OR merchant_id = $2) IS TRUE`

func (s *Store) orderRow(ctx context.Context, q sqlx.QueryerContext, merchantID, orderID string, forUpdate bool) (OrderRow, error) {
	var row OrderRow
	query := sqlOrderRow
	if forUpdate {
		query += ` FOR UPDATE`
	}
	err := sqlx.GetContext(ctx, q, &row, query, orderID, merchantID)
	if errors.Is(err, sql.ErrNoRows) {
		return row, payment.Errorf(payment.CodeOrderNotFound, "order not found")
	}
	if err != nil {
		return row, fmt.Errorf("select order: %w", err)
	}
	return row, nil
}

// OrderRow returns the merchant's stored row. ORDER_NOT_FOUND when absent
// or another merchant's; ErrUnscoped without a merchant id.
func (s *Store) OrderRow(ctx context.Context, merchantID, orderID string) (OrderRow, error) {
	if err := scoped(merchantID); err != nil {
		return OrderRow{}, err
	}
	return s.orderRow(ctx, s.db, merchantID, orderID, false)
}

// OrderRowAnyMerchant returns the stored row of whichever merchant's order
// it is (workers, operators). ORDER_NOT_FOUND when absent.
func (s *Store) OrderRowAnyMerchant(ctx context.Context, orderID string) (OrderRow, error) {
	return s.orderRow(ctx, s.db, anyMerchant, orderID, false)
}

// Order returns the merchant's order, with its history's first page when
// withHistory. ORDER_NOT_FOUND when absent or another merchant's;
// ErrUnscoped without a merchant id.
func (s *Store) Order(ctx context.Context, merchantID, orderID string, withHistory bool) (payment.Order, error) {
	if err := scoped(merchantID); err != nil {
		return payment.Order{}, err
	}
	return s.order(ctx, merchantID, orderID, withHistory)
}

// OrderAnyMerchant is Order for whichever merchant's order it is
// (operators, the wait for a confirm's answer).
func (s *Store) OrderAnyMerchant(ctx context.Context, orderID string, withHistory bool) (payment.Order, error) {
	return s.order(ctx, anyMerchant, orderID, withHistory)
}

func (s *Store) order(ctx context.Context, merchantID, orderID string, withHistory bool) (payment.Order, error) {
	row, err := s.orderRow(ctx, s.db, merchantID, orderID, false)
	if err != nil {
		return payment.Order{}, err
	}
	o := row.Order()
	if withHistory {
		o.History, o.HistoryNextCursor, err = s.History(ctx, orderID, "", HistoryPageSize)
	}
	return o, err
}

const sqlOrderByPaymentKey = `SELECT ` + orderColumns + ` FROM orders WHERE payment_key = $1 AND merchant_id = $2
ORDER BY status = 'FAILED', seq DESC LIMIT 1`

// OrderByPaymentKey returns the order a paymentKey paid (or is confirming);
// PAYMENT_NOT_FOUND when none of the merchant's orders has it.
func (s *Store) OrderByPaymentKey(ctx context.Context, merchantID, paymentKey string) (payment.Order, error) {
	if err := scoped(merchantID); err != nil {
		return payment.Order{}, err
	}
	var row OrderRow
	// A FAILED order may share the key with the order it really paid.
	err := s.db.GetContext(ctx, &row, sqlOrderByPaymentKey, paymentKey, merchantID)
	if errors.Is(err, sql.ErrNoRows) {
		return payment.Order{}, payment.Errorf(payment.CodePaymentNotFound, "payment not found")
	}
	if err != nil {
		return payment.Order{}, fmt.Errorf("select order by payment key: %w", err)
	}
	o := row.Order()
	o.History, o.HistoryNextCursor, err = s.History(ctx, row.OrderID, "", HistoryPageSize)
	return o, err
}

type logRow struct {
	ID      int64     `db:"id"`
	At      time.Time `db:"at"`
	Action  string    `db:"action"`
	From    *string   `db:"from_status"`
	To      *string   `db:"to_status"`
	Actor   string    `db:"actor"`
	Details []byte    `db:"details"`
}

// HistoryPageSize is the most history entries one read returns.
const HistoryPageSize = 100

const historyPageSQL = `SELECT id, at, action, from_status, to_status, actor, details FROM payment_log
WHERE order_id = $1 AND id > $2 ORDER BY id LIMIT $3`

// History returns one page of an order's payment_log as its merchant sees
// it, oldest first: at most limit (≤ HistoryPageSize) entries after cursor
// ("" = from the start), and the cursor of the next page ("" on the last).
// Operators' names are shown as "operator": they are console usernames,
// not the merchant's business. INVALID_REQUEST for a malformed cursor.
func (s *Store) History(ctx context.Context, orderID, cursor string, limit int) (entries []payment.LogEntry, next string, err error) {
	if limit <= 0 || limit > HistoryPageSize {
		limit = HistoryPageSize
	}
	var after int64
	if cursor != "" {
		if after, err = strconv.ParseInt(cursor, 10, 64); err != nil || after < 0 {
			return nil, "", payment.Errorf(payment.CodeInvalidRequest, "cursor is not one this API returned")
		}
	}
	return s.historyPage(ctx, orderID, after, limit, true)
}

// historyPage reads up to limit log entries after id `after`; next is the
// cursor of the following page ("" at the end). maskOperators shows
// operators as "operator", as merchants see them; the ops console keeps
// the name.
func (s *Store) historyPage(ctx context.Context, orderID string, after int64, limit int, maskOperators bool) (entries []payment.LogEntry, next string, err error) {
	var rows []logRow
	if err := s.db.SelectContext(ctx, &rows, historyPageSQL, orderID, after, limit+1); err != nil {
		return nil, "", fmt.Errorf("history: %w", err)
	}
	if len(rows) > limit {
		rows = rows[:limit]
		next = strconv.FormatInt(rows[limit-1].ID, 10)
	}
	out := make([]payment.LogEntry, 0, len(rows))
	for _, r := range rows {
		if maskOperators && strings.HasPrefix(r.Actor, "operator:") {
			r.Actor = "operator"
		}
		e := payment.LogEntry{At: r.At.UTC(), Action: r.Action, Actor: r.Actor}
		if r.From != nil {
			st := payment.Status(*r.From)
			e.From = &st
		}
		if r.To != nil {
			st := payment.Status(*r.To)
			e.To = &st
		}
		if err := json.Unmarshal(r.Details, &e.Details); err != nil {
			return nil, "", fmt.Errorf("history details of %s: %w", orderID, err)
		}
		out = append(out, e)
	}
	return out, next, nil
}

// ListFilter narrows ListOrders.
type ListFilter struct {
	Status          string
	MerchantOrderID string
	PaymentKey      string
	OrderID         string
	NeedsReconcile  bool
	Limit           int
	Cursor          string
}

const sqlListOrders = `SELECT ` + orderColumns + ` FROM orders WHERE `

// ListOrders returns a merchant's orders newest first, keyset-paginated on
// seq. next is "" on the last page. ErrUnscoped without a merchant id (the
// console searches with SearchOrders).
func (s *Store) ListOrders(ctx context.Context, merchantID string, f ListFilter) (orders []payment.Order, next string, err error) {
	if err := scoped(merchantID); err != nil {
		return nil, "", err
	}
	if f.Limit <= 0 || f.Limit > 100 {
		f.Limit = 20
	}
	var before int64 = 1<<63 - 1
	if f.Cursor != "" {
		before, err = strconv.ParseInt(f.Cursor, 36, 64)
		if err != nil || before <= 0 {
			return nil, "", payment.Errorf(payment.CodeInvalidRequest, "cursor is not one this API returned")
		}
	}
	// Only the filters in use go into the SQL, so the planner sees
	// merchant_id = $1 and uses (merchant_id, seq) instead of scanning seq.
	where, args := []string{"seq < $1"}, []any{before}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	add("merchant_id = ?", merchantID)
	if f.Status != "" {
		add("status = ?", f.Status)
	}
	if f.MerchantOrderID != "" {
		add("merchant_order_id = ?", f.MerchantOrderID)
	}
	if f.PaymentKey != "" {
		add("payment_key = ?", f.PaymentKey)
	}
	if f.OrderID != "" {
		add("order_id = ?", f.OrderID)
	}
	if f.NeedsReconcile {
		where = append(where, "needs_reconciliation")
	}
	args = append(args, f.Limit+1)
	var rows []OrderRow
	err = s.db.SelectContext(ctx, &rows, sqlListOrders+strings.Join(where, " AND ")+
		` ORDER BY seq DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, "", fmt.Errorf("list orders: %w", err)
	}
	if len(rows) > f.Limit {
		rows = rows[:f.Limit]
		next = strconv.FormatInt(rows[len(rows)-1].Seq, 36)
	}
	orders = make([]payment.Order, len(rows))
	for i, r := range rows {
		orders[i] = r.Order()
	}
	return orders, next, nil
}

const sqlAppendLogTx = `INSERT INTO payment_log (order_id, action, from_status, to_status, actor, details) VALUES ($1, $2, $3, $4, $5, $6)`

func appendLogTx(ctx context.Context, tx *sqlx.Tx, orderID, action string, from, to *payment.Status, actor string, details map[string]any) error {
	args, err := logArgs(action, from, to, actor, details)
	if err != nil {
		return err
	}
	if _, err = tx.ExecContext(ctx, sqlAppendLogTx, append([]any{orderID}, args...)...); err != nil {
		return fmt.Errorf("insert payment_log: %w", err)
	}
	return nil
}

// logArgs are a history row's action, from_status, to_status, actor and
// details (JSON text), with the defaults every row gets.
func logArgs(action string, from, to *payment.Status, actor string, details map[string]any) ([]any, error) {
	if details == nil {
		details = map[string]any{}
	}
	d, err := json.Marshal(details)
	if err != nil {
		return nil, fmt.Errorf("log details: %w", err)
	}
	if actor == "" {
		actor = "system"
	}
	return []any{action, statusPtr(from), statusPtr(to), actor, string(d)}, nil
}

func statusPtr(s *payment.Status) *string {
	if s == nil {
		return nil
	}
	v := string(*s)
	return &v
}

// AppendLog records a history row that changes no state (a PG call, an alert).
func (s *Store) AppendLog(ctx context.Context, orderID, action, actor string, details map[string]any) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		return appendLogTx(ctx, tx, orderID, action, nil, nil, actor, details)
	})
}

// ConfirmResult is what a confirm request did.
type ConfirmResult struct {
	Order payment.Order
	// Result is ACCEPTED, DUPLICATE or FAILURE.
	Result payment.ConfirmResult
	// Enqueue is true when this request moved the order to CONFIRMING and
	// the confirm task must be enqueued (after commit).
	Enqueue bool
	// Accepted, set with Enqueue (unless sealing failed), is the order as
	// this request left it: the confirm task carries it so its first run
	// needs no read.
	Accepted string
}

// SealAccepted and OpenAccepted carry what a confirm's first run reads of
// an order, as the merchant's accept (CREATED → CONFIRMING) left it: an
// opaque token sealed with the store's keyring and bound to the merchant,
// the order and the version. The api puts it in
// the confirm task, so the worker calls the PG without reading the order
// again: one statement and one commit less per payment (issue 19). Sealed,
// because a task is in Redis and PostgreSQL is the truth: a snapshot that
// was altered, or copied to another order or version, does not open, and
// the run reads the order. Only the task's first run uses it, within
// ConfirmStuckAfter of the accept; a retry or a sweep's re-enqueue reads
// the order, which may have moved. A run on it fences its transitions on
// the version and on outcome_unknown (Change.FenceUnknown), which
// RecordPGCall writes without a version change.
//
// accepted is the token's plaintext: the fields a confirm reads
// (TestAcceptedSnapshotIsTheRowRead holds it to the row PostgreSQL has).
type accepted struct {
	Amount               int64     `json:"amount"`
	PaymentKey           string    `json:"paymentKey"`
	PGIdempotencyKey     string    `json:"pgIdempotencyKey"`
	ConfirmRequestedAt   time.Time `json:"confirmRequestedAt"`
	ConfirmAttempts      int       `json:"confirmAttempts,omitempty"`
	NeedsReconciliation  bool      `json:"needsReconciliation,omitempty"`
	OutcomeUnknown       bool      `json:"outcomeUnknown,omitempty"`
	CanceledAmount       int64     `json:"canceledAmount,omitempty"`
	ReservedCancelAmount int64     `json:"reservedCancelAmount,omitempty"`
}

func acceptedAAD(orderID, merchantID string, version int) []byte {
	return secretbox.AssociatedData("confirm.accepted", merchantID, orderID, strconv.Itoa(version))
}

// SealAccepted seals r, a CONFIRMING row, into "keyID.base64url(box)";
// "" (the run reads the order) when r is not one or sealing fails.
func (s *Store) SealAccepted(r OrderRow) string {
	if r.Status != payment.Confirming || r.PaymentKey == nil || r.PGIdempotencyKey == nil || r.ConfirmRequestedAt == nil {
		return ""
	}
	pt, err := json.Marshal(accepted{Amount: r.Amount, PaymentKey: *r.PaymentKey, PGIdempotencyKey: *r.PGIdempotencyKey,
		ConfirmRequestedAt: *r.ConfirmRequestedAt, ConfirmAttempts: r.ConfirmAttempts, NeedsReconciliation: r.NeedsReconciliation,
		OutcomeUnknown: r.OutcomeUnknown, CanceledAmount: r.CanceledAmount, ReservedCancelAmount: r.ReservedCancelAmount})
	if err != nil {
		return ""
	}
	id, box, err := s.keys.Encrypt(pt, acceptedAAD(r.OrderID, r.MerchantID, r.Version))
	if err != nil {
		return ""
	}
	return id + "." + base64.RawURLEncoding.EncodeToString(box)
}

// OpenAccepted is the CONFIRMING row token sealed for merchantID's orderID
// at version: every field a confirm reads. An error means it is not one.
func (s *Store) OpenAccepted(orderID, merchantID string, version int, token string) (OrderRow, error) {
	id, enc, _ := strings.Cut(token, ".")
	box, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return OrderRow{}, fmt.Errorf("open the accepted snapshot: %w", err)
	}
	pt, err := s.keys.Decrypt(id, box, acceptedAAD(orderID, merchantID, version))
	if err != nil {
		return OrderRow{}, fmt.Errorf("open the accepted snapshot: %w", err)
	}
	var a accepted
	if err := json.Unmarshal(pt, &a); err != nil {
		return OrderRow{}, fmt.Errorf("open the accepted snapshot: %w", err)
	}
	pk, idem, at := a.PaymentKey, a.PGIdempotencyKey, a.ConfirmRequestedAt
	return OrderRow{OrderID: orderID, MerchantID: merchantID, Status: payment.Confirming, Version: version,
		Amount: a.Amount, PaymentKey: &pk, PGIdempotencyKey: &idem, ConfirmRequestedAt: &at,
		ConfirmAttempts: a.ConfirmAttempts, NeedsReconciliation: a.NeedsReconciliation, OutcomeUnknown: a.OutcomeUnknown,
		CanceledAmount: a.CanceledAmount, ReservedCancelAmount: a.ReservedCancelAmount}, nil
}

// RequestConfirm records a merchant's confirm, checking in DESIGN.md's order:
// the order is the merchant's (ORDER_NOT_FOUND, nothing recorded), the
// paymentToken (INVALID_PAYMENT_TOKEN, recorded as a security event), the
// amount (AMOUNT_MISMATCH), then the state (ORDER_NOT_CONFIRMABLE,
// PAYMENT_KEY_CONFLICT). CREATED → CONFIRMING stores the paymentKey and the
// PG idempotency key.
func (s *Store) RequestConfirm(ctx context.Context, merchantID, orderID, paymentKey, token string, amount int64, fin *IdemFinish[ConfirmResult]) (ConfirmResult, error) {
	if err := scoped(merchantID); err != nil {
		return ConfirmResult{}, err
	}
	var res ConfirmResult
	var securityErr error
	err := s.inOutboxTx(ctx, func(tx *sqlx.Tx, ob *outbox) error {
		row, err := s.orderRow(ctx, tx, merchantID, orderID, true)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare(HashToken(token), row.PaymentTokenHash) != 1 {
			securityErr = payment.Errorf(payment.CodeInvalidPaymentToken, "paymentToken does not match this order")
			// Committed on purpose: the attempt is a security event in the history.
			return appendLogTx(ctx, tx, orderID, "security.invalid_payment_token", nil, nil, "merchant", map[string]any{"paymentKey": paymentKey})
		}
		if amount != row.Amount {
			return payment.Errorf(payment.CodeAmountMismatch, "amount %d does not match the order amount", amount)
		}
		st := payment.Status(row.Status)
		samePK := row.PaymentKey != nil && *row.PaymentKey == paymentKey
		switch {
		case st == payment.Created:
			if !row.ExpiresAt.After(s.now()) {
				return payment.Errorf(payment.CodeOrderNotConfirmable, "order expired at %s", row.ExpiresAt.UTC().Format(time.RFC3339))
			}
			now := s.now()
			idem := payment.ConfirmIdempotencyKey(orderID, paymentKey)
			updated, o, err := s.transitionRowTx(ctx, tx, ob, row, Change{
				OrderID: orderID, Version: row.Version, To: payment.Confirming, Action: "confirm.accepted", Actor: "merchant",
				PaymentKey: &paymentKey, PGIdempotencyKey: &idem, ConfirmRequestedAt: &now, NextCheckAt: ptr(now.Add(s.stuckAfter)),
				Details: map[string]any{"paymentKey": paymentKey},
			})
			if err != nil {
				return err
			}
			res = ConfirmResult{Order: o, Result: payment.ConfirmAccepted, Enqueue: true, Accepted: s.SealAccepted(updated)}
		case !samePK:
			if st == payment.Expired {
				return payment.Errorf(payment.CodeOrderNotConfirmable, "order has expired")
			}
			return payment.Errorf(payment.CodePaymentKeyConflict, "another paymentKey is already confirming or confirmed this order")
		case st == payment.Confirming:
			res = ConfirmResult{Order: row.Order(), Result: payment.ConfirmAccepted}
		case st == payment.Failed:
			res = ConfirmResult{Order: row.Order(), Result: payment.ConfirmFailure}
		case st == payment.AwaitingDeposit:
			res = ConfirmResult{Order: row.Order(), Result: payment.ConfirmAwaitingDeposit}
		case st == payment.Expired:
			return payment.Errorf(payment.CodeOrderNotConfirmable, "order has expired")
		default: // PAID, PARTIALLY_CANCELED, CANCELED
			res = ConfirmResult{Order: row.Order(), Result: payment.ConfirmDuplicate}
		}
		return fin.finish(ctx, tx, s, res)
	})
	if err == nil && securityErr != nil {
		return res, securityErr
	}
	if isUniqueViolation(err, "orders_merchant_payment_key") {
		// Only ever one of this merchant's own orders: keys are unique per
		// merchant, so this says nothing about anyone else's payments.
		return res, payment.Errorf(payment.CodePaymentKeyConflict, "paymentKey is already used by another of your orders")
	}
	return res, err
}

func ptr[T any](v T) *T { return &v }

// Change is one fenced transition and what travels with it.
type Change struct {
	OrderID string
	// Version is the version the caller read; the UPDATE is fenced on it.
	Version int
	To      payment.Status
	Action  string
	Actor   string
	Details map[string]any

	PaymentKey          *string
	PGIdempotencyKey    *string
	Method              *string
	ApprovedAt          *time.Time
	FailureCode         *string
	FailureMessage      *string
	ConfirmRequestedAt  *time.Time
	NextCheckAt         *time.Time
	CanceledAmountDelta int64
	ReservedDelta       int64
	// VirtualAccount and VASecret are stored when the PG issues a virtual
	// account (CONFIRMING → AWAITING_DEPOSIT, or straight to PAID when the
	// deposit was seen first); the secret is sealed, never stored in clear.
	VirtualAccount *payment.VirtualAccount
	VASecret       string
	// Event overrides the callback event (default payment.EventFor(To)).
	Event payment.CallbackEvent
	// PGCall, when set, is the PG call that caused the transition; its
	// history row is written in the same transaction, before the transition's.
	PGCall *PGCall
	// FenceUnknown makes an order whose outcome_unknown is set a conflict
	// too (ErrOutcomeUnknownConflict): the caller did not read it (a run
	// on an accepted snapshot).
	FenceUnknown bool
}

// ErrNotFound is what a lookup of a record with no API error code of its
// own (a PG event, a refund) returns when there is none: callers test for
// it instead of for database/sql's sentinel.
var ErrNotFound = errors.New("store: not found")

// notFound turns database/sql's no-rows into ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// ErrVersionConflict means someone else moved the order first: re-read, never
// overwrite.
var ErrVersionConflict = payment.Errorf(payment.CodeVersionConflict, "order was changed concurrently")

// ErrOutcomeUnknownConflict is the ErrVersionConflict of a transition
// with FenceUnknown whose order has outcome_unknown set: the caller must
// read the order and decide again.
var ErrOutcomeUnknownConflict = fmt.Errorf("%w: an earlier PG attempt's outcome is unknown", ErrVersionConflict)

// Transition applies c in one transaction: the fenced UPDATE, a payment_log
// row and, when the merchant must hear of it, a callbacks outbox row. It
// returns ErrVersionConflict when the order is no longer at c.Version, and
// ILLEGAL_TRANSITION (logged, never applied) when the table refuses it.
func (s *Store) Transition(ctx context.Context, c Change) (payment.Order, error) {
	var out payment.Order
	err := s.inOutboxTx(ctx, func(tx *sqlx.Tx, ob *outbox) error {
		row, err := s.orderRow(ctx, tx, anyMerchant, c.OrderID, true)
		if err != nil {
			return err
		}
		out, err = s.transitionTx(ctx, tx, ob, row, c)
		return err
	})
	return out, err
}

// sqlTransition is the fenced UPDATE with its history rows (the PG call's,
// when one caused it, then the transition's) in one statement: a row is
// logged only when the UPDATE matched, and a transition costs one
// statement instead of two or three (issue 19).
const sqlTransition = `WITH u AS (
UPDATE orders SET
    status = $4, version = version + 1, updated_at = now(),
    payment_key = COALESCE($5, payment_key),
    pg_idempotency_key = COALESCE($6, pg_idempotency_key),
    method = COALESCE($7, method),
    approved_at = COALESCE($8, approved_at),
    failure_code = COALESCE($9, failure_code),
    failure_message = COALESCE($10, failure_message),
    confirm_requested_at = COALESCE($11, confirm_requested_at),
    next_check_at = COALESCE($12, next_check_at),
    canceled_amount = canceled_amount + $13,
    reserved_cancel_amount = reserved_cancel_amount + $14,
    confirm_attempts = confirm_attempts + $15,
    needs_reconciliation = CASE WHEN $4 = 'CONFIRMING' THEN needs_reconciliation ELSE false END,
    va_bank_code = COALESCE($16, va_bank_code),
    va_account_number = COALESCE($17, va_account_number),
    va_customer_name = COALESCE($18, va_customer_name),
    va_due_date = COALESCE($19, va_due_date),
    va_secret_key_id = COALESCE($20, va_secret_key_id),
    va_secret_aad_version = COALESCE($21, va_secret_aad_version),
    va_secret = COALESCE($22, va_secret)
WHERE order_id = $1 AND version = $2 AND (status = ANY($3)) IS TRUE -- by primary key only (package doc)
RETURNING ` + orderColumns + `
), l AS (
INSERT INTO payment_log (order_id, action, from_status, to_status, actor, details)
SELECT u.order_id, v.action, v.from_status, v.to_status, v.actor, v.details FROM u,
    (VALUES (1, $23::text, $24::text, $25::text, $26::text, $27::jsonb),
            (2, $28::text, $29::text, $30::text, $31::text, $32::jsonb)) v (n, action, from_status, to_status, actor, details)
WHERE v.action IS NOT NULL ORDER BY v.n)
SELECT * FROM u`

const sqlNotifyOrder = `SELECT pg_notify('payrail_order', $1)`

// maxNotice stays under PostgreSQL's 8,000-byte NOTIFY payload limit.
const maxNotice = 7900

// orderNotice is the payrail_order notification of a settlement: "orderID
// status" and the order's JSON, which spares every `Prefer: wait` waiter a
// read of the order; an order too large for the payload is sent without it
// (the waiter then reads it).
func orderNotice(o payment.Order) string {
	head := o.OrderID + " " + string(o.Status)
	body, err := json.Marshal(o)
	if err != nil || len(head)+1+len(body) > maxNotice {
		return head
	}
	return head + " " + string(body)
}

// ParseOrderNotice reads a payrail_order notification: the order it is
// about, the order itself when the notice carried it, and whether it is a
// settlement (only settlements are notified; a notice from an older
// version may be of another status).
func ParseOrderNotice(s string) (orderID string, o *payment.Order, settled bool) {
	orderID, rest, _ := strings.Cut(s, " ")
	status, body, _ := strings.Cut(rest, " ")
	if !payment.Status(status).Settled() || status == "" {
		return orderID, nil, false
	}
	if body != "" {
		var ord payment.Order
		if json.Unmarshal([]byte(body), &ord) == nil && ord.OrderID == orderID {
			return orderID, &ord, true
		}
	}
	return orderID, nil, true
}

// transitionTx applies c to row, which the caller read in tx (FOR UPDATE).
func (s *Store) transitionTx(ctx context.Context, tx *sqlx.Tx, ob *outbox, row OrderRow, c Change) (payment.Order, error) {
	_, o, err := s.transitionRowTx(ctx, tx, ob, row, c)
	return o, err
}

// transitionRowTx is transitionTx that also returns the updated row.
func (s *Store) transitionRowTx(ctx context.Context, tx *sqlx.Tx, ob *outbox, row OrderRow, c Change) (OrderRow, payment.Order, error) {
	from := payment.Status(row.Status)
	if row.Version != c.Version {
		return OrderRow{}, payment.Order{}, ErrVersionConflict
	}
	if c.FenceUnknown && row.OutcomeUnknown {
		return OrderRow{}, payment.Order{}, ErrOutcomeUnknownConflict
	}
	if err := payment.CheckTransition(from, c.To); err != nil {
		return OrderRow{}, payment.Order{}, err
	}
	sources := payment.Sources(c.To)
	src := make([]string, len(sources))
	for i, st := range sources {
		src[i] = string(st)
	}
	va, err := s.sealVirtualAccount(c)
	if err != nil {
		return OrderRow{}, payment.Order{}, err
	}
	callLog := []any{nil, nil, nil, nil, nil}
	if c.PGCall != nil {
		if callLog, err = logArgs(c.PGCall.Action, nil, nil, "worker", c.PGCall.details()); err != nil {
			return OrderRow{}, payment.Order{}, err
		}
	}
	to := c.To
	changeLog, err := logArgs(c.Action, &from, &to, c.Actor, c.Details)
	if err != nil {
		return OrderRow{}, payment.Order{}, err
	}
	args := []any{c.OrderID, c.Version, pq.Array(src), string(c.To),
		c.PaymentKey, c.PGIdempotencyKey, c.Method, c.ApprovedAt, c.FailureCode, c.FailureMessage,
		c.ConfirmRequestedAt, c.NextCheckAt, c.CanceledAmountDelta, c.ReservedDelta, c.PGCall.confirmDelta(),
		va.bank, va.number, va.customer, va.due, va.keyID, va.aadVersion, va.secret}
	var updated OrderRow
	err = tx.GetContext(ctx, &updated, sqlTransition, append(append(args, callLog...), changeLog...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return OrderRow{}, payment.Order{}, ErrVersionConflict
	}
	if err != nil {
		return OrderRow{}, payment.Order{}, fmt.Errorf("transition %s → %s: %w", from, c.To, err)
	}
	order := updated.Order()
	event := c.Event
	if event == "" {
		event = payment.EventFor(c.To)
	}
	if event != "" {
		if err := insertCallbackTx(ctx, tx, ob, s.now(), order, from, event); err != nil {
			return OrderRow{}, payment.Order{}, err
		}
	}
	// Only a settlement is waited for (Prefer: wait); delivered at commit.
	if c.To.Settled() {
		if _, err := tx.ExecContext(ctx, sqlNotifyOrder, orderNotice(order)); err != nil {
			return OrderRow{}, payment.Order{}, fmt.Errorf("notify: %w", err)
		}
	}
	return updated, order, nil
}

const sqlInsertCallbackTx = `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload, next_attempt_at, pending_since) VALUES ($1, $2, $3, $4, $5, $6, $6)`

func insertCallbackTx(ctx context.Context, tx *sqlx.Tx, ob *outbox, now time.Time, o payment.Order, prev payment.Status, event payment.CallbackEvent) error {
	o.History = nil
	body, err := json.Marshal(payment.CallbackPayload{Type: event, Timestamp: now.UTC(), Data: payment.CallbackData{Order: o, PreviousStatus: prev}})
	if err != nil {
		return fmt.Errorf("callback payload: %w", err)
	}
	id := NewID("msg_", 24)
	_, err = tx.ExecContext(ctx, sqlInsertCallbackTx,
		id, o.MerchantID, o.OrderID, string(event), string(body), now)
	if err != nil {
		return fmt.Errorf("insert callback: %w", err)
	}
	return wakeLaneTx(ctx, tx, ob, o.MerchantID, now)
}

const sqlSettledOrders = `SELECT order_id FROM orders WHERE order_id = ANY($1) AND status NOT IN ('CREATED', 'CONFIRMING')`

// SettledOrders returns which of ids are settled (payment.Status.Settled),
// any merchant's: the Prefer: wait poll asks for every waiter in one query.
func (s *Store) SettledOrders(ctx context.Context, ids []string) ([]string, error) {
	var settled []string
	if err := s.db.SelectContext(ctx, &settled, sqlSettledOrders, pq.Array(ids)); err != nil {
		return nil, fmt.Errorf("settled orders: %w", err)
	}
	return settled, nil
}
