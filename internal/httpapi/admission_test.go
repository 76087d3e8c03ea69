package httpapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/payrail/payrail/internal/systest"
)

// Admission control end to end (real PostgreSQL and Redis): the ceiling is
// set so low that every judged window is overload, so the test decides
// when payrail is "loaded" instead of having to load the machine. A lone
// merchant is never lowered; beside a quiet merchant, the flooding one's
// new orders are refused 429 with Retry-After once its rate is lowered and
// nothing is written for them, while the quiet merchant's orders all go
// through, as alone, and the flooding merchant's confirms are not refused.
func TestAdmissionLowersOnlyTheFloodingMerchant(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{
		"PAYRAIL_ADMIT_CEILING": "1ns", "PAYRAIL_RATE_LIMIT": "100000", "PAYRAIL_RATE_BURST": "100000",
		"PAYRAIL_MERCHANT_MAX_IN_FLIGHT": "1000"}})
	noisy, quiet := sys.NewMerchant(""), sys.NewMerchant("")
	create := func(m *systest.Merchant) systest.Response {
		return m.Do("POST", "/v1/orders", map[string]any{"amount": 1000, "orderName": "admission"})
	}
	flood := func(n int) (codes map[int]int, lowered systest.Response, created []systest.Response) {
		codes = map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range n / 8 {
					r := create(noisy)
					mu.Lock()
					codes[r.Status]++
					if r.Status == 429 && strings.Contains(string(r.Body), "lowered") {
						lowered = r
					}
					if r.Status == 201 {
						created = append(created, r)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return codes, lowered, created
	}

	// Alone, the flooding merchant is never lowered, overload or not.
	if codes, lowered, _ := flood(400); codes[201] != 400 || lowered.Status != 0 {
		t.Fatalf("lone merchant under (forced) overload got %v; want 400×201, nothing lowered", codes)
	}
	// The quiet merchant alone: its baseline.
	for i := range 5 {
		if r := create(quiet); r.Status != 201 {
			t.Fatalf("quiet alone, order %d: %d %s", i, r.Status, r.Body)
		}
	}
	quietCodes := map[int]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			quietCodes[create(quiet).Status]++
		}
	}()
	codes, lowered, created := flood(800)
	<-done
	if codes[429] == 0 || lowered.Status != 429 {
		t.Fatalf("flooding beside a quiet merchant got %v: its new orders were never refused by a lowered rate", codes)
	}
	if quietCodes[201] != 20 {
		t.Fatalf("quiet merchant beside the flood got %v, want 20×201 as alone", quietCodes)
	}
	if lowered.Code() != "RATE_LIMITED" || lowered.Header.Get("Retry-After") == "" ||
		!strings.HasPrefix(lowered.Header.Get("RateLimit-Policy"), `"merchant-lowered";q=`) || !strings.HasPrefix(lowered.Header.Get("RateLimit"), `"merchant-lowered";r=0;t=`) {
		t.Fatalf("lowered 429: %s %v", lowered.Body, lowered.Header)
	}
	if n := sys.Count(`SELECT count(*) FROM orders WHERE merchant_id = $1`, noisy.MerchantID); n != 400+codes[201] {
		t.Fatalf("%d orders stored for %d accepted creates: a refused create wrote something", n, 400+codes[201])
	}
	// The metrics say so (read at once: a lowered rate recovers within
	// seconds of the flood's end).
	ms := httptest.NewServer(sys.API.Metrics)
	defer ms.Close()
	resp, err := http.Get(ms.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := string(b)
	for _, want := range []string{"payrail_admission_overloaded 1", "payrail_admission_lowered_merchants 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("api metrics lack %q", want)
		}
	}
	if !strings.Contains(m, "payrail_admission_refused_total") {
		t.Errorf("api metrics lack payrail_admission_refused_total")
	}
	// Lowered for new orders, the merchant still confirms what its buyers paid.
	if len(created) == 0 {
		t.Fatal("the flood had no order created beside the quiet merchant")
	}
	for _, r := range created[:min(5, len(created))] {
		o := systest.Order{OrderID: r.JSON()["orderId"].(string), PaymentToken: r.JSON()["paymentToken"].(string), Amount: 1000}
		if c := noisy.Confirm(o, sys.Session(o)); c.Status != 202 {
			t.Fatalf("confirm of a lowered merchant: %d %s", c.Status, c.Body)
		}
	}
}
