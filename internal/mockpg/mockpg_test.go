package mockpg_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/payrail/payrail/internal/mockpg"
)

const (
	secretKey     = "test_sk_mockpg_test"
	webhookSecret = "whsec_test"
)

// delivery is one webhook as a receiver saw it.
type delivery struct {
	EventID string
	SigOK   bool
	Event   mockpg.WebhookEvent
}

// receiver is a webhook endpoint that verifies signatures with Sign and can
// be told to fail its first answers.
type receiver struct {
	mu       sync.Mutex
	got      []delivery
	failNext atomic.Int32
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if rc.failNext.Add(-1) >= 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	d := delivery{
		EventID: r.Header.Get(mockpg.EventIDHeader),
		SigOK: mockpg.Verify(webhookSecret, r.Header.Get(mockpg.SignatureHeader), r.Header.Get(mockpg.TimestampHeader),
			r.Header.Get(mockpg.EventIDHeader), body, time.Now()) == nil,
	}
	if err := json.Unmarshal(body, &d.Event); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.got = append(rc.got, d)
	rc.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// waitDeliveries polls until the receiver has n deliveries.
func (rc *receiver) waitDeliveries(t *testing.T, n int) []delivery {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := rc.deliveries()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d webhooks within 5s, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type fixture struct {
	pg   *mockpg.Server
	srv  *httptest.Server
	hook *receiver
}

func setup(t *testing.T, faults mockpg.Faults) *fixture {
	t.Helper()
	hook := &receiver{}
	hookSrv := httptest.NewServer(hook)
	pg := mockpg.New(mockpg.Config{
		SecretKey: secretKey, WebhookURL: hookSrv.URL, WebhookSecret: webhookSecret, Faults: faults,
	})
	srv := httptest.NewServer(pg)
	t.Cleanup(func() {
		pg.Close()
		srv.Close()
		hookSrv.Close()
	})
	return &fixture{pg: pg, srv: srv, hook: hook}
}

var orderSeq atomic.Int64

// newOrderID returns an orderId unique within the test binary.
func newOrderID() string { return "order_" + strconv.FormatInt(orderSeq.Add(1), 10) + "_x" }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// call sends a request to mockpg; auth adds the Basic header.
func (f *fixture) call(t *testing.T, method, path, idemKey string, body any, auth bool) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(mustJSON(body))
	}
	req, err := http.NewRequestWithContext(t.Context(), method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(secretKey+":")))
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func (f *fixture) paid(t *testing.T, amount int64) (orderID, key string) {
	t.Helper()
	orderID = newOrderID()
	key, err := f.pg.CreateSession(orderID, amount, "t")
	if err != nil {
		t.Fatal(err)
	}
	status, body := f.call(t, "POST", "/v1/payments/confirm", "c-"+orderID, map[string]any{"paymentKey": key, "orderId": orderID, "amount": amount}, true)
	if status != 200 || body["status"] != "DONE" {
		t.Fatalf("confirm: %d %v", status, body)
	}
	return orderID, key
}

func TestWebhookIsSignedAndTossShaped(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	orderID, key := f.paid(t, 15000)

	got := f.hook.waitDeliveries(t, 1)[0]
	if !got.SigOK {
		t.Error("signature does not verify with Sign(webhook secret, body)")
	}
	if !strings.HasPrefix(got.EventID, "evt_") {
		t.Errorf("event id %q", got.EventID)
	}
	ev := got.Event
	if ev.EventType != "PAYMENT_STATUS_CHANGED" || !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$`).MatchString(ev.CreatedAt) {
		t.Errorf("envelope %q %q", ev.EventType, ev.CreatedAt)
	}
	if ev.Data.PaymentKey != key || ev.Data.OrderID != orderID || ev.Data.Status != "DONE" || ev.Data.TotalAmount != 15000 || ev.Data.ApprovedAt == nil {
		t.Errorf("data %+v", ev.Data)
	}
}

func TestSignVector(t *testing.T) {
	t.Parallel()
	// printf '%s' '1700000000.evt_vector_1.{"eventType":"PAYMENT_STATUS_CHANGED"}' | openssl dgst -sha256 -hmac key
	body := []byte(`{"eventType":"PAYMENT_STATUS_CHANGED"}`)
	got := mockpg.Sign("key", "1700000000", "evt_vector_1", body)
	want := "v1=30f5561926e7dc2d05e8b34c50f6d8af0b826788e5f2c61c8df6968a4583c0e0"
	if got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

// Verify refuses what a replaying or forging sender could produce: another
// event id or timestamp under a captured signature, a stale timestamp, a
// missing header, a wrong secret.
func TestVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"eventType":"PAYMENT_STATUS_CHANGED"}`)
	now := time.Unix(1700000000, 0)
	sig := mockpg.Sign("key", "1700000000", "evt_1", body)
	for _, tc := range []struct {
		name        string
		sig, ts, id string
		secret      string
		body        []byte
		at          time.Time
		want        error
	}{
		{"valid", sig, "1700000000", "evt_1", "key", body, now, nil},
		{"valid within tolerance", sig, "1700000000", "evt_1", "key", body, now.Add(4 * time.Minute), nil},
		{"replayed under a new id", sig, "1700000000", "evt_2", "key", body, now, mockpg.ErrBadSignature},
		{"replayed with a new timestamp", sig, "1700000100", "evt_1", "key", body, now, mockpg.ErrBadSignature},
		{"stale", sig, "1700000000", "evt_1", "key", body, now.Add(6 * time.Minute), mockpg.ErrStale},
		{"from the future", sig, "1700000000", "evt_1", "key", body, now.Add(-6 * time.Minute), mockpg.ErrStale},
		{"altered body", sig, "1700000000", "evt_1", "key", append([]byte(" "), body...), now, mockpg.ErrBadSignature},
		{"wrong secret", sig, "1700000000", "evt_1", "other", body, now, mockpg.ErrBadSignature},
		{"no secret configured", sig, "1700000000", "evt_1", "", body, now, mockpg.ErrNoSignature},
		{"no timestamp", sig, "", "evt_1", "key", body, now, mockpg.ErrNoSignature},
		{"no event id", sig, "1700000000", "", "key", body, now, mockpg.ErrNoSignature},
		{"no version prefix", strings.TrimPrefix(sig, "v1="), "1700000000", "evt_1", "key", body, now, mockpg.ErrNoSignature},
		{"not hex", "v1=zz", "1700000000", "evt_1", "key", body, now, mockpg.ErrNoSignature},
	} {
		if err := mockpg.Verify(tc.secret, tc.sig, tc.ts, tc.id, tc.body, tc.at); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestWebhookRetriesUntil200(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	f.hook.failNext.Store(2)
	f.paid(t, 1000)
	got := f.hook.waitDeliveries(t, 1)
	if len(got) != 1 || !got[0].SigOK {
		t.Errorf("deliveries %+v", got)
	}
}

func TestWebhookDuplicateFault(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{WebhookDuplicateRate: 1})
	f.paid(t, 1000)
	got := f.hook.waitDeliveries(t, 2)
	if got[0].EventID != got[1].EventID || got[0].Event.Data.Status != "DONE" || got[1].Event.Data.Status != "DONE" {
		t.Errorf("want the same DONE event twice, got %+v", got)
	}
}

func TestWebhookReorderFault(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{WebhookReorderRate: 1})
	_, key := f.paid(t, 1000)
	status, body := f.call(t, "POST", "/v1/payments/"+key+"/cancel", "x1", map[string]any{"cancelReason": "r"}, true)
	if status != 200 {
		t.Fatalf("cancel %d %v", status, body)
	}
	got := f.hook.waitDeliveries(t, 2)
	if got[0].Event.Data.Status != "CANCELED" || got[1].Event.Data.Status != "DONE" || got[0].EventID == got[1].EventID {
		t.Errorf("want CANCELED to overtake DONE, got %s then %s", got[0].Event.Data.Status, got[1].Event.Data.Status)
	}
}

func TestWebhookOnDemand(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	orderID := newOrderID()
	key, err := f.pg.CreateSession(orderID, 500, "")
	if err != nil {
		t.Fatal(err)
	}
	status, body := f.call(t, "POST", "/sandbox/webhooks/send", "", map[string]any{"paymentKey": key, "status": "DONE"}, false)
	if status != http.StatusAccepted || body["eventId"] == "" {
		t.Fatalf("%d %v", status, body)
	}
	got := f.hook.waitDeliveries(t, 1)[0]
	if got.Event.Data.Status != "DONE" || got.EventID != body["eventId"] {
		t.Errorf("delivery %+v", got)
	}
	// The PG's own record is unchanged: the webhook told a story.
	if status, body := f.call(t, "GET", "/v1/payments/"+key, "", nil, true); status != 200 || body["status"] != "READY" {
		t.Errorf("lookup %d %v", status, body)
	}
	if status, _ := f.call(t, "POST", "/sandbox/webhooks/send", "", map[string]any{"paymentKey": key, "status": "BOGUS"}, false); status != 400 {
		t.Errorf("bogus status answered %d", status)
	}
}

func TestStatsPerOrder(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	a, keyA := f.paid(t, 10000)
	b, _ := f.paid(t, 2000)
	// A replayed confirm counts as a call, not an approval.
	f.call(t, "POST", "/v1/payments/confirm", "c-"+b, map[string]any{"paymentKey": "whatever", "orderId": b, "amount": 2000}, true)
	f.call(t, "POST", "/v1/payments/"+keyA+"/cancel", "k1", map[string]any{"cancelReason": "r", "cancelAmount": 4000}, true)
	f.call(t, "POST", "/v1/payments/"+keyA+"/cancel", "k1", map[string]any{"cancelReason": "r", "cancelAmount": 4000}, true)

	resp, err := f.srv.Client().Get(f.srv.URL + "/sandbox/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Orders map[string]mockpg.OrderStats `json:"orders"`
		Totals mockpg.OrderStats            `json:"totals"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := map[string]mockpg.OrderStats{
		a: {ConfirmCalls: 1, Approvals: 1, Cancels: 1, CancelCalls: 2, CanceledAmount: 4000},
		b: {ConfirmCalls: 2, Approvals: 1},
	}
	if diff := cmp.Diff(want, got.Orders); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(mockpg.OrderStats{ConfirmCalls: 3, Approvals: 2, Cancels: 1, CancelCalls: 2, CanceledAmount: 4000}, got.Totals); diff != "" {
		t.Errorf("totals (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, f.pg.Stats()); diff != "" {
		t.Errorf("Stats() (-want +got):\n%s", diff)
	}
}

func TestBasicAuthRequired(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	for _, tc := range []struct{ name, header string }{
		{"none", ""},
		{"wrong key", "Basic " + base64.StdEncoding.EncodeToString([]byte("test_sk_other:"))},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte(secretKey))},
		{"bearer", "Bearer " + secretKey},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", f.srv.URL+"/v1/payments/tmock_x", nil)
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 401 || body["code"] != "UNAUTHORIZED_KEY" {
			t.Errorf("%s: %d %v", tc.name, resp.StatusCode, body)
		}
	}
	if status, body := f.call(t, "GET", "/v1/payments/tmock_x", "", nil, true); status != 404 || body["code"] != "NOT_FOUND_PAYMENT" {
		t.Errorf("with auth: %d %v", status, body)
	}
}

func noRedirect(t *testing.T, srv *httptest.Server) *http.Client {
	t.Helper()
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

func TestCheckoutPayRedirectsToSuccessURL(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	orderID := newOrderID()
	q := url.Values{
		"orderId": {orderID}, "amount": {"15000"}, "orderName": {"티셔츠 <b>"},
		"successUrl": {"http://shop.test/pay/success?shop=1&lang=ko"}, "failUrl": {"http://shop.test/pay/fail"},
	}
	page, err := f.srv.Client().Get(f.srv.URL + "/checkout?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(page.Body)
	page.Body.Close()
	for _, want := range []string{`id="pay"`, `id="cancel"`, `method="post"`, "티셔츠 &lt;b&gt;", "₩15,000"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("checkout page lacks %s", want)
		}
	}

	form := url.Values{}
	for k, v := range q {
		form[k] = v
	}
	form.Set("action", "pay")
	resp, err := noRedirect(t, f.srv).PostForm(f.srv.URL+"/checkout", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("status %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	got := loc.Query()
	if loc.Host != "shop.test" || loc.Path != "/pay/success" || got.Get("shop") != "1" || got.Get("lang") != "ko" ||
		got.Get("orderId") != orderID || got.Get("amount") != "15000" || !strings.HasPrefix(got.Get("paymentKey"), "tmock_") {
		t.Fatalf("Location %s", loc)
	}
	// The paymentKey is a confirmable session.
	status, body := f.call(t, "POST", "/v1/payments/confirm", "k", map[string]any{"paymentKey": got.Get("paymentKey"), "orderId": orderID, "amount": 15000}, true)
	if status != 200 || body["status"] != "DONE" || body["orderName"] != "티셔츠 <b>" {
		t.Errorf("confirm %d %v", status, body)
	}
}

func TestCheckoutCancelAndDeclineRedirectToFailURL(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	for action, code := range map[string]string{"cancel": "PAY_PROCESS_CANCELED", "decline": "REJECT_CARD_COMPANY"} {
		orderID := newOrderID()
		form := url.Values{
			"orderId": {orderID}, "amount": {"1000"}, "successUrl": {"https://shop.test/ok"},
			"failUrl": {"https://shop.test/fail?from=mockpg"}, "action": {action},
		}
		resp, err := noRedirect(t, f.srv).PostForm(f.srv.URL+"/checkout", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		q := loc.Query()
		if resp.StatusCode != 303 || loc.Path != "/fail" || q.Get("from") != "mockpg" || q.Get("code") != code || q.Get("orderId") != orderID || q.Get("message") == "" {
			t.Errorf("%s: %d %s", action, resp.StatusCode, loc)
		}
	}
}

func TestCheckoutRefusesBadInput(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	for name, q := range map[string]url.Values{
		"javascript url": {"orderId": {"order_123456"}, "amount": {"100"}, "successUrl": {"javascript:alert(1)"}, "failUrl": {"https://x.test/f"}},
		"relative url":   {"orderId": {"order_123456"}, "amount": {"100"}, "successUrl": {"/ok"}, "failUrl": {"https://x.test/f"}},
		"short orderId":  {"orderId": {"abc"}, "amount": {"100"}, "successUrl": {"https://x.test/s"}, "failUrl": {"https://x.test/f"}},
		"float amount":   {"orderId": {"order_123456"}, "amount": {"10.5"}, "successUrl": {"https://x.test/s"}, "failUrl": {"https://x.test/f"}},
		"zero amount":    {"orderId": {"order_123456"}, "amount": {"0"}, "successUrl": {"https://x.test/s"}, "failUrl": {"https://x.test/f"}},
	} {
		resp, err := f.srv.Client().Get(f.srv.URL + "/checkout?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%s: %d", name, resp.StatusCode)
		}
	}
}

func TestFaultsEndpoint(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	want := mockpg.Faults{LatencyMS: 5, Error5xxRate: 0.1, TimeoutRate: 0.2, DeclineRate: 0.3, AnswerLostRate: 0.4,
		WebhookDuplicateRate: 0.5, WebhookReorderRate: 0.6, TimeoutMS: 1000, Seed: 42}
	if status, body := f.call(t, "POST", "/sandbox/faults", "", want, false); status != 200 {
		t.Fatalf("%d %v", status, body)
	}
	if diff := cmp.Diff(want, f.pg.Faults()); diff != "" {
		t.Errorf("faults (-want +got):\n%s", diff)
	}
	for name, body := range map[string]any{
		"rate above 1":  map[string]any{"declineRate": 1.5},
		"negative":      map[string]any{"latencyMs": -1},
		"unknown field": map[string]any{"declineRatio": 0.5},
		"wrong type":    map[string]any{"declineRate": "half"},
	} {
		if status, _ := f.call(t, "POST", "/sandbox/faults", "", body, false); status != 400 {
			t.Errorf("%s: %d", name, status)
		}
	}
	if diff := cmp.Diff(want, f.pg.Faults()); diff != "" {
		t.Errorf("rejected configs changed the faults (-want +got):\n%s", diff)
	}
}

func TestSandboxSessions(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	orderID := newOrderID()
	status, body := f.call(t, "POST", "/sandbox/sessions", "", map[string]any{"orderId": orderID, "amount": 700}, false)
	key, _ := body["paymentKey"].(string)
	if status != 200 || !strings.HasPrefix(key, "tmock_") {
		t.Fatalf("%d %v", status, body)
	}
	if status, body := f.call(t, "POST", "/sandbox/sessions", "", map[string]any{"orderId": "bad id!", "amount": 700}, false); status != 400 {
		t.Errorf("bad orderId: %d %v", status, body)
	}
	f.call(t, "POST", "/v1/payments/confirm", "k", map[string]any{"paymentKey": key, "orderId": orderID, "amount": 700}, true)
	// Like Toss, an orderId is paid once.
	if status, body := f.call(t, "POST", "/sandbox/sessions", "", map[string]any{"orderId": orderID, "amount": 700}, false); status != 400 || body["code"] != "DUPLICATED_ORDER_ID" {
		t.Errorf("second session for a paid order: %d %v", status, body)
	}
}

func TestSessionExpiresWithInjectedClock(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	pg := mockpg.New(mockpg.Config{SecretKey: secretKey, SessionTTL: time.Minute, Now: clock})
	srv := httptest.NewServer(pg)
	t.Cleanup(func() { pg.Close(); srv.Close() })
	f := &fixture{pg: pg, srv: srv}
	orderID := newOrderID()
	key, _ := pg.CreateSession(orderID, 100, "")
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	status, body := f.call(t, "POST", "/v1/payments/confirm", "k", map[string]any{"paymentKey": key, "orderId": orderID, "amount": 100}, true)
	if status != 404 || body["code"] != "NOT_FOUND_PAYMENT_SESSION" {
		t.Errorf("%d %v", status, body)
	}
}

func TestConsoleShowsPaymentsAndLog(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	orderID, key := f.paid(t, 1234)
	wants := []string{orderID, key, "₩1,234", "DONE", `action="/sandbox/webhooks/send"`, `value="ABORTED"`, "POST /v1/payments/confirm", "sent evt_"}
	// The webhook's log line is written after the receiver answered: poll.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := f.srv.Client().Get(f.srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		html, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var missing []string
		for _, want := range wants {
			if !strings.Contains(string(html), want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("console lacks %q", missing)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The console's button posts a form and comes back to /.
	form := url.Values{"paymentKey": {key}, "status": {"ABORTED"}}
	back, err := noRedirect(t, f.srv).PostForm(f.srv.URL+"/sandbox/webhooks/send", form)
	if err != nil {
		t.Fatal(err)
	}
	back.Body.Close()
	if back.StatusCode != 303 || back.Header.Get("Location") != "/" {
		t.Errorf("button answered %d %s", back.StatusCode, back.Header.Get("Location"))
	}
	got := f.hook.waitDeliveries(t, 2)
	if got[1].Event.Data.Status != "ABORTED" || got[1].Event.Data.Failure == nil {
		t.Errorf("on-demand ABORTED webhook %+v", got[1].Event.Data)
	}
}

func TestIdempotencyIsScopedByURL(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{})
	_, key := f.paid(t, 1000)
	// The same key on another URL is another request.
	status, body := f.call(t, "POST", "/v1/payments/"+key+"/cancel", "same", map[string]any{"cancelReason": "r", "cancelAmount": 100}, true)
	if status != 200 {
		t.Fatalf("%d %v", status, body)
	}
	orderID := newOrderID()
	k2, _ := f.pg.CreateSession(orderID, 50, "")
	status, body = f.call(t, "POST", "/v1/payments/confirm", "same", map[string]any{"paymentKey": k2, "orderId": orderID, "amount": 50}, true)
	if status != 200 || body["paymentKey"] != k2 {
		t.Errorf("%d %v", status, body)
	}
}

func TestCloseReleasesHangingRequests(t *testing.T) {
	t.Parallel()
	f := setup(t, mockpg.Faults{TimeoutRate: 1, TimeoutMS: 60000})
	orderID := newOrderID()
	key, _ := f.pg.CreateSession(orderID, 10, "")
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), "POST", f.srv.URL+"/v1/payments/confirm",
			bytes.NewReader(mustJSON(map[string]any{"paymentKey": key, "orderId": orderID, "amount": 10})))
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(secretKey+":")))
		resp, err := f.srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
			done <- resp.StatusCode
			return
		}
		done <- 0
	}()
	deadline := time.Now().Add(5 * time.Second)
	for f.pg.Stats()[orderID].ConfirmCalls == 0 {
		if time.Now().After(deadline) {
			t.Fatal("confirm never arrived")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.pg.Close()
	select {
	case status := <-done:
		if status != 0 {
			t.Errorf("a hang must end without an answer, got %d", status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release the hanging request")
	}
}
