package pgclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/pgclient"
)

// These are contract tests: the real client against a real mockpg over
// HTTP, each outcome class produced by mockpg's fault injection.

const secretKey = "test_sk_contract"

// clock is an injectable, advanceable clock for session expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	pg     *mockpg.Server
	srv    *httptest.Server
	client *pgclient.Client
	clock  *clock
}

func setup(t *testing.T, faults mockpg.Faults) *fixture {
	t.Helper()
	clk := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	pg := mockpg.New(mockpg.Config{SecretKey: secretKey, Faults: faults, Now: clk.Now})
	srv := httptest.NewServer(pg)
	t.Cleanup(func() {
		pg.Close() // releases hanging "timeout" handlers before the server waits for them
		srv.Close()
	})
	return &fixture{pg: pg, srv: srv, client: pgclient.New(srv.URL, secretKey, srv.Client()), clock: clk}
}

// session opens a payment session for a fresh orderId.
func (f *fixture) session(t *testing.T, amount int64) (orderID, paymentKey string) {
	t.Helper()
	orderID = fmt.Sprintf("ord_%s_%d", sanitize(t.Name()), time.Now().UnixNano())
	if len(orderID) > 64 {
		orderID = orderID[len(orderID)-64:]
	}
	key, err := f.pg.CreateSession(orderID, amount, "contract test")
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return orderID, key
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantOutcome(t *testing.T, res pgclient.Result, want pgclient.Outcome, code string) {
	t.Helper()
	if res.Outcome != want || res.Code != code {
		t.Fatalf("got %s code=%q status=%d err=%v, want %s code=%q", res.Outcome, res.Code, res.HTTPStatus, res.Err, want, code)
	}
}

func TestConfirmApproved(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	orderID, key := f.session(t, 15000)

	res := f.client.Confirm(ctxT(t), "k1", key, orderID, 15000)
	wantOutcome(t, res, pgclient.Approved, "")
	p := res.Payment
	if p.Status != "DONE" || p.TotalAmount != 15000 || p.BalanceAmount != 15000 || p.OrderID != orderID || p.PaymentKey != key || p.ApprovedAt == "" || p.Method == "" {
		t.Fatalf("unexpected payment %+v", p)
	}
	if _, err := time.Parse(time.RFC3339, p.ApprovedAt); err != nil {
		t.Errorf("approvedAt %q is not ISO 8601 with offset: %v", p.ApprovedAt, err)
	}
	if res.HTTPStatus != http.StatusOK || res.Latency <= 0 {
		t.Errorf("status %d latency %v", res.HTTPStatus, res.Latency)
	}
	if got := f.pg.Stats()[orderID]; got.Approvals != 1 || got.ConfirmCalls != 1 {
		t.Errorf("stats %+v", got)
	}
}

func TestConfirmDeclined(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{DeclineRate: 1})
	orderID, key := f.session(t, 5000)

	res := f.client.Confirm(ctxT(t), "k1", key, orderID, 5000)
	wantOutcome(t, res, pgclient.Declined, "REJECT_CARD_PAYMENT")
	if res.HTTPStatus != http.StatusForbidden || res.Message == "" {
		t.Errorf("status %d message %q", res.HTTPStatus, res.Message)
	}
	look := f.client.GetPayment(ctxT(t), key)
	wantOutcome(t, look, pgclient.Approved, "")
	if look.Payment.Status != "ABORTED" || look.Payment.Failure == nil || look.Payment.Failure.Code != "REJECT_CARD_PAYMENT" {
		t.Errorf("declined session looks like %+v", look.Payment)
	}
	if got := f.pg.Stats()[orderID]; got.Approvals != 0 {
		t.Errorf("stats %+v", got)
	}
}

// A 5xx may come after the PG applied the request (a proxy timing out in
// front of it): Unknown, so a later decline is looked up first.
func TestConfirm5xxIsUnknownAndRetriesWithTheKey(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{Error5xxRate: 1})
	orderID, key := f.session(t, 5000)

	res := f.client.Confirm(ctxT(t), "k1", key, orderID, 5000)
	wantOutcome(t, res, pgclient.Unknown, "FAILED_INTERNAL_SYSTEM_PROCESSING")
	if res.HTTPStatus != http.StatusInternalServerError {
		t.Errorf("status %d", res.HTTPStatus)
	}
	// A 5xx is not stored under the key: the retry really retries.
	f.pg.SetFaults(mockpg.Faults{})
	wantOutcome(t, f.client.Confirm(ctxT(t), "k1", key, orderID, 5000), pgclient.Approved, "")
	if got := f.pg.Stats()[orderID]; got.Approvals != 1 || got.ConfirmCalls != 2 {
		t.Errorf("stats %+v", got)
	}
}

func TestConnectionRefusedIsRetryable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // the listener is gone: connect is refused before anything is sent
	c := pgclient.New(url, secretKey, nil)

	res := c.Confirm(ctxT(t), "k1", "tmock_x", "order_123456", 1000)
	wantOutcome(t, res, pgclient.Retryable, "")
	if res.Err == nil || res.HTTPStatus != 0 {
		t.Errorf("err %v status %d", res.Err, res.HTTPStatus)
	}
	res = c.GetPayment(ctxT(t), "tmock_x")
	wantOutcome(t, res, pgclient.Retryable, "")
}

func TestTimeoutIsUnknownAndAppliesNothing(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{TimeoutRate: 1, TimeoutMS: 30000})
	orderID, key := f.session(t, 7000)

	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel()
	res := f.client.Confirm(ctx, "k1", key, orderID, 7000)
	wantOutcome(t, res, pgclient.Unknown, "")
	if !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("err %v, want a deadline", res.Err)
	}
	// The hang applied nothing; once mockpg notices the client left it
	// releases the key, and the retry with the same key approves.
	f.pg.SetFaults(mockpg.Faults{})
	var again pgclient.Result
	eventually(t, func() bool {
		again = f.client.Confirm(ctxT(t), "k1", key, orderID, 7000)
		return again.Outcome == pgclient.Approved
	})
	if got := f.pg.Stats()[orderID]; got.Approvals != 1 {
		t.Errorf("stats %+v", got)
	}
}

func TestClientTimeoutIsUnknown(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{TimeoutRate: 1, TimeoutMS: 30000})
	orderID, key := f.session(t, 7000)
	hc := f.srv.Client()
	hc.Timeout = 100 * time.Millisecond
	c := pgclient.New(f.srv.URL, secretKey, hc)
	wantOutcome(t, c.Confirm(ctxT(t), "k1", key, orderID, 7000), pgclient.Unknown, "")
}

func TestAnswerLostIsUnknownAndRetryReplaysTheApproval(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{AnswerLostRate: 1})
	orderID, key := f.session(t, 12000)

	res := f.client.Confirm(ctxT(t), "confirm-"+orderID, key, orderID, 12000)
	wantOutcome(t, res, pgclient.Unknown, "")
	if res.Err == nil || res.HTTPStatus != 0 {
		t.Errorf("err %v status %d", res.Err, res.HTTPStatus)
	}

	// Still losing answers would lose this one too; the PG recovers.
	f.pg.SetFaults(mockpg.Faults{})
	again := f.client.Confirm(ctxT(t), "confirm-"+orderID, key, orderID, 12000)
	wantOutcome(t, again, pgclient.Approved, "")
	if again.Payment.Status != "DONE" || again.Payment.PaymentKey != key {
		t.Fatalf("replayed payment %+v", again.Payment)
	}
	if got := f.pg.Stats()[orderID]; got.Approvals != 1 || got.ConfirmCalls != 2 {
		t.Errorf("stats %+v, want exactly one approval over two calls", got)
	}
}

func TestAlreadyProcessedIsResolvedByLookup(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	orderID, key := f.session(t, 3000)
	first := f.client.Confirm(ctxT(t), "k1", key, orderID, 3000)
	wantOutcome(t, first, pgclient.Approved, "")

	// Another key for the same payment: the PG says ALREADY_PROCESSED_PAYMENT,
	// and the lookup proves it is DONE for this order and amount.
	res := f.client.Confirm(ctxT(t), "k2", key, orderID, 3000)
	wantOutcome(t, res, pgclient.Approved, "")
	if res.Payment.Status != "DONE" || res.Payment.ApprovedAt != first.Payment.ApprovedAt {
		t.Errorf("resolved payment %+v", res.Payment)
	}

	// Once canceled, "already processed" is no longer an approval: Unknown,
	// with what the lookup found.
	wantOutcome(t, f.client.Cancel(ctxT(t), "c1", key, "test", 0, nil), pgclient.Approved, "")
	res = f.client.Confirm(ctxT(t), "k3", key, orderID, 3000)
	wantOutcome(t, res, pgclient.Unknown, "ALREADY_PROCESSED_PAYMENT")
	if res.Payment == nil || res.Payment.Status != "CANCELED" {
		t.Errorf("payment %+v", res.Payment)
	}
	if got := f.pg.Stats()[orderID]; got.Approvals != 1 {
		t.Errorf("stats %+v", got)
	}
}

func TestCancelTwiceWithOneKeyCancelsOnce(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	orderID, key := f.session(t, 10000)
	wantOutcome(t, f.client.Confirm(ctxT(t), "k1", key, orderID, 10000), pgclient.Approved, "")

	a := f.client.Cancel(ctxT(t), "cancel-1", key, "changed my mind", 3000, nil)
	b := f.client.Cancel(ctxT(t), "cancel-1", key, "changed my mind", 3000, nil)
	wantOutcome(t, a, pgclient.Approved, "")
	wantOutcome(t, b, pgclient.Approved, "")
	if a.Payment.Status != "PARTIAL_CANCELED" || a.Payment.BalanceAmount != 7000 || len(b.Payment.Cancels) != 1 {
		t.Fatalf("after partial cancel: %+v / %+v", a.Payment, b.Payment)
	}
	if c := a.Payment.Cancels[0]; c.CancelAmount != 3000 || c.RefundableAmount != 7000 || c.TransactionKey == "" || c.CanceledAt == "" {
		t.Errorf("cancel entry %+v", c)
	}
	got := f.pg.Stats()[orderID]
	if got.Cancels != 1 || got.CancelCalls != 2 || got.CanceledAmount != 3000 {
		t.Errorf("stats %+v, want one cancel of 3000 over two calls", got)
	}

	wantOutcome(t, f.client.Cancel(ctxT(t), "cancel-2", key, "too much", 8000, nil), pgclient.Declined, "NOT_CANCELABLE_AMOUNT")
	rest := f.client.Cancel(ctxT(t), "cancel-3", key, "the rest", 0, nil)
	wantOutcome(t, rest, pgclient.Approved, "")
	if rest.Payment.Status != "CANCELED" || rest.Payment.BalanceAmount != 0 {
		t.Errorf("after full cancel: %+v", rest.Payment)
	}
	wantOutcome(t, f.client.Cancel(ctxT(t), "cancel-4", key, "again", 0, nil), pgclient.Declined, "NOT_CANCELABLE_PAYMENT")
}

func TestCancelOfUnconfirmedPaymentIsDeclined(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	_, key := f.session(t, 10000)
	wantOutcome(t, f.client.Cancel(ctxT(t), "c1", key, "no", 0, nil), pgclient.Declined, "NOT_CANCELABLE_PAYMENT")
	wantOutcome(t, f.client.Cancel(ctxT(t), "c2", "tmock_nope", "no", 0, nil), pgclient.Declined, "NOT_FOUND_PAYMENT")
}

func TestExpiredSessionIsNotFound(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	orderID, key := f.session(t, 2000)
	f.clock.Advance(10*time.Minute + time.Second)

	res := f.client.Confirm(ctxT(t), "k1", key, orderID, 2000)
	wantOutcome(t, res, pgclient.Declined, "NOT_FOUND_PAYMENT_SESSION")
	if res.HTTPStatus != http.StatusNotFound {
		t.Errorf("status %d", res.HTTPStatus)
	}
	look := f.client.GetPaymentByOrderID(ctxT(t), orderID)
	wantOutcome(t, look, pgclient.Approved, "")
	if look.Payment.Status != "EXPIRED" {
		t.Errorf("status %s, want EXPIRED", look.Payment.Status)
	}
}

func TestConcurrentConfirmsWithOneKeyApproveOnce(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	orderID, key := f.session(t, 9900)

	const n = 50
	results := make([]pgclient.Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = f.client.Confirm(ctxT(t), "one-key", key, orderID, 9900) })
	}
	wg.Wait()
	for i, r := range results {
		if r.Outcome != pgclient.Approved || r.Payment.Status != "DONE" {
			t.Errorf("call %d: %s %s %v", i, r.Outcome, r.Code, r.Err)
		}
	}
	if got := f.pg.Stats()[orderID]; got.Approvals != 1 || got.ConfirmCalls != n {
		t.Errorf("stats %+v, want 1 approval over %d calls", got, n)
	}
}

func TestLookups(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	orderID, key := f.session(t, 4500)

	ready := f.client.GetPayment(ctxT(t), key)
	wantOutcome(t, ready, pgclient.Approved, "")
	if ready.Payment.Status != "READY" {
		t.Errorf("status %s", ready.Payment.Status)
	}
	wantOutcome(t, f.client.Confirm(ctxT(t), "k", key, orderID, 4500), pgclient.Approved, "")
	byOrder := f.client.GetPaymentByOrderID(ctxT(t), orderID)
	wantOutcome(t, byOrder, pgclient.Approved, "")
	if byOrder.Payment.PaymentKey != key || byOrder.Payment.Status != "DONE" {
		t.Errorf("by order: %+v", byOrder.Payment)
	}
	wantOutcome(t, f.client.GetPayment(ctxT(t), "tmock_missing"), pgclient.Declined, "NOT_FOUND_PAYMENT")
	wantOutcome(t, f.client.GetPaymentByOrderID(ctxT(t), "no_such_order"), pgclient.Declined, "NOT_FOUND_PAYMENT")
}

func TestConfirmMismatches(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	orderID, key := f.session(t, 4500)
	// INVALID_REQUEST is about payrail's request, not the buyer: never a
	// decline. The order is reconciled by lookup until the PG decides.
	wantOutcome(t, f.client.Confirm(ctxT(t), "k1", key, orderID, 4400), pgclient.Misconfigured, "INVALID_REQUEST")
	wantOutcome(t, f.client.Confirm(ctxT(t), "k2", key, "other_order", 4500), pgclient.Declined, "NOT_FOUND_PAYMENT_SESSION")
	wantOutcome(t, f.client.Confirm(ctxT(t), "k3", "tmock_unknown", orderID, 4500), pgclient.Declined, "NOT_FOUND_PAYMENT_SESSION")
	if got := f.pg.Stats()[orderID]; got.Approvals != 0 {
		t.Errorf("stats %+v", got)
	}
}

// A wrong or half-rotated secret key is payrail's problem, not the buyer's.
func TestWrongSecretKeyIsMisconfiguredNotDeclined(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	c := pgclient.New(f.srv.URL, "test_sk_wrong", nil)
	res := c.GetPayment(ctxT(t), "tmock_x")
	wantOutcome(t, res, pgclient.Misconfigured, "UNAUTHORIZED_KEY")
	if res.HTTPStatus != http.StatusUnauthorized {
		t.Errorf("status %d", res.HTTPStatus)
	}
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
