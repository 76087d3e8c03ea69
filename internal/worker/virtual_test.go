package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// awaitingDeposit takes a new order through a 가상계좌 confirm to
// AWAITING_DEPOSIT and returns it, its paymentKey and the PG's secret.
func awaitingDeposit(t *testing.T, sys *systest.System, m *systest.Merchant, amount int64) (systest.Order, string, string) {
	t.Helper()
	o := m.CreateOrder(amount)
	key := sys.VASession(o)
	if r := m.Confirm(o, key); r.Status != 202 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	m.WaitStatus(o.OrderID, "AWAITING_DEPOSIT", 10*time.Second)
	return o, key, pgSecret(t, sys, key)
}

func pgSecret(t *testing.T, sys *systest.System, key string) string {
	t.Helper()
	res := sys.PGClient().GetPayment(context.Background(), key)
	if res.Payment == nil || res.Payment.Secret == "" {
		t.Fatalf("mockpg has no secret for %s: %+v", key, res)
	}
	return res.Payment.Secret
}

func orderJSON(t *testing.T, m *systest.Merchant, orderID string) map[string]any {
	t.Helper()
	r := m.Do("GET", "/v1/orders/"+orderID, nil)
	if r.Status != 200 {
		t.Fatalf("get order: %d %s", r.Status, r.Body)
	}
	return r.JSON()
}

// The whole path: the confirm answers AWAITING_DEPOSIT with the account
// (Prefer: wait), the merchant hears payment.awaiting_deposit with it, the
// secret is stored sealed, and the deposit makes the order PAID once.
func TestVirtualAccountEndToEnd(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	o := m.CreateOrder(33000)
	key := sys.VASession(o)
	r := m.Confirm(o, key, "Prefer", "wait=10")
	if r.Status != 200 || r.JSON()["result"] != "AWAITING_DEPOSIT" || r.JSON()["status"] != "AWAITING_DEPOSIT" {
		t.Fatalf("confirm with Prefer: wait = %d %s; want 200 result AWAITING_DEPOSIT", r.Status, r.Body)
	}
	va, _ := r.JSON()["virtualAccount"].(map[string]any)
	if va == nil || va["accountNumber"] == "" || va["bankCode"] == "" || va["dueDate"] == "" {
		t.Fatalf("confirm answer has no virtual account: %s", r.Body)
	}
	if got := orderJSON(t, m, o.OrderID)["virtualAccount"]; got == nil {
		t.Fatal("GET /v1/orders/{id} does not show the virtual account")
	}
	if l := m.Do("GET", "/v1/orders?status=AWAITING_DEPOSIT", nil); l.Status != 200 || !strings.Contains(string(l.Body), o.OrderID) {
		t.Fatalf("GET /v1/orders?status=AWAITING_DEPOSIT = %d %s", l.Status, l.Body)
	}
	// A duplicate confirm gets the same answer, and no second PG call.
	if r2 := m.Confirm(o, key); r2.Status != 200 || r2.JSON()["result"] != "AWAITING_DEPOSIT" {
		t.Fatalf("duplicate confirm = %d %s", r2.Status, r2.Body)
	}
	var payload string
	testenv.Must(t, sys.DB.DB.Get(&payload, `SELECT payload FROM callbacks WHERE order_id = $1 AND event_type = 'payment.awaiting_deposit'`, o.OrderID))
	var cb struct {
		Data struct {
			VirtualAccount map[string]any `json:"virtualAccount"`
			Status         string         `json:"status"`
		} `json:"data"`
	}
	testenv.Must(t, json.Unmarshal([]byte(payload), &cb))
	if cb.Data.Status != "AWAITING_DEPOSIT" || cb.Data.VirtualAccount["accountNumber"] != va["accountNumber"] {
		t.Fatalf("payment.awaiting_deposit carries %s", payload)
	}
	secret := pgSecret(t, sys, key)
	if n := sys.Count(`SELECT count(*) FROM orders WHERE order_id = $1 AND va_secret IS NOT NULL AND position($2::bytea in va_secret) = 0`, o.OrderID, []byte(secret)); n != 1 {
		t.Fatal("the deposit secret is not stored, or stored in clear")
	}
	sys.Deposit(key)
	m.WaitStatus(o.OrderID, "PAID", 10*time.Second)
	testenv.Poll(t, 10*time.Second, "both deposit webhooks to settle", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1 AND state = 'RECEIVED'`, o.OrderID) == 0 &&
			sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1 AND pg_status = 'DONE'`, o.OrderID) >= 2
	})
	if n := transitions(sys, o.OrderID, "PAID"); n != 1 {
		t.Fatalf("PAID transitions = %d", n)
	}
	if n := callbacks(sys, o.OrderID, "payment.paid"); n != 1 {
		t.Fatalf("payment.paid callbacks = %d", n)
	}
	if n := sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1 AND body::text LIKE '%' || $2 || '%'`, o.OrderID, secret); n != 0 {
		t.Fatal("a stored PG event holds the deposit secret in clear")
	}
	if st := sys.PG.Stats()[o.OrderID]; st.VirtualAccounts != 1 || st.Deposits != 1 || st.Approvals != 1 {
		t.Fatalf("mockpg stats %+v", st)
	}
}

// Toss retries a deposit notice until it gets a 200, and mockpg's faults
// duplicate it: fifty concurrent copies store one event, one PAID and one
// payment.paid.
func TestFiftyDuplicateDepositCallbacks(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	o, key, secret := awaitingDeposit(t, sys, m, 21000)
	sys.PG.SetWebhookURL("") // the copies below are the only notices
	sys.Deposit(key)
	var wg sync.WaitGroup
	codes := make([]int, 50)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = sys.DepositCallback(o.OrderID, secret, "DONE")
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("copy %d answered %d", i, c)
		}
	}
	m.WaitStatus(o.OrderID, "PAID", 10*time.Second)
	if n := sys.Count(`SELECT count(*) FROM pg_events WHERE provider = 'toss' AND order_id = $1`, o.OrderID); n != 1 {
		t.Fatalf("stored %d deposit events, want 1", n)
	}
	testenv.Poll(t, 20*time.Second, "the event to settle", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1 AND state = 'APPLIED'`, o.OrderID) == 1
	})
	if n := transitions(sys, o.OrderID, "PAID"); n != 1 {
		t.Fatalf("PAID transitions = %d", n)
	}
	if n := callbacks(sys, o.OrderID, "payment.paid"); n != 1 {
		t.Fatalf("payment.paid callbacks = %d", n)
	}
}

// A DEPOSIT_CALLBACK with another secret is a 401 that stores nothing and
// leaves a security event; so is one for an order that has no account.
func TestWrongDepositSecretRefused(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	o, _, secret := awaitingDeposit(t, sys, m, 9000)
	// (mockpg's own webhooks go to the mockpg door; the forgeries to toss's.)
	before := sys.Count(`SELECT count(*) FROM pg_events WHERE provider = 'toss'`)
	for _, forged := range []string{secret + "x", strings.ToUpper(secret), "ps_guessed_secret_value"} {
		if c := sys.DepositCallback(o.OrderID, forged, "DONE"); c != 401 {
			t.Fatalf("forged secret answered %d, want 401", c)
		}
	}
	if n := sys.Count(`SELECT count(*) FROM pg_events WHERE provider = 'toss'`); n != before {
		t.Fatalf("a refused deposit stored %d events", n-before)
	}
	if n := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND action = 'security.invalid_deposit_secret'`, o.OrderID); n != 3 {
		t.Fatalf("security events = %d, want 3", n)
	}
	if st := m.Status(o.OrderID); st != "AWAITING_DEPOSIT" {
		t.Fatalf("order is %s", st)
	}
	// A card order has no account: nothing a deposit could be about.
	card := m.CreateOrder(5000)
	m.Confirm(card, sys.Session(card))
	m.WaitStatus(card.OrderID, "PAID", 10*time.Second)
	if c := sys.DepositCallback(card.OrderID, secret, "DONE"); c != 401 {
		t.Fatalf("deposit for a card order answered %d", c)
	}
	// Malformed notices are a 400, never a 5xx.
	for _, st := range []string{"PAID", ""} {
		if c := sys.DepositCallback(o.OrderID, secret, st); c != 400 {
			t.Fatalf("deposit with status %q answered %d", st, c)
		}
	}
}

// The deposit's notice arrives before payrail has applied the confirm's
// answer (the order is still CONFIRMING and has no secret): the worker
// checks the secret against the PG's own record; the real one pays the
// order once, with its account, a forged one is rejected.
func TestDepositBeforeConfirmAnswer(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{}) // no worker yet
	m := sys.NewMerchant("")
	o := m.CreateOrder(18000)
	key := sys.VASession(o)
	if r := m.Confirm(o, key); r.Status != 202 {
		t.Fatalf("confirm: %d", r.Status)
	}
	// The PG issued the account (another caller's confirm) and the buyer
	// paid, all before our worker ran.
	if res := sys.PGClient().Confirm(context.Background(), "elsewhere", key, o.OrderID, o.Amount); res.Outcome != pgclient.Approved {
		t.Fatalf("confirm at mockpg: %+v", res)
	}
	secret := pgSecret(t, sys, key)
	sys.PG.SetWebhookURL("")
	sys.Deposit(key)
	if c := sys.DepositCallback(o.OrderID, "ps_forged_before_answer", "DONE"); c != 200 {
		t.Fatalf("unverifiable deposit answered %d; it must be stored for the worker to check", c)
	}
	if c := sys.DepositCallback(o.OrderID, secret, "DONE"); c != 200 {
		t.Fatalf("deposit answered %d", c)
	}
	sys.StartWorker()
	m.WaitStatus(o.OrderID, "PAID", 15*time.Second)
	testenv.Poll(t, 10*time.Second, "both notices to settle", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1 AND state = 'RECEIVED'`, o.OrderID) == 0
	})
	if n := sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1 AND state = 'REJECTED' AND note LIKE 'deposit secret%'`, o.OrderID); n != 1 {
		t.Fatalf("rejected forged deposits = %d, want 1", n)
	}
	if n := transitions(sys, o.OrderID, "PAID"); n != 1 {
		t.Fatalf("PAID transitions = %d", n)
	}
	if n := callbacks(sys, o.OrderID, "payment.paid"); n != 1 {
		t.Fatalf("payment.paid callbacks = %d", n)
	}
	if orderJSON(t, m, o.OrderID)["virtualAccount"] == nil {
		t.Fatal("the account is not kept when the deposit came first")
	}
	if st := sys.PG.Stats()[o.OrderID]; st.Approvals != 1 {
		t.Fatalf("approvals = %d", st.Approvals)
	}
}

// The sandbox clock passes the due date: mockpg closes the account and
// says so, and payrail expires the order (payment.expired); no deposit can
// arrive after.
func TestVirtualAccountExpiresWithSandboxClock(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	o, key, _ := awaitingDeposit(t, sys, m, 7000)
	resp, err := http.Post(sys.PGURL+"/sandbox/clock", "application/json", bytes.NewReader([]byte(`{"advance":"73h"}`)))
	testenv.Must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("advance the clock: %d", resp.StatusCode)
	}
	m.WaitStatus(o.OrderID, "EXPIRED", 15*time.Second)
	if n := callbacks(sys, o.OrderID, "payment.expired"); n != 1 {
		t.Fatalf("payment.expired callbacks = %d", n)
	}
	if _, err := sys.PG.Deposit(key); err == nil {
		t.Fatal("mockpg took a deposit into an expired account")
	}
}

// payrail's own clock passes the due date (plus the grace) while the PG
// still shows the account waiting: payrail expires the order. A deposit the
// PG then reports is a late approval: refunded once, the order stays
// EXPIRED.
func TestDepositAfterPayrailExpiredIsRefunded(t *testing.T) {
	t.Parallel()
	// mockpg's clock is an hour behind: its due date (30 min after issue)
	// has passed for payrail but not for the PG.
	sys := systest.Start(t, systest.Options{Worker: true, VirtualAccountDue: 30 * time.Minute,
		PGNow: func() time.Time { return time.Now().Add(-time.Hour) }, Env: map[string]string{"PAYRAIL_DEPOSIT_GRACE": "1s"}})
	sys.PG.SetWebhookURL("") // its signatures would carry its stale clock
	m := sys.NewMerchant("")
	o, key, secret := awaitingDeposit(t, sys, m, 12000)
	m.WaitStatus(o.OrderID, "EXPIRED", 15*time.Second)
	if n := callbacks(sys, o.OrderID, "payment.expired"); n != 1 {
		t.Fatalf("payment.expired callbacks = %d", n)
	}
	sys.Deposit(key)
	for range 3 { // the PG's retries
		if c := sys.DepositCallback(o.OrderID, secret, "DONE"); c != 200 {
			t.Fatalf("late deposit answered %d", c)
		}
	}
	testenv.Poll(t, 20*time.Second, "the late deposit to be refunded", func() bool {
		return sys.Count(`SELECT count(*) FROM refunds WHERE order_id = $1 AND status = 'SUCCEEDED'`, o.OrderID) == 1
	})
	if n := sys.Count(`SELECT count(*) FROM refunds WHERE order_id = $1`, o.OrderID); n != 1 {
		t.Fatalf("refund rows = %d", n)
	}
	if st := sys.PG.Stats()[o.OrderID]; st.Cancels != 1 || st.CanceledAmount != o.Amount {
		t.Fatalf("mockpg stats %+v; want one full refund", st)
	}
	if st := m.Status(o.OrderID); st != "EXPIRED" {
		t.Fatalf("order is %s", st)
	}
	testenv.Poll(t, 20*time.Second, "payment.refunded_late_approval", func() bool {
		return callbacks(sys, o.OrderID, "payment.refunded_late_approval") == 1
	})
}

// Cancel before the deposit closes the account (no refund account); after
// it, refundReceiveAccount is required, validated, passed to the PG and
// only ever shown masked.
func TestCancelVirtualAccount(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	cancel := func(orderID string, body map[string]any, key string) systest.Response {
		return m.Do("POST", "/v1/orders/"+orderID+"/cancel", body, "Idempotency-Key", key)
	}

	// Before the deposit.
	o, key, _ := awaitingDeposit(t, sys, m, 8000)
	if r := cancel(o.OrderID, map[string]any{"reason": "buyer changed mind", "amount": 100}, "k-part"); r.Status != 409 || r.Code() != "CANCEL_AMOUNT_EXCEEDED" {
		t.Fatalf("partial cancel before the deposit = %d %s", r.Status, r.Body)
	}
	if r := cancel(o.OrderID, map[string]any{"reason": "buyer changed mind"}, "k-before"); r.Status != 202 {
		t.Fatalf("cancel before the deposit = %d %s", r.Status, r.Body)
	}
	m.WaitStatus(o.OrderID, "CANCELED", 10*time.Second)
	if _, err := sys.PG.Deposit(key); err == nil {
		t.Fatal("mockpg took a deposit into a cancelled account")
	}
	if st := sys.PG.Stats()[o.OrderID]; st.Cancels != 1 || st.RefundAccountCancels != 0 {
		t.Fatalf("mockpg stats %+v", st)
	}

	// After the deposit.
	p, key2, _ := awaitingDeposit(t, sys, m, 50000)
	sys.Deposit(key2)
	m.WaitStatus(p.OrderID, "PAID", 10*time.Second)
	if r := cancel(p.OrderID, map[string]any{"reason": "refund"}, "k-noacct"); r.Status != 400 || r.Code() != "REFUND_ACCOUNT_REQUIRED" {
		t.Fatalf("cancel without a refund account = %d %s", r.Status, r.Body)
	}
	for name, acct := range map[string]map[string]any{
		"bank name":  {"bank": "신한", "accountNumber": "110123456789", "holderName": "홍길동"},
		"dashes":     {"bank": "88", "accountNumber": "110-123-456789", "holderName": "홍길동"},
		"no holder":  {"bank": "88", "accountNumber": "110123456789", "holderName": ""},
		"extra prop": {"bank": "88", "accountNumber": "110123456789", "holderName": "홍길동", "iban": "x"},
	} {
		if r := cancel(p.OrderID, map[string]any{"reason": "refund", "refundReceiveAccount": acct}, "k-"+name); r.Status != 400 || r.Code() != "INVALID_REQUEST" {
			t.Fatalf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	if n := sys.Count(`SELECT count(*) FROM cancels WHERE order_id = $1`, p.OrderID); n != 0 {
		t.Fatalf("refused cancels left %d rows", n)
	}
	acct := map[string]any{"bank": "88", "accountNumber": "110987654321", "holderName": "김토스"}
	r := cancel(p.OrderID, map[string]any{"reason": "refund", "amount": 20000, "refundReceiveAccount": acct}, "k-acct")
	if r.Status != 202 {
		t.Fatalf("cancel with a refund account = %d %s", r.Status, r.Body)
	}
	m.WaitStatus(p.OrderID, "PARTIALLY_CANCELED", 10*time.Second)
	if st := sys.PG.Stats()[p.OrderID]; st.RefundAccountCancels != 1 || st.CanceledAmount != 20000 {
		t.Fatalf("mockpg stats %+v; want the refund account passed", st)
	}
	cid, _ := r.JSON()["cancelId"].(string)
	g := m.Do("GET", "/v1/orders/"+p.OrderID+"/cancels/"+cid, nil)
	if g.Status != 200 || !strings.Contains(string(g.Body), "********4321") || strings.Contains(string(g.Body), "110987654321") {
		t.Fatalf("cancel as the merchant sees it: %s", g.Body)
	}
	if n := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND details::text LIKE '%110987654321%'`, p.OrderID); n != 0 {
		t.Fatal("the refund account number is in the order's history in clear")
	}
	if n := sys.Count(`SELECT count(*) FROM cancels WHERE order_id = $1 AND refund_account IS NOT NULL AND position('110987654321'::bytea in refund_account) = 0`, p.OrderID); n != 1 {
		t.Fatal("the refund account is not stored sealed")
	}
}

// Fifty concurrent cancels of an awaiting account: one is accepted, one
// PG cancel, one CANCELED.
func TestConcurrentCancelsOfAnAwaitingAccount(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	o, _, _ := awaitingDeposit(t, sys, m, 6000)
	var wg sync.WaitGroup
	codes := make([]int, 50)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = m.Do("POST", "/v1/orders/"+o.OrderID+"/cancel", map[string]any{"reason": "dup"}, "Idempotency-Key", "dup-"+string(rune('a'+i%26))+string(rune('a'+i/26))).Status
		}()
	}
	wg.Wait()
	accepted := 0
	for _, c := range codes {
		switch c {
		case 202:
			accepted++
		case 409:
		default:
			t.Fatalf("cancel answered %d", c)
		}
	}
	if accepted != 1 {
		t.Fatalf("accepted cancels = %d, want 1", accepted)
	}
	m.WaitStatus(o.OrderID, "CANCELED", 10*time.Second)
	if st := sys.PG.Stats()[o.OrderID]; st.Cancels != 1 {
		t.Fatalf("PG cancels = %d", st.Cancels)
	}
}

// The bank reverses a deposit: the PG shows the paid account waiting
// again. payrail raises an alert (a REJECTED event, the order's history)
// and never moves the PAID order.
func TestDepositReversalIsAnAlert(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	o, key, _ := awaitingDeposit(t, sys, m, 4400)
	sys.Deposit(key)
	m.WaitStatus(o.OrderID, "PAID", 10*time.Second)
	resp, err := http.Post(sys.PGURL+"/sandbox/deposits/reverse", "application/json", strings.NewReader(`{"paymentKey":"`+key+`"}`))
	testenv.Must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("reverse: %d", resp.StatusCode)
	}
	testenv.Poll(t, 10*time.Second, "the reversal alert", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1 AND state = 'REJECTED' AND note LIKE 'deposit reversed%'`, o.OrderID) == 1
	})
	if n := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND action = 'alert.deposit_reversed'`, o.OrderID); n != 1 {
		t.Fatalf("alert history rows = %d", n)
	}
	if st := m.Status(o.OrderID); st != "PAID" {
		t.Fatalf("order moved to %s", st)
	}
}

// A worker SIGKILLed while it looks up a deposit (holding the order's
// lock, before the commit): the next worker applies it, once.
func TestWorkerKilledMidDeposit(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{"PAYRAIL_CONFIRM_STUCK_AFTER": "1s", "PAYRAIL_LOCK_TTL": "3s"}})
	m := sys.NewMerchant("")
	first := startWorkerProcess(t, sys)
	o, key, _ := awaitingDeposit(t, sys, m, 26000)
	sys.PG.SetFaults(mockpg.Faults{LatencyMS: 2000})
	sys.Deposit(key)
	testenv.Poll(t, 15*time.Second, "the worker to be mid-lookup of the deposit", func() bool {
		n, _ := sys.Redis.Client.Exists(context.Background(), "payrail:lock:order:"+o.OrderID).Result()
		return n == 1
	})
	testenv.Must(t, first.Process.Signal(syscall.SIGKILL))
	_, _ = first.Process.Wait()
	if st := m.Status(o.OrderID); st != "AWAITING_DEPOSIT" {
		t.Fatalf("order is %s before the second worker; the kill came too late to test anything", st)
	}
	sys.PG.SetFaults(mockpg.Faults{})
	startWorkerProcess(t, sys)
	m.WaitStatus(o.OrderID, "PAID", 30*time.Second)
	if n := transitions(sys, o.OrderID, "PAID"); n != 1 {
		t.Fatalf("PAID transitions = %d", n)
	}
	if n := callbacks(sys, o.OrderID, "payment.paid"); n != 1 {
		t.Fatalf("payment.paid callbacks = %d", n)
	}
}
