package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

func paymentData(orderID, paymentKey, status string, amount int64) map[string]any {
	return map[string]any{"paymentKey": paymentKey, "orderId": orderID, "status": status, "totalAmount": amount, "balanceAmount": amount, "method": "카드"}
}

// mockpg applies the approval, its webhook lands, and only then is the
// confirm's own answer (lost) retried: one PAID, one transition, one callback.
func TestWebhookBeforeConfirmAnswer(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true, Faults: mockpg.Faults{AnswerLostRate: 1},
		Env: map[string]string{"PAYRAIL_CONFIRM_BACKOFF": "1s", "PAYRAIL_CONFIRM_BACKOFF_MAX": "1s"}})
	m := sys.NewMerchant("")
	o := m.CreateOrder(15000)
	key := sys.Session(o)
	m.Confirm(o, key)
	m.WaitStatus(o.OrderID, "PAID", 10*time.Second)
	// The event is marked APPLIED just after the transition it made commits.
	testenv.Poll(t, 20*time.Second, "the webhook to be settled", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE state <> 'RECEIVED'`) >= 1
	})
	if n := sys.Count(`SELECT count(*) FROM pg_events WHERE state = 'APPLIED'`); n != 1 {
		t.Fatalf("applied webhooks = %d; want the PAID to come from the webhook", n)
	}
	sys.PG.SetFaults(mockpg.Faults{})
	// The confirm task's retry finds the order PAID and stops.
	insp := asynq.NewInspectorFromRedisClient(sys.Redis.Client)
	testenv.Poll(t, 10*time.Second, "the payments queue to drain", func() bool {
		q, err := insp.GetQueueInfo("payments")
		return err == nil && q.Size == 0
	})
	if n := transitions(sys, o.OrderID, "PAID"); n != 1 {
		t.Fatalf("PAID transitions = %d", n)
	}
	if n := callbacks(sys, o.OrderID, "payment.paid"); n != 1 {
		t.Fatalf("payment.paid callbacks = %d", n)
	}
	if st := sys.PG.Stats()[o.OrderID]; st.Approvals != 1 {
		t.Fatalf("approvals = %d", st.Approvals)
	}
}

func TestSameWebhookFiftyTimes(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	o := m.CreateOrder(4000)
	key := sys.Session(o)
	m.Confirm(o, key) // CONFIRMING; no worker yet
	var wg sync.WaitGroup
	codes := make([]int, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = sys.SignedPGWebhook("evt_same_1", paymentData(o.OrderID, key, "DONE", o.Amount))
		}()
	}
	wg.Wait()
	for _, c := range codes {
		if c != 200 {
			t.Fatalf("webhook answered %d", c)
		}
	}
	if n := sys.Count(`SELECT count(*) FROM pg_events WHERE event_key = 'evt_same_1'`); n != 1 {
		t.Fatalf("stored %d times", n)
	}
	// The event says DONE but mockpg never approved: our confirm decides.
	sys.StartWorker()
	m.WaitStatus(o.OrderID, "PAID", 10*time.Second)
	testenv.Poll(t, 20*time.Second, "the event to be settled", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE event_key = 'evt_same_1' AND state <> 'RECEIVED'`) == 1
	})
	if n := transitions(sys, o.OrderID, "PAID"); n != 1 {
		t.Fatalf("PAID transitions = %d", n)
	}
}

func TestForgedWebhooksRefused(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	body := []byte(`{"eventType":"PAYMENT_STATUS_CHANGED","data":{"paymentKey":"k","orderId":"ord_x","status":"DONE"}}`)
	now := strconv.FormatInt(time.Now().Unix(), 10)
	stale := strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10)
	captured := mockpg.Sign(systest.WebhookSecret, now, "evt_captured", body)
	for _, tc := range []struct{ name, sig, ts, id string }{
		{"none", "", now, "evt_1"},
		{"forged", "v1=" + fmt.Sprintf("%064x", 1), now, "evt_1"},
		{"altered", mockpg.Sign(systest.WebhookSecret, now, "evt_1", append([]byte(" "), body...)), now, "evt_1"},
		{"other secret", mockpg.Sign("whsec_wrong", now, "evt_1", body), now, "evt_1"},
		{"body-only (the old scheme)", "v1=" + hmacHex(systest.WebhookSecret, body), now, "evt_1"},
		{"replayed under a new event id", captured, now, "evt_replay_1"},
		{"stale", mockpg.Sign(systest.WebhookSecret, stale, "evt_1", body), stale, "evt_1"},
		{"no timestamp", mockpg.Sign(systest.WebhookSecret, "", "evt_1", body), "", "evt_1"},
	} {
		req, _ := http.NewRequest("POST", sys.URL+"/pg/webhooks/mockpg", bytes.NewReader(body))
		req.Header.Set(mockpg.SignatureHeader, tc.sig)
		req.Header.Set(mockpg.TimestampHeader, tc.ts)
		req.Header.Set(mockpg.EventIDHeader, tc.id)
		resp, err := http.DefaultClient.Do(req)
		testenv.Must(t, err)
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("%s signature: %d, want 401", tc.name, resp.StatusCode)
		}
	}
	if n := sys.Count(`SELECT count(*) FROM pg_events`); n != 0 {
		t.Fatalf("%d events stored from forged requests", n)
	}
}

func TestTossEventDisagreeingWithLookupIsNotApplied(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true, Faults: mockpg.Faults{Error5xxRate: 1}})
	m := sys.NewMerchant("")
	o := m.CreateOrder(6000)
	key := sys.Session(o)
	m.Confirm(o, key) // stays CONFIRMING: mockpg answers 5xx
	body, _ := json.Marshal(map[string]any{"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-11-24T00:00:00.000", "data": paymentData(o.OrderID, key, "DONE", o.Amount)})
	resp, err := http.Post(sys.URL+"/pg/webhooks/toss", "application/json", bytes.NewReader(body))
	testenv.Must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("toss webhook: %d", resp.StatusCode)
	}
	testenv.Poll(t, 10*time.Second, "the event to be rejected", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE provider = 'toss' AND state = 'REJECTED' AND order_id = $1`, o.OrderID) == 1
	})
	if st := m.Status(o.OrderID); st != "CONFIRMING" {
		t.Fatalf("status = %s; an unverified event moved the order", st)
	}
	// The alert is the event's row, the log and the metric: never a line
	// in the order's merchant-visible history, which anyone could grow.
	if n := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND action LIKE '%webhook%'`, o.OrderID); n != 0 {
		t.Fatalf("%d history rows from a rejected event", n)
	}
	// Operators see it in the order's timeline.
	tl, err := sys.Deps.Store.OrderTimeline(context.Background(), o.OrderID)
	testenv.Must(t, err)
	alerts := 0
	for _, e := range tl {
		if e.Action == "alert.webhook_disagrees" {
			alerts++
		}
	}
	if alerts != 1 {
		t.Fatalf("ops timeline shows %d webhook alerts, want 1", alerts)
	}
}

func TestAbortForPreviousPaymentKeyIgnored(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true, Faults: mockpg.Faults{LatencyMS: 500}})
	m := sys.NewMerchant("")
	o := m.CreateOrder(3000)
	key := sys.Session(o)
	m.Confirm(o, key)
	if c := sys.SignedPGWebhook("evt_abort_old", paymentData(o.OrderID, "tmock_previous_attempt", "ABORTED", o.Amount)); c != 200 {
		t.Fatalf("webhook: %d", c)
	}
	testenv.Poll(t, 10*time.Second, "the event to be ignored", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE event_key = 'evt_abort_old' AND state = 'IGNORED'`) == 1
	})
	m.WaitStatus(o.OrderID, "PAID", 10*time.Second)
	if n := transitions(sys, o.OrderID, "FAILED"); n != 0 {
		t.Fatal("the ABORTED of another paymentKey failed the order")
	}
}

func TestReorderedCanceledThenDone(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	o := m.CreateOrder(8000)
	key := sys.Session(o)
	m.Confirm(o, key)
	m.WaitStatus(o.OrderID, "PAID", 10*time.Second)
	// Canceled in the PG's console; mockpg's webhook tells payrail.
	res := sys.PGClient().Cancel(context.Background(), "console-cancel-1", key, "customer asked the PG", 0, nil)
	if res.Outcome != pgclient.Approved {
		t.Fatalf("pg cancel: %+v", res)
	}
	m.WaitStatus(o.OrderID, "CANCELED", 10*time.Second)
	// A late DONE (sent before the cancel, arriving after) must not move it back.
	if c := sys.SignedPGWebhook("evt_late_done", paymentData(o.OrderID, key, "DONE", o.Amount)); c != 200 {
		t.Fatalf("webhook: %d", c)
	}
	testenv.Poll(t, 10*time.Second, "the late event to settle", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE event_key = 'evt_late_done' AND state <> 'RECEIVED'`) == 1
	})
	if st := m.Status(o.OrderID); st != "CANCELED" {
		t.Fatalf("status = %s", st)
	}
	if n := callbacks(sys, o.OrderID, "payment.canceled"); n != 1 {
		t.Fatalf("payment.canceled callbacks = %d", n)
	}
}

// A PG approval for an expired order is refunded exactly once, even when the
// worker dies between the PG's cancel and our commit.
func TestLateApprovalRefundedOnceAcrossKill(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{"PAYRAIL_ORDER_TTL": "1s", "PAYRAIL_SWEEP_INTERVAL": "300ms",
		"PAYRAIL_RECONCILE_BACKOFF": "300ms", "PAYRAIL_RECONCILE_BACKOFF_MAX": "600ms"}})
	m := sys.NewMerchant("")
	o := m.CreateOrder(21000)
	key := sys.Session(o)
	w1 := startWorkerProcess(t, sys)
	m.WaitStatus(o.OrderID, "EXPIRED", 15*time.Second)
	// The buyer's payment is approved anyway (say, by a stale client).
	sys.PG.SetFaults(mockpg.Faults{})
	if res := sys.PGClient().Confirm(context.Background(), "stale-client-confirm", key, o.OrderID, o.Amount); res.Outcome != pgclient.Approved {
		t.Fatalf("direct approval: %+v", res)
	}
	sys.PG.SetFaults(mockpg.Faults{AnswerLostRate: 1}) // the refund's answer is lost...
	testenv.Poll(t, 15*time.Second, "the PG to apply the refund", func() bool { return sys.PG.Stats()[o.OrderID].Cancels == 1 })
	testenv.Must(t, w1.Process.Signal(syscall.SIGKILL)) // ...and the worker dies
	_, _ = w1.Process.Wait()
	sys.PG.SetFaults(mockpg.Faults{})
	startWorkerProcess(t, sys)
	testenv.Poll(t, 20*time.Second, "the refund to be confirmed", func() bool {
		return sys.Count(`SELECT count(*) FROM refunds WHERE order_id = $1 AND status = 'SUCCEEDED'`, o.OrderID) == 1
	})
	st := sys.PG.Stats()[o.OrderID]
	if st.Cancels != 1 || st.CanceledAmount != o.Amount {
		t.Fatalf("mockpg cancels = %d (%d), want exactly one full refund", st.Cancels, st.CanceledAmount)
	}
	if n := callbacks(sys, o.OrderID, "payment.refunded_late_approval"); n != 1 {
		t.Fatalf("refund callbacks = %d", n)
	}
	if st := m.Status(o.OrderID); st != "EXPIRED" {
		t.Fatalf("status = %s; a refunded late approval leaves the order EXPIRED", st)
	}
}

// Many different events reporting the same late approval (the PG retrying,
// duplicated deliveries) refund it once.
func TestLateApprovalReportedManyTimesRefundedOnce(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true, Env: map[string]string{"PAYRAIL_ORDER_TTL": "1s", "PAYRAIL_SWEEP_INTERVAL": "200ms"}})
	sys.PG.SetWebhookURL("") // only the events below report the approval
	m := sys.NewMerchant("")
	o := m.CreateOrder(17000)
	key := sys.Session(o)
	m.WaitStatus(o.OrderID, "EXPIRED", 10*time.Second)
	if res := sys.PGClient().Confirm(context.Background(), "stale-client", key, o.OrderID, o.Amount); res.Outcome != pgclient.Approved {
		t.Fatalf("direct approval: %+v", res)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c := sys.SignedPGWebhook(fmt.Sprintf("evt_late_%02d", i), paymentData(o.OrderID, key, "DONE", o.Amount)); c != 200 {
				t.Errorf("webhook %d: %d", i, c)
			}
		}()
	}
	wg.Wait()
	testenv.Poll(t, 15*time.Second, "the refund to be confirmed", func() bool {
		return sys.Count(`SELECT count(*) FROM refunds WHERE order_id = $1 AND status = 'SUCCEEDED'`, o.OrderID) == 1
	})
	testenv.Poll(t, 10*time.Second, "every event to settle", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE state = 'RECEIVED'`) == 0
	})
	if n := sys.Count(`SELECT count(*) FROM refunds WHERE order_id = $1`, o.OrderID); n != 1 {
		t.Fatalf("%d refunds for one late approval", n)
	}
	if st := sys.PG.Stats()[o.OrderID]; st.Cancels != 1 {
		t.Fatalf("mockpg cancels = %d, want 1", st.Cancels)
	}
	if n := callbacks(sys, o.OrderID, "payment.refunded_late_approval"); n != 1 {
		t.Fatalf("refund callbacks = %d", n)
	}
	// The refund is a versioned change: a merchant that drops callbacks
	// with version <= the last it saw still gets it after payment.expired.
	if n := sys.Count(`SELECT count(*) FROM callbacks r JOIN callbacks e ON e.order_id = r.order_id
WHERE r.order_id = $1 AND r.event_type = 'payment.refunded_late_approval' AND e.event_type = 'payment.expired'
  AND (r.payload->'data'->>'version')::int > (e.payload->'data'->>'version')::int`, o.OrderID); n != 1 {
		t.Fatal("payment.refunded_late_approval carries no newer version than the payment.expired before it")
	}
	got := m.Do("GET", "/v1/orders/"+o.OrderID, nil).JSON()
	if n := sys.Count(`SELECT count(*) FROM callbacks WHERE order_id = $1 AND event_type = 'payment.refunded_late_approval'
  AND (payload->'data'->>'version')::int = $2`, o.OrderID, got["version"]); n != 1 {
		t.Fatalf("order version %v is not the refund callback's", got["version"])
	}
	if n := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND action = 'refund.succeeded' AND (details->>'version')::int = $2`, o.OrderID, got["version"]); n != 1 {
		t.Fatal("the refund's version is not in the order's history")
	}
}

// Issue 19: the PG's DONE for an order payrail already shows PAID is kept
// for the record but settled at the ingress — stored IGNORED with the
// ingress's note, no task for the worker — and fifty copies at once are one
// row. The same event for an order still CONFIRMING (the race in
// TestSameWebhookFiftyTimes) goes to the worker as before.
func TestReflectedWebhookSettledAtTheIngress(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	o := m.CreateOrder(4100)
	key := sys.Session(o)
	m.Confirm(o, key)
	sys.StartWorker()
	m.WaitStatus(o.OrderID, "PAID", 10*time.Second)
	var wg sync.WaitGroup
	codes := make([]int, 50)
	for i := range 50 {
		wg.Go(func() {
			codes[i] = sys.SignedPGWebhook("evt_reflected_1", paymentData(o.OrderID, key, "DONE", o.Amount))
		})
	}
	wg.Wait()
	for _, c := range codes {
		if c != 200 {
			t.Fatalf("webhook answered %d", c)
		}
	}
	var ev struct {
		State   string  `db:"state"`
		Note    *string `db:"note"`
		OrderID *string `db:"order_id"`
		Applied bool    `db:"applied"`
	}
	testenv.Must(t, sys.DB.DB.Get(&ev, `SELECT state, note, order_id, applied_at IS NOT NULL AS applied FROM pg_events WHERE event_key = 'evt_reflected_1'`))
	if ev.State != "IGNORED" || ev.Note == nil || !strings.HasPrefix(*ev.Note, "already reflected at the ingress") || ev.OrderID == nil || *ev.OrderID != o.OrderID || !ev.Applied {
		t.Fatalf("event = %+v (note %q), want IGNORED at the ingress for %s", ev, deref(ev.Note), o.OrderID)
	}
	if n := sys.Count(`SELECT count(*) FROM pg_events WHERE event_key = 'evt_reflected_1'`); n != 1 {
		t.Fatalf("stored %d times", n)
	}
	// A CANCELED event for the PAID order is news: it goes to the worker,
	// which looks it up (mockpg says DONE: not applied, rejected as ahead
	// of the PG's record).
	if c := sys.SignedPGWebhook("evt_news_1", paymentData(o.OrderID, key, "CANCELED", o.Amount)); c != 200 {
		t.Fatalf("webhook answered %d", c)
	}
	testenv.Poll(t, 10*time.Second, "the worker to settle the CANCELED event", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE event_key = 'evt_news_1' AND state <> 'RECEIVED' AND note NOT LIKE 'already reflected at the ingress%'`) == 1
	})
	if st := m.Status(o.OrderID); st != "PAID" {
		t.Fatalf("order %s after an event the PG does not back, want PAID", st)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
