package callback_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/payrail/payrail/internal/callback"
	"github.com/payrail/payrail/internal/process"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// received is one request as the merchant's endpoint saw it.
type received struct {
	ID, Timestamp, Signature string
	Body                     []byte
	At                       time.Time
	Type                     string
	OrderID                  string
}

// endpoint is a merchant's callback receiver. answer decides each reply from
// the count of requests so far for that webhook-id (1 for the first).
type endpoint struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	perID  map[string]int
	answer func(n int, w http.ResponseWriter, r *http.Request)
}

func newEndpoint(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *endpoint {
	e := &endpoint{perID: map[string]int{}, answer: answer}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p struct {
			Type string `json:"type"`
			Data struct {
				OrderID string `json:"orderId"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &p)
		e.mu.Lock()
		id := r.Header.Get("webhook-id")
		e.perID[id]++
		n := e.perID[id]
		e.got = append(e.got, received{ID: id, Timestamp: r.Header.Get("webhook-timestamp"), Signature: r.Header.Get("webhook-signature"),
			Body: body, At: time.Now(), Type: p.Type, OrderID: p.Data.OrderID})
		answer := e.answer
		e.mu.Unlock()
		if answer != nil {
			answer(n, w, r)
		}
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) requests() []received {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

func (e *endpoint) setAnswer(f func(n int, w http.ResponseWriter, r *http.Request)) {
	e.mu.Lock()
	e.answer = f
	e.mu.Unlock()
}

func status(code int) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

func start(t *testing.T, env map[string]string, hook func(*callback.Deliverer)) *systest.System {
	t.Helper()
	e := map[string]string{"PAYRAIL_CALLBACK_SCHEDULE": "50ms,50ms,50ms", "PAYRAIL_CALLBACK_TIMEOUT": "2s"}
	for k, v := range env {
		e[k] = v
	}
	opt := systest.Options{Worker: true, Env: e}
	if hook != nil {
		opt.WorkerHook = func(w *process.Worker) { hook(w.Handler.Callbacks.(*callback.Deliverer)) }
	}
	return systest.Start(t, opt)
}

// pay creates an order and confirms it; the worker makes it PAID, which
// writes the payment.paid outbox row.
func pay(t *testing.T, sys *systest.System, m *systest.Merchant) string {
	t.Helper()
	o := m.CreateOrder(15000)
	if r := m.Confirm(o, sys.Session(o)); r.Status != 202 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	return o.OrderID
}

type cbRow struct {
	CallbackID string `db:"callback_id"`
	Status     string `db:"status"`
	Attempt    int    `db:"attempt"`
	Seq        int64  `db:"seq"`
}

func callbackOf(t *testing.T, sys *systest.System, orderID string) (cbRow, bool) {
	t.Helper()
	var rows []cbRow
	testenv.Must(t, sys.DB.DB.Select(&rows, `SELECT callback_id, status, attempt, seq FROM callbacks WHERE order_id = $1 AND event_type = 'payment.paid'`, orderID))
	if len(rows) == 0 {
		return cbRow{}, false
	}
	return rows[0], true
}

func waitCallback(t *testing.T, sys *systest.System, orderID, want string, timeout time.Duration) cbRow {
	t.Helper()
	var c cbRow
	testenv.Poll(t, timeout, "callback of "+orderID+" to be "+want, func() bool {
		var ok bool
		c, ok = callbackOf(t, sys, orderID)
		return ok && c.Status == want
	})
	return c
}

type attemptRow struct {
	Attempt        int     `db:"attempt"`
	StatusCode     *int    `db:"status_code"`
	LatencyMS      int     `db:"latency_ms"`
	Error          *string `db:"error"`
	ResponsePrefix *string `db:"response_prefix"`
}

func attempts(t *testing.T, sys *systest.System, callbackID string) []attemptRow {
	t.Helper()
	var out []attemptRow
	testenv.Must(t, sys.DB.DB.Select(&out, `SELECT attempt, status_code, latency_ms, error, response_prefix FROM callback_attempts WHERE callback_id = $1 ORDER BY id`, callbackID))
	return out
}

func codes(as []attemptRow) []int {
	var out []int
	for _, a := range as {
		c := 0
		if a.StatusCode != nil {
			c = *a.StatusCode
		}
		out = append(out, c)
	}
	return out
}

func verify(t *testing.T, r received, secrets ...string) {
	t.Helper()
	h := http.Header{}
	h.Set("webhook-id", r.ID)
	h.Set("webhook-timestamp", r.Timestamp)
	h.Set("webhook-signature", r.Signature)
	for _, s := range secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		testenv.Must(t, err)
		if err := wh.Verify(r.Body, h); err != nil {
			t.Errorf("signature of %s does not verify with %s…: %v", r.ID, s[:12], err)
		}
	}
}

func TestRetriedUntilDelivered(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 3 {
			http.Error(w, "not yet", 500)
		}
	})
	sys := start(t, nil, nil)
	m := sys.NewMerchant(ep.URL + "/callbacks")
	orderID := pay(t, sys, m)
	c := waitCallback(t, sys, orderID, "DELIVERED", 20*time.Second)
	if c.Attempt != 4 {
		t.Errorf("delivered on attempt %d, want 4", c.Attempt)
	}
	as := attempts(t, sys, c.CallbackID)
	if got, want := codes(as), []int{500, 500, 500, 200}; !slices.Equal(got, want) {
		t.Errorf("attempt status codes = %v, want %v", got, want)
	}
	for i, a := range as {
		if a.Attempt != i+1 {
			t.Errorf("attempt %d numbered %d", i+1, a.Attempt)
		}
	}
	reqs := ep.requests()
	if len(reqs) != 4 {
		t.Fatalf("endpoint got %d requests, want 4", len(reqs))
	}
	for _, r := range reqs {
		if r.ID != c.CallbackID || string(r.Body) != string(reqs[0].Body) {
			t.Errorf("retry changed the webhook-id or body: %s", r.ID)
		}
		if r.Type != "payment.paid" || r.OrderID != orderID {
			t.Errorf("body type=%s orderId=%s", r.Type, r.OrderID)
		}
		verify(t, r, m.CallbackSecret)
	}

	// The merchant sees the callback and its attempts; another merchant
	// sees nothing of it.
	res := m.Do("GET", "/v1/callbacks?orderId="+orderID, nil)
	var list struct {
		Callbacks []struct {
			CallbackID string `json:"callbackId"`
			Status     string `json:"status"`
			Attempts   []struct {
				StatusCode int `json:"statusCode"`
			} `json:"attempts"`
		} `json:"callbacks"`
	}
	testenv.Must(t, json.Unmarshal(res.Body, &list))
	if res.Status != 200 || len(list.Callbacks) != 1 || list.Callbacks[0].CallbackID != c.CallbackID || len(list.Callbacks[0].Attempts) != 4 {
		t.Errorf("GET /v1/callbacks: %d %s", res.Status, res.Body)
	}
	other := sys.NewMerchant("")
	if res := other.Do("GET", "/v1/callbacks?orderId="+orderID, nil); res.Status != 200 || !strings.Contains(string(res.Body), `"callbacks":[]`) {
		t.Errorf("another merchant's view: %d %s", res.Status, res.Body)
	}
	if res := other.Do("POST", "/v1/callbacks/"+c.CallbackID+"/redeliver", nil); res.Status != 404 || res.Code() != "CALLBACK_NOT_FOUND" {
		t.Errorf("another merchant's redeliver: %d %s", res.Status, res.Body)
	}
}

func TestDeadThenRedelivered(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(503))
	sys := start(t, nil, nil)
	m := sys.NewMerchant(ep.URL)
	orderID := pay(t, sys, m)
	c := waitCallback(t, sys, orderID, "DEAD", 20*time.Second)
	if n := len(attempts(t, sys, c.CallbackID)); n != 4 {
		t.Fatalf("%d attempts before DEAD, want 4 (first + 3 retries)", n)
	}
	ep.setAnswer(status(200))
	if r := m.Do("POST", "/v1/callbacks/"+c.CallbackID+"/redeliver", nil); r.Status != 202 {
		t.Fatalf("redeliver: %d %s", r.Status, r.Body)
	}
	c = waitCallback(t, sys, orderID, "DELIVERED", 10*time.Second)
	as := attempts(t, sys, c.CallbackID)
	if got := codes(as); !slices.Equal(got, []int{503, 503, 503, 503, 200}) {
		t.Errorf("codes = %v", got)
	}
	if last := as[len(as)-1].Attempt; last != 101 {
		t.Errorf("redelivered attempt numbered %d, want 101 (generation 1, attempt 1)", last)
	}
	// Redelivering a delivered callback sends it again.
	if r := m.Do("POST", "/v1/callbacks/"+c.CallbackID+"/redeliver", nil); r.Status != 202 {
		t.Fatalf("redeliver: %d %s", r.Status, r.Body)
	}
	testenv.Poll(t, 10*time.Second, "second redelivery", func() bool { return len(attempts(t, sys, c.CallbackID)) == 6 })
	waitCallback(t, sys, orderID, "DELIVERED", 10*time.Second)
}

func TestGoneDisablesEndpointUntilReenabled(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(410))
	// One worker slot and one callback at a time, so the backlog is sent
	// strictly in the order it is claimed (creation order); see
	// docs/callbacks.md.
	sys := start(t, map[string]string{"PAYRAIL_WORKER_CONCURRENCY": "1", "PAYRAIL_CALLBACK_CONCURRENCY": "1"}, nil)
	m := sys.NewMerchant(ep.URL)
	first := pay(t, sys, m)
	testenv.Poll(t, 15*time.Second, "endpoint disabled", func() bool {
		return sys.Count(`SELECT count(*) FROM merchants WHERE merchant_id = $1 AND NOT callback_enabled`, m.MerchantID) == 1
	})
	orders := []string{first, pay(t, sys, m), pay(t, sys, m)}
	for _, o := range orders[1:] {
		m.WaitStatus(o, "PAID", 10*time.Second)
	}
	// A negative: nothing may arrive while the endpoint is disabled. Give
	// the sweep (1 s) two ticks to misbehave.
	time.Sleep(2500 * time.Millisecond)
	if n := len(ep.requests()); n != 1 {
		t.Fatalf("endpoint got %d requests while disabled, want only the 410'd one", n)
	}
	for _, o := range orders {
		if c, ok := callbackOf(t, sys, o); !ok || c.Status != "PENDING" {
			t.Fatalf("callback of %s: %+v", o, c)
		}
	}
	ep.setAnswer(status(200))
	if st, b := sys.Admin("PATCH", "/admin/merchants/"+m.MerchantID, map[string]any{"callbackEnabled": true}); st != 200 {
		t.Fatalf("re-enable: %d %s", st, b)
	}
	for _, o := range orders {
		waitCallback(t, sys, o, "DELIVERED", 15*time.Second)
	}
	var got []string
	for _, r := range ep.requests()[1:] {
		got = append(got, r.OrderID)
	}
	if !slices.Equal(got, orders) {
		t.Errorf("delivered in order %v, want creation order %v", got, orders)
	}
}

func TestSlowAndHugeAnswers(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	ep := newEndpoint(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 { // hang past the 1 s timeout
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.WriteHeader(200)
		chunk := []byte(strings.Repeat("x", 1<<20))
		for range 10 { // 10 MB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	sys := start(t, map[string]string{"PAYRAIL_CALLBACK_TIMEOUT": "1s"}, nil)
	t.Cleanup(func() { close(release) })
	m := sys.NewMerchant(ep.URL)
	orderID := pay(t, sys, m)
	c := waitCallback(t, sys, orderID, "DELIVERED", 20*time.Second)
	as := attempts(t, sys, c.CallbackID)
	if len(as) != 2 {
		t.Fatalf("%d attempts, want 2", len(as))
	}
	if a := as[0]; a.StatusCode != nil || a.Error == nil || !strings.Contains(*a.Error, "timeout") || a.LatencyMS < 900 || a.LatencyMS > 3000 {
		t.Errorf("first attempt = code %v err %v latency %d ms, want a 1 s timeout", a.StatusCode, a.Error, a.LatencyMS)
	}
	if a := as[1]; a.StatusCode == nil || *a.StatusCode != 200 || a.ResponsePrefix == nil || len(*a.ResponsePrefix) != callback.MaxRecorded {
		t.Errorf("second attempt = code %v prefix %d bytes, want 200 and 1 KiB kept", a.StatusCode, len(deref(a.ResponsePrefix)))
	} else {
		t.Logf("10 MB answer: attempt took %d ms, kept %d bytes", a.LatencyMS, len(*a.ResponsePrefix))
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func TestRotationSignsWithBothSecrets(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, nil)
	sys := start(t, nil, nil)
	m := sys.NewMerchant(ep.URL)
	st, b := sys.Admin("POST", "/admin/merchants/"+m.MerchantID+"/secrets", map[string]any{"kind": "callback"})
	if st != 201 {
		t.Fatalf("add secret: %d %s", st, b)
	}
	var sec struct{ Secret string }
	testenv.Must(t, json.Unmarshal(b, &sec))
	orderID := pay(t, sys, m)
	waitCallback(t, sys, orderID, "DELIVERED", 15*time.Second)
	r := ep.requests()[0]
	if n := len(strings.Fields(r.Signature)); n != 2 {
		t.Fatalf("webhook-signature %q: want two signatures", r.Signature)
	}
	verify(t, r, m.CallbackSecret, sec.Secret)
}

func TestRedisFlushLosesNoCallback(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(500))
	// 60 steps of 300 ms: the first callback must not run out of attempts
	// (DEAD) while the other four payments are made on a loaded machine.
	sys := start(t, map[string]string{"PAYRAIL_CALLBACK_SCHEDULE": strings.TrimSuffix(strings.Repeat("300ms,", 60), ",")},
		func(d *callback.Deliverer) {
			d.RequeueAfter = time.Second
			// This test is about lost triggers, not the breaker.
			d.Breaker = callback.BreakerPolicy{Threshold: 1000, Cooldown: time.Second, MaxCooldown: time.Second}
		})
	m := sys.NewMerchant(ep.URL)
	var orders []string
	for range 5 {
		orders = append(orders, pay(t, sys, m))
	}
	before := map[string]int{}
	testenv.Poll(t, 20*time.Second, "every callback failing, attempt ≥ 2", func() bool {
		for _, o := range orders {
			c, ok := callbackOf(t, sys, o)
			if !ok || c.Attempt < 2 {
				return false
			}
			before[o] = c.Attempt
		}
		return true
	})
	testenv.Must(t, sys.Redis.Client.FlushDB(context.Background()).Err())
	ep.setAnswer(status(200))
	for _, o := range orders {
		c := waitCallback(t, sys, o, "DELIVERED", 20*time.Second)
		if c.Attempt <= before[o] {
			t.Errorf("%s: delivered at attempt %d, had %d before the flush", o, c.Attempt, before[o])
		}
		as := attempts(t, sys, c.CallbackID)
		for i, a := range as {
			if a.Attempt != i+1 {
				t.Errorf("%s: attempts renumbered after the flush: %d at position %d", o, a.Attempt, i+1)
				break
			}
		}
	}
}

func TestEveryPaidOrderOneCallback(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, nil)
	sys := start(t, nil, nil)
	m := sys.NewMerchant(ep.URL)
	type ord struct{ id, token, key string }
	var os []ord
	for range 20 {
		o := m.CreateOrder(1000)
		os = append(os, ord{o.OrderID, o.PaymentToken, sys.Session(o)})
	}
	var wg sync.WaitGroup
	for _, o := range os {
		wg.Go(func() {
			r := m.Do("POST", "/v1/orders/"+o.id+"/confirm", map[string]any{"paymentKey": o.key, "amount": 1000, "paymentToken": o.token})
			if r.Status != 202 {
				t.Errorf("confirm %s: %d %s", o.id, r.Status, r.Body)
			}
		})
	}
	wg.Wait()
	for _, o := range os {
		waitCallback(t, sys, o.id, "DELIVERED", 20*time.Second)
	}
	if n := sys.Count(`SELECT count(*) FROM callbacks WHERE merchant_id = $1 AND event_type = 'payment.paid'`, m.MerchantID); n != 20 {
		t.Errorf("%d payment.paid callbacks for 20 paid orders", n)
	}
	if n := sys.Count(`SELECT count(DISTINCT order_id) FROM callbacks WHERE merchant_id = $1 AND event_type = 'payment.paid'`, m.MerchantID); n != 20 {
		t.Errorf("payment.paid callbacks cover %d orders, want 20", n)
	}
	ids := map[string]bool{}
	for _, r := range ep.requests() {
		ids[r.ID] = true
	}
	if len(ids) != 20 {
		t.Errorf("endpoint received %d distinct webhook-ids, want 20", len(ids))
	}
}

func TestHungMerchantDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	const timeout = 10 * time.Second // the production default
	release := make(chan struct{})
	var inFlight, maxInFlight int
	var mu sync.Mutex
	hung := newEndpoint(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	fast := newEndpoint(t, nil)
	sys := start(t, map[string]string{"PAYRAIL_CALLBACK_TIMEOUT": timeout.String(), "PAYRAIL_CALLBACK_SCHEDULE": "1s,1s,1s,1s,1s"}, nil)
	t.Cleanup(func() { close(release) })
	a := sys.NewMerchant(hung.URL)
	b := sys.NewMerchant(fast.URL)
	// The hung merchant holds as many deliveries as it may: its own bound
	// (a quarter of the worker's sends, 4 × that bound).
	holds := callback.DefaultPerMerchant
	for range holds + 2 {
		pay(t, sys, a)
	}
	testenv.Poll(t, 15*time.Second, "hung merchant holding its deliveries", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return inFlight >= holds
	})
	var worst, worstPaid, worstOutbox time.Duration
	for range 5 {
		t0 := time.Now()
		orderID := pay(t, sys, b)
		b.WaitStatus(orderID, "PAID", 10*time.Second)
		worstPaid = max(worstPaid, time.Since(t0))
		testenv.Poll(t, timeout, "fast merchant's callback", func() bool {
			for _, r := range fast.requests() {
				if r.OrderID == orderID {
					worst = max(worst, r.At.Sub(t0))
					var created time.Time
					testenv.Must(t, sys.DB.DB.Get(&created, `SELECT created_at FROM callbacks WHERE order_id = $1`, orderID))
					worstOutbox = max(worstOutbox, r.At.Sub(created))
					return true
				}
			}
			return false
		})
	}
	mu.Lock()
	peak := maxInFlight
	mu.Unlock()
	t.Logf("with a hung merchant (%d in flight, %s timeout): other merchant's confirm→PAID ≤ %s, outbox row→callback received ≤ %s, confirm→callback received ≤ %s",
		peak, timeout, worstPaid.Round(time.Millisecond), worstOutbox.Round(time.Millisecond), worst.Round(time.Millisecond))
	if peak > callback.DefaultPerMerchant {
		t.Errorf("hung merchant had %d deliveries in flight, limit %d", peak, callback.DefaultPerMerchant)
	}
	if worst > timeout/2 {
		t.Errorf("other merchant's callbacks took up to %s with a hung merchant present (timeout %s)", worst, timeout)
	}
}
