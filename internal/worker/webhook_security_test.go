package worker_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

func hmacHex(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// postToss posts an unsigned event to the Toss door and returns the status
// and the answer.
func postToss(t *testing.T, sys *systest.System, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(sys.URL+"/pg/webhooks/toss", "application/json", bytes.NewReader(body))
	testenv.Must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rawEvent is a well-formed event for the order whose orderName is the raw
// JSON value name, for bodies json.Marshal would not write.
func rawEvent(orderID, paymentKey, name string) []byte {
	return []byte(`{"eventType":"PAYMENT_STATUS_CHANGED","data":{"paymentKey":"` + paymentKey + `","orderId":"` + orderID +
		`","status":"DONE","totalAmount":7000,"orderName":` + name + `}}`)
}

func tossEvent(data map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-11-24T00:00:00.000", "data": data})
	return b
}

// A correctly signed mockpg event saying DONE for a payment the PG never
// approved must not make the order PAID: signed or not, an event is
// believed only when the PG's own record agrees (the forged-PAID door of
// the security review).
func TestSignedEventThePGContradictsIsNotBelieved(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true, Faults: mockpg.Faults{Error5xxRate: 1}})
	sys.PG.SetWebhookURL("")
	m := sys.NewMerchant("")
	o := m.CreateOrder(12000)
	key := sys.Session(o)
	m.Confirm(o, key) // stays CONFIRMING: the PG answers 5xx to every confirm
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c := sys.SignedPGWebhook(fmt.Sprintf("evt_forged_done_%02d", i), paymentData(o.OrderID, key, "DONE", o.Amount)); c != 200 {
				t.Errorf("webhook %d: %d", i, c)
			}
		}()
	}
	wg.Wait()
	testenv.Poll(t, 15*time.Second, "every forged event to be rejected", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE provider = 'mockpg' AND state = 'REJECTED'`) == 20
	})
	if st := m.Status(o.OrderID); st != "CONFIRMING" {
		t.Fatalf("status = %s; a signed event the PG contradicts moved the order", st)
	}
	if st := sys.PG.Stats()[o.OrderID]; st.Approvals != 0 {
		t.Fatalf("approvals = %d", st.Approvals)
	}
	if n := transitions(sys, o.OrderID, "PAID"); n != 0 {
		t.Fatalf("PAID transitions = %d", n)
	}
}

// Outside sandbox mode (the PG is Toss) the mockpg door does not exist:
// a perfectly signed event is a 404 and nothing is stored.
func TestMockPGDoorClosedOutsideSandbox(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{"PAYRAIL_PG_PROVIDER": "toss", "PAYRAIL_PG_WEBHOOK_SECRET": ""}})
	sys.PG.SetWebhookURL("")
	m := sys.NewMerchant("")
	o := m.CreateOrder(5000)
	key := sys.Session(o)
	if c := sys.SignedPGWebhook("evt_prod_1", paymentData(o.OrderID, key, "DONE", o.Amount)); c != 404 {
		t.Fatalf("mockpg door outside sandbox answered %d, want 404", c)
	}
	if n := sys.Count(`SELECT count(*) FROM pg_events`); n != 0 {
		t.Fatalf("%d events stored", n)
	}
}

// The unsigned door keeps out what no PG sends before anything is stored,
// and what it does store never grows an order's history: a stranger who
// knows an orderId (it is in the checkout URL) cannot bloat the order's
// reads or its permanent log.
func TestUnsignedDoorValidatesBeforeStoring(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	sys.PG.SetWebhookURL("")
	m := sys.NewMerchant("")
	o := m.CreateOrder(7000)
	key := sys.Session(o)
	if r := m.Confirm(o, key, "Prefer", "wait=10"); r.Status != 200 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	historyBefore := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1`, o.OrderID)

	for _, tc := range []struct {
		name string
		body []byte
		want int
	}{
		{"a 1 MiB paymentKey", tossEvent(paymentData(o.OrderID, strings.Repeat("A", 1<<20), "DONE", o.Amount)), 413},
		{"a 201-character paymentKey", tossEvent(paymentData(o.OrderID, strings.Repeat("A", 201), "DONE", o.Amount)), 400},
		{"a paymentKey outside the alphabet", tossEvent(paymentData(o.OrderID, "tmock_<script>", "DONE", o.Amount)), 400},
		{"an unknown status", tossEvent(paymentData(o.OrderID, key, "PAID_TRUST_ME", o.Amount)), 400},
		{"a malformed orderId", tossEvent(paymentData("x", key, "DONE", o.Amount)), 400},
		{"a negative amount", tossEvent(paymentData(o.OrderID, key, "DONE", -1)), 400},
		{"wrong types", []byte(`{"eventType":"PAYMENT_STATUS_CHANGED","data":{"paymentKey":1}}`), 400},
		{"not JSON", []byte(`{"eventType":`), 400},
		{"a NUL escape (jsonb refuses it)", rawEvent(o.OrderID, key, `"x\u0000"`), 400},
		{"a lone surrogate", rawEvent(o.OrderID, key, `"\ud800"`), 400},
		{"invalid UTF-8", rawEvent(o.OrderID, key, "\"\xff\""), 400},
		{"100 KiB", tossEvent(map[string]any{"paymentKey": key, "orderId": o.OrderID, "status": "DONE", "orderName": strings.Repeat("x", 100<<10)}), 413},
	} {
		if c, b := postToss(t, sys, tc.body); c != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, c, b, tc.want)
		}
	}
	// Well-formed, but about nothing payrail knows, or not a payment event:
	// 200 (so the PG stops retrying), counted, not stored.
	for name, body := range map[string][]byte{
		"unknown order":   tossEvent(paymentData("ord_nobody_knows_1", "tmock_nobody", "DONE", 1000)),
		"other eventType": []byte(`{"eventType":"PAYOUT_STATUS_CHANGED","data":{"paymentKey":"x"}}`),
	} {
		if c, b := postToss(t, sys, body); c != 200 || !strings.Contains(b, `"stored":false`) {
			t.Errorf("%s: %d %s, want 200 stored:false", name, c, b)
		}
	}
	if n := sys.Count(`SELECT count(*) FROM pg_events`); n != 0 {
		t.Fatalf("%d events stored from refused posts", n)
	}

	// Well-formed events naming the order with paymentKeys that are not its
	// own, concurrently: stored (bounded rows), ignored, no history.
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, b := postToss(t, sys, tossEvent(paymentData(o.OrderID, fmt.Sprintf("tmock_stranger_%02d_%s", i, strings.Repeat("Z", 150)), "CANCELED", o.Amount))); c != 200 {
				t.Errorf("stranger %d: %d %s", i, c, b)
			}
		}()
	}
	wg.Wait()
	testenv.Poll(t, 15*time.Second, "the strangers' events to settle", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE state = 'RECEIVED'`) == 0
	})
	if n := sys.Count(`SELECT count(*) FROM pg_events WHERE state = 'IGNORED'`); n != 30 {
		t.Fatalf("ignored events = %d, want 30", n)
	}
	if n := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1`, o.OrderID); n != historyBefore {
		t.Fatalf("history grew from %d to %d rows through the unsigned door", historyBefore, n)
	}
	if st := m.Status(o.OrderID); st != "PAID" {
		t.Fatalf("status = %s", st)
	}
	// What jsonb stores is not refused: a literal U+FFFD (mojibake in an
	// orderName the PG echoes) and a proper surrogate pair.
	for _, name := range []string{"\"caf\uFFFD \xef\xbf\xbd\"", `"\ud83d\ude00"`} {
		if c, b := postToss(t, sys, rawEvent(o.OrderID, key, name)); c != 200 {
			t.Errorf("orderName %s: %d %s, want 200", name, c, b)
		}
	}
}

// An order's history is read in pages of at most 100, the merchant's view
// names no operator, and a cursor that is not ours is a 400.
func TestHistoryIsPaginated(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	o := m.CreateOrder(3000)
	// 250 more rows, as many operator actions would leave.
	testenv.Must(t, sys.Exec(`INSERT INTO payment_log (order_id, action, actor, details)
SELECT $1, 'ops.note', 'operator:alice', jsonb_build_object('n', g) FROM generate_series(1, 250) g`, o.OrderID))
	total := sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1`, o.OrderID)

	r := m.Do("GET", "/v1/orders/"+o.OrderID, nil)
	var first struct {
		History []struct{ Action, Actor string } `json:"history"`
		Next    string                           `json:"historyNextCursor"`
	}
	testenv.Must(t, json.Unmarshal(r.Body, &first))
	if r.Status != 200 || len(first.History) != 100 || first.Next == "" {
		t.Fatalf("order read: %d, %d entries, next %q; want 100 and a cursor", r.Status, len(first.History), first.Next)
	}
	seen, cursor, pages := len(first.History), first.Next, 1
	for cursor != "" {
		r := m.Do("GET", "/v1/orders/"+o.OrderID+"/history?cursor="+cursor, nil)
		var page struct {
			History []struct{ Action, Actor string } `json:"history"`
			Next    *string                          `json:"nextCursor"`
		}
		testenv.Must(t, json.Unmarshal(r.Body, &page))
		if r.Status != 200 || len(page.History) == 0 || len(page.History) > 100 {
			t.Fatalf("page %d: %d, %d entries", pages, r.Status, len(page.History))
		}
		for _, e := range page.History {
			if strings.Contains(e.Actor, "alice") {
				t.Fatalf("merchant history names the operator: %q", e.Actor)
			}
		}
		seen += len(page.History)
		cursor, pages = "", pages+1
		if page.Next != nil {
			cursor = *page.Next
		}
	}
	if seen != total || pages != 3 {
		t.Fatalf("read %d of %d entries in %d pages", seen, total, pages)
	}
	if r := m.Do("GET", "/v1/orders/"+o.OrderID+"/history?cursor=abc", nil); r.Status != 400 {
		t.Fatalf("bad cursor: %d", r.Status)
	}
	if r := m.Do("GET", "/v1/orders/"+o.OrderID+"/history?limit=101", nil); r.Status != 400 {
		t.Fatalf("limit 101: %d", r.Status)
	}
	other := sys.NewMerchant("")
	if r := other.Do("GET", "/v1/orders/"+o.OrderID+"/history", nil); r.Status != 404 {
		t.Fatalf("another merchant read the history: %d", r.Status)
	}
}

// A refund cancels only an approved payment of its own order: one that
// names another order's payment (however the row came to be) is looked up,
// found not to be this order's, and nothing is cancelled.
func TestRefundLooksThePaymentUpFirst(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true, Env: map[string]string{"PAYRAIL_ORDER_TTL": "1s", "PAYRAIL_SWEEP_INTERVAL": "200ms"}})
	sys.PG.SetWebhookURL("")
	m := sys.NewMerchant("")
	victim := m.CreateOrder(9900)
	vkey := sys.Session(victim)
	if r := m.Confirm(victim, vkey, "Prefer", "wait=10"); r.Status != 200 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	expired := m.CreateOrder(9900)
	m.WaitStatus(expired.OrderID, "EXPIRED", 10*time.Second)
	ctx := context.Background()
	r, _, err := sys.Deps.Store.CreateRefund(ctx, expired.OrderID, vkey, 9900, "test")
	testenv.Must(t, err)
	testenv.Must(t, sys.Deps.Queue.Refund(ctx, r.RefundID, 0))
	testenv.Poll(t, 10*time.Second, "the refund to be refused", func() bool {
		return sys.Count(`SELECT count(*) FROM refunds WHERE refund_id = $1 AND last_error LIKE 'mismatch%'`, r.RefundID) == 1
	})
	if st := sys.PG.Stats()[victim.OrderID]; st.Cancels != 0 {
		t.Fatalf("another order's payment was cancelled %d times", st.Cancels)
	}
	if st := m.Status(victim.OrderID); st != "PAID" {
		t.Fatalf("victim status = %s", st)
	}
}

// postTossFrom posts an event as if relayed by our proxy for src.
func postTossFrom(t *testing.T, sys *systest.System, src string, body []byte) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", sys.URL+"/pg/webhooks/toss", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", src)
	resp, err := http.DefaultClient.Do(req)
	testenv.Must(t, err)
	resp.Body.Close()
	return resp
}

// One source flooding the unsigned door is refused with 429 (and the
// RateLimit headers) once over its bucket, while another source, posting
// at the same time, is not slowed: every one of its events is answered
// 200. The allow-list refuses sources outside it.
func TestUnsignedDoorLimitsEachSource(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{
		"PAYRAIL_PG_WEBHOOK_RATE": "5", "PAYRAIL_PG_WEBHOOK_BURST": "10",
		"PAYRAIL_TRUSTED_PROXIES": "127.0.0.1/32", "PAYRAIL_PG_WEBHOOK_ALLOW_CIDRS": "198.51.100.0/24",
	}})
	body := tossEvent(paymentData("ord_nobody_knows_2", "tmock_nobody", "DONE", 1000))
	// Baseline: the quiet source alone.
	for i := range 5 {
		if r := postTossFrom(t, sys, "198.51.100.20", body); r.StatusCode != 200 {
			t.Fatalf("quiet source alone, post %d: %d", i, r.StatusCode)
		}
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var limited *http.Response
	quietOK := 0
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := postTossFrom(t, sys, "198.51.100.10", body)
			mu.Lock()
			defer mu.Unlock()
			codes[r.StatusCode]++
			if r.StatusCode == 429 {
				limited = r
			}
		}()
		if i%12 == 0 { // the quiet source keeps posting during the flood
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := postTossFrom(t, sys, "198.51.100.20", body)
				mu.Lock()
				defer mu.Unlock()
				if r.StatusCode == 200 {
					quietOK++
				}
			}()
		}
	}
	wg.Wait()
	// At most the burst plus what refilled (5/s) while the flood ran.
	allowed := 10 + int(5*time.Since(start).Seconds()) + 1
	if codes[429] == 0 || codes[200] > allowed || codes[200]+codes[429] != 60 {
		t.Fatalf("flooding source got %v; want at most %d 200s and the rest 429", codes, allowed)
	}
	if quietOK != 5 {
		t.Fatalf("the quiet source got %d of 5 answers during the flood", quietOK)
	}
	if limited.Header.Get("Retry-After") == "" || limited.Header.Get("RateLimit-Policy") == "" || limited.Header.Get("RateLimit") == "" {
		t.Fatalf("429 without Retry-After/RateLimit headers: %v", limited.Header)
	}
	if r := postTossFrom(t, sys, "203.0.113.9", body); r.StatusCode != 403 {
		t.Fatalf("source outside the allow-list: %d, want 403", r.StatusCode)
	}
	// A client cannot spoof its way in by prepending to X-Forwarded-For:
	// only the hop our proxy appended counts.
	if r := postTossFrom(t, sys, "198.51.100.20, 203.0.113.9", body); r.StatusCode != 403 {
		t.Fatalf("spoofed X-Forwarded-For: %d, want 403", r.StatusCode)
	}
	if n := sys.Count(`SELECT count(*) FROM pg_events`); n != 0 {
		t.Fatalf("%d events stored", n)
	}
}

// The PG's API may lag its own webhook: a DONE whose lookup still says
// READY is asked again for PAYRAIL_PG_LAG_WINDOW before it is rejected, so
// a real approval reported early is not thrown away.
func TestEventAheadOfThePGRecordIsRetried(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true, Faults: mockpg.Faults{Error5xxRate: 1},
		Env: map[string]string{"PAYRAIL_PG_LAG_WINDOW": "30s"}})
	sys.PG.SetWebhookURL("")
	m := sys.NewMerchant("")
	o := m.CreateOrder(8800)
	key := sys.Session(o)
	m.Confirm(o, key) // CONFIRMING: the PG answers 5xx
	if c, b := postToss(t, sys, tossEvent(paymentData(o.OrderID, key, "DONE", o.Amount))); c != 200 {
		t.Fatalf("event: %d %s", c, b)
	}
	testenv.Poll(t, 10*time.Second, "the event to be stored", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1`, o.OrderID) == 1
	})
	// The PG catches up (the approval lands).
	sys.PG.SetFaults(mockpg.Faults{})
	if res := sys.PGClient().Confirm(context.Background(), "catch-up", key, o.OrderID, o.Amount); res.Outcome.String() != "approved" {
		t.Fatalf("approval: %+v", res)
	}
	m.WaitStatus(o.OrderID, "PAID", 15*time.Second)
	testenv.Poll(t, 15*time.Second, "the event to settle", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1 AND state <> 'RECEIVED'`, o.OrderID) == 1
	})
	if n := sys.Count(`SELECT count(*) FROM pg_events WHERE order_id = $1 AND state = 'REJECTED'`, o.OrderID); n != 0 {
		t.Fatal("a real approval reported before the PG's API showed it was rejected as forged")
	}
}
