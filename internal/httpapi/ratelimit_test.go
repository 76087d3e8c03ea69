package httpapi_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/process"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// A merchant over its limit gets 429 RATE_LIMITED with Retry-After and the
// RateLimit headers and nothing is written; a quiet merchant posting at the
// same time is not refused once (against its baseline alone); and the
// flooding merchant can still confirm, from its own doubled bucket.
func TestRateLimitIsPerMerchantAndWritesNothing(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{"PAYRAIL_RATE_LIMIT": "2", "PAYRAIL_RATE_BURST": "5"}})
	noisy, quiet := sys.NewMerchant(""), sys.NewMerchant("")
	create := func(m *systest.Merchant) systest.Response {
		return m.Do("POST", "/v1/orders", map[string]any{"amount": 1000, "orderName": "rate"})
	}
	// Baseline: the quiet merchant alone.
	for i := range 3 {
		if r := create(quiet); r.Status != 201 || r.Header.Get("RateLimit") == "" || r.Header.Get("RateLimit-Policy") == "" {
			t.Fatalf("quiet alone, order %d: %d, RateLimit %q", i, r.Status, r.Header.Get("RateLimit"))
		}
	}
	confirmable := create(noisy)
	if confirmable.Status != 201 {
		t.Fatalf("first noisy order: %d", confirmable.Status)
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var refused systest.Response
	quietCodes := map[int]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := create(noisy)
			mu.Lock()
			defer mu.Unlock()
			codes[r.Status]++
			if r.Status == 429 {
				refused = r
			}
		}()
		if i%20 == 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := create(quiet)
				mu.Lock()
				defer mu.Unlock()
				quietCodes[r.Status]++
			}()
		}
	}
	wg.Wait()
	allowed := 4 + int(2*time.Since(start).Seconds()) + 1 // burst left + refill
	if codes[429] == 0 || codes[201] > allowed || codes[201]+codes[429] != 40 {
		t.Fatalf("noisy merchant got %v; want at most %d 201s, the rest 429", codes, allowed)
	}
	if quietCodes[201] != 2 {
		t.Fatalf("quiet merchant during the flood got %v, want 2×201 as alone", quietCodes)
	}
	if refused.Code() != "RATE_LIMITED" || refused.Header.Get("Retry-After") == "" || refused.Header.Get("RateLimit-Policy") == "" || refused.Header.Get("RateLimit") == "" {
		t.Fatalf("429 answer: %s %v", refused.Body, refused.Header)
	}
	if n := sys.Count(`SELECT count(*) FROM orders WHERE merchant_id = $1`, noisy.MerchantID); n != 1+codes[201] {
		t.Fatalf("%d orders stored for %d accepted creates: a 429 wrote something", n, 1+codes[201])
	}
	if n := sys.Count(`SELECT count(*) FROM idempotency_keys WHERE merchant_id = $1`, noisy.MerchantID); n != 0 {
		t.Fatalf("%d idempotency records", n)
	}
	// Over its limit for new orders, the merchant still confirms.
	var o systest.Order
	o.OrderID, o.PaymentToken, o.Amount = confirmable.JSON()["orderId"].(string), confirmable.JSON()["paymentToken"].(string), 1000
	if r := noisy.Confirm(o, sys.Session(o)); r.Status != 202 {
		t.Fatalf("confirm of a rate-limited merchant: %d %s", r.Status, r.Body)
	}
}

// A second api process draws from the same bucket (it is in Redis), and an
// admin override takes effect at once in the process that made it.
func TestRateLimitIsSharedAcrossAPIsAndOverridable(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	if st, b := sys.Admin("PATCH", "/admin/merchants/"+m.MerchantID, map[string]any{"rateLimit": map[string]int{"perSecond": 1, "burst": 4}}); st != 200 {
		t.Fatalf("patch rateLimit: %d %s", st, b)
	}
	for _, bad := range []any{map[string]int{"perSecond": 0, "burst": 4}, map[string]any{"perSecond": 1}, "fast", map[string]int{"perSecond": 1, "burst": 4, "x": 1}} {
		if st, _ := sys.Admin("PATCH", "/admin/merchants/"+m.MerchantID, map[string]any{"rateLimit": bad}); st != 400 {
			t.Errorf("rateLimit %v: %d, want 400", bad, st)
		}
	}
	// A second api process on its own pools, as another replica would be.
	deps, err := process.Connect(context.Background(), sys.Config)
	testenv.Must(t, err)
	api2 := process.NewAPI(sys.Config, deps, sys.Log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = api2.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done; deps.Close() })
	second := "http://" + ln.Addr().String()

	post := func(base string) int {
		body := []byte(`{"amount":1000,"orderName":"shared"}`)
		req, _ := http.NewRequest("POST", base+"/v1/orders", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		testenv.Must(t, auth.SignRequest(req, m.ClientID, m.ClientSecret, time.Now()))
		resp, err := http.DefaultClient.Do(req)
		testenv.Must(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	start := time.Now()
	ok := 0
	for i := range 12 {
		base := sys.URL
		if i%2 == 1 {
			base = second
		}
		if c := post(base); c == 201 {
			ok++
		} else if c != 429 {
			t.Fatalf("post %d: %d", i, c)
		}
	}
	if allowed := 4 + int(time.Since(start).Seconds()) + 1; ok < 4 || ok > allowed {
		t.Fatalf("%d of 12 accepted across two apis; want the one bucket's 4 (+%d refill)", ok, allowed-4)
	}
	// Back to the default (100/s): the next request passes at once.
	if st, b := sys.Admin("PATCH", "/admin/merchants/"+m.MerchantID, map[string]any{"rateLimit": nil}); st != 200 || !bytes.Contains(b, []byte(`"rateLimit":null`)) {
		t.Fatalf("reset: %d %s", st, b)
	}
	if c := post(sys.URL); c != 201 {
		t.Fatalf("after the reset: %d", c)
	}
}

// A merchant with more requests in flight than PAYRAIL_MERCHANT_MAX_IN_FLIGHT
// gets 429 RATE_LIMITED for the excess, before anything is written, and
// another merchant's requests meanwhile are all served.
func TestInFlightBoundRefusesOnlyTheFlood(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{"PAYRAIL_MERCHANT_MAX_IN_FLIGHT": "1", "PAYRAIL_RATE_BURST": "1", "PAYRAIL_RATE_LIMIT": "100000"}})
	noisy, quiet := sys.NewMerchant(""), sys.NewMerchant("")
	create := func(m *systest.Merchant) systest.Response {
		return m.Do("POST", "/v1/orders", map[string]any{"amount": 1000, "orderName": "inflight"})
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var refused systest.Response
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			r := create(noisy)
			mu.Lock()
			defer mu.Unlock()
			codes[r.Status]++
			if r.Status == 429 && strings.Contains(string(r.Body), "already being served") {
				refused = r
			}
		})
	}
	quietCodes := map[int]int{}
	for range 10 { // one at a time: within its bound of 1
		quietCodes[create(quiet).Status]++
	}
	wg.Wait()
	if codes[429] == 0 || codes[201]+codes[429] != 200 {
		t.Fatalf("200 concurrent creates at a bound of 1 got %v; want some 429s and nothing else", codes)
	}
	if quietCodes[201] != 10 {
		t.Fatalf("quiet merchant got %v beside the flood, want 10×201", quietCodes)
	}
	if refused.Status != 429 || refused.Code() != "RATE_LIMITED" || refused.Header.Get("Retry-After") != "1" {
		t.Fatalf("in-flight 429: %s %v", refused.Body, refused.Header)
	}
	if n := sys.Count(`SELECT count(*) FROM orders WHERE merchant_id = $1`, noisy.MerchantID); n != codes[201] {
		t.Fatalf("%d orders for %d accepted creates: a 429 wrote something", n, codes[201])
	}
}
